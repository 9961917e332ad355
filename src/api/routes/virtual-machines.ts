import { ApiError } from "../../errors.js";
import { ActionRefused, deleteVirtualMachine, queueAction } from "../../lifecycle/index.js";
import type { TaskAction, Row } from "../../store/index.js";
import { pagination, paginationObject, requireLookup } from "../arguments.js";
import type { Operation, OperationContext } from "../operation.js";
import * as present from "../presenters.js";
import { checkOwnership } from "../resolve.js";
import { annotationsOf, virtualMachineView } from "../views.js";

/** Power actions, deletion, and what a VM holds: the operations the build engine carries out. */

const TRASH_SECONDS = 48 * 3600;

/** The VM a request names, if the identity may act on it; a deleted one answers `object_in_trash`. */
async function findVirtualMachine(context: OperationContext): Promise<Row<"virtual_machines">> {
  const { db } = context.services;
  const lookup = requireLookup(
    context.args,
    "virtual_machine",
    ["id", "fqdn"] as const,
    context.segments.virtual_machine,
  );
  const candidates = await db
    .selectFrom("virtual_machines")
    .selectAll()
    .where(lookup.key, "=", lookup.value)
    .orderBy("created_at", "desc")
    .execute();
  const vm = candidates.find((v) => v.deleted_at === null) ?? candidates[0];
  if (!vm) throw new ApiError("virtual_machine_not_found");
  await checkOwnership(context, vm.organization_id, "virtual_machine_not_found");
  if (vm.deleted_at !== null) {
    const trash = await db
      .selectFrom("trash_objects")
      .selectAll()
      .where("object_id", "=", vm.id)
      .executeTakeFirst();
    if (!trash) throw new ApiError("virtual_machine_not_found");
    throw new ApiError("object_in_trash", {
      trash_object: {
        id: trash.id,
        keep_until: trash.keep_until,
        object_id: trash.object_id,
        object_type: trash.object_type,
      },
    });
  }
  return vm;
}

/** Runs a lifecycle call that queues a task; a VM that cannot take it answers `task_queueing_error`. */
async function queueing<T>(context: OperationContext, queue: () => Promise<T>): Promise<T> {
  try {
    const queued = await queue();
    context.services.notifyWork?.();
    return queued;
  } catch (error) {
    // Deleted since it was looked up: answer as a lookup now would (object_in_trash).
    if (error instanceof ActionRefused && error.reason === "deleted") await findVirtualMachine(context);
    if (error instanceof ActionRefused) throw new ApiError("task_queueing_error", { details: error.message });
    throw error;
  }
}

function powerAction(action: Exclude<TaskAction, "delete">): Operation {
  return {
    name: `${action}_virtual_machine`,
    method: "POST",
    path: `/virtual_machines/virtual_machine/${action}`,
    scopes: ["virtual_machines", "virtual_machines:power_actions"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const vm = await findVirtualMachine(context);
      const task = await queueing(context, () => queueAction(context.services.db, vm.id, action));
      return { body: { task: present.taskSummary(task) } };
    },
  };
}

export const virtualMachineOperations: Operation[] = [
  {
    name: "get_virtual_machine",
    method: "GET",
    path: "/virtual_machines/virtual_machine",
    scopes: ["virtual_machines", "virtual_machines:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const { db, baseDomain } = context.services;
      const vm = await findVirtualMachine(context);
      return {
        body: {
          virtual_machine: await virtualMachineView(db, vm, baseDomain),
          annotations: await annotationsOf(db, "VirtualMachine", vm.id),
        },
      };
    },
  },
  powerAction("start"),
  powerAction("stop"),
  powerAction("shutdown"),
  powerAction("reset"),
  {
    name: "delete_virtual_machine",
    method: "DELETE",
    path: "/virtual_machines/virtual_machine",
    scopes: ["virtual_machines"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const { db, baseDomain } = context.services;
      const vm = await findVirtualMachine(context);
      const { vm: deleted, trash } = await queueing(context, () =>
        deleteVirtualMachine(db, vm.id, context.services.now() + TRASH_SECONDS),
      );
      const view = await virtualMachineView(db, deleted, baseDomain);
      return {
        body: {
          trash_object: {
            id: trash.id,
            keep_until: trash.keep_until,
            object_id: trash.object_id,
            object_type: trash.object_type,
          },
          virtual_machine: view,
        },
      };
    },
  },
  {
    name: "list_virtual_machine_network_interfaces",
    method: "GET",
    path: "/virtual_machines/virtual_machine/network_interfaces",
    scopes: ["virtual_machines", "virtual_machines:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const { db } = context.services;
      const vm = await findVirtualMachine(context);
      const page = pagination(context.args);
      const nics = await db
        .selectFrom("network_interfaces")
        .selectAll()
        .where("virtual_machine_id", "=", vm.id)
        .orderBy("position")
        .execute();
      const ips = await db
        .selectFrom("ip_addresses")
        .select(["id", "address", "network_id"])
        .where("allocation_type", "=", "VirtualMachine")
        .where("allocation_id", "=", vm.id)
        .execute();
      const items = [];
      for (const nic of nics.slice((page.page - 1) * page.perPage, page.page * page.perPage)) {
        const network = nic.network_id
          ? await db
              .selectFrom("networks")
              .select(["id", "name"])
              .where("id", "=", nic.network_id)
              .executeTakeFirst()
          : undefined;
        const vnet = nic.virtual_network_id
          ? await db
              .selectFrom("virtual_networks")
              .select(["id", "name"])
              .where("id", "=", nic.virtual_network_id)
              .executeTakeFirst()
          : undefined;
        items.push({
          id: nic.id,
          name: `eth${nic.position - 1}`,
          network: network ?? null,
          virtual_network: vnet ?? null,
          mac_address: nic.mac_address,
          ip_addresses: ips
            .filter((ip) => ip.network_id === nic.network_id)
            .map((ip) => ({ id: ip.id, address: ip.address })),
        });
      }
      return {
        body: { pagination: paginationObject(page, nics.length), virtual_machine_network_interfaces: items },
      };
    },
  },
  {
    name: "list_virtual_machine_disks",
    method: "GET",
    path: "/virtual_machines/virtual_machine/disks",
    scopes: ["disks", "disks:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const { db } = context.services;
      const vm = await findVirtualMachine(context);
      const page = pagination(context.args);
      const disks = await db
        .selectFrom("disks")
        .selectAll()
        .where("virtual_machine_id", "=", vm.id)
        .where("state", "!=", "deleted")
        .orderBy("position")
        .execute();
      return {
        body: {
          pagination: paginationObject(page, disks.length),
          disks: disks.slice((page.page - 1) * page.perPage, page.page * page.perPage).map((d) => {
            const { virtual_machine_disk: _vm, ...disk } = present.disk(d, undefined);
            return {
              disk: { ...disk, created_at: d.created_at },
              attach_on_boot: true,
              boot: d.position === 1,
              state: d.state === "attached" ? "attached" : d.state === "failed" ? "failed" : "attaching",
            };
          }),
        },
      };
    },
  },
  {
    name: "get_virtual_machine_console",
    method: "GET",
    path: "/virtual_machines/virtual_machine/console",
    scopes: ["virtual_machines", "virtual_machines:console"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const vm = await findVirtualMachine(context);
      const console = context.services.consoles?.(vm.id);
      if (!console)
        throw new ApiError("task_queueing_error", {
          details: "this API process runs no host agent for the VM's host",
        });
      return { body: { virtual_machine: { id: vm.id }, console: await console } };
    },
  },
];
