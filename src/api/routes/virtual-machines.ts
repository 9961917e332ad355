import { ApiError, missingArgument } from "../../errors.js";
import {
  ActionRefused,
  ChangeRefused,
  changeResources,
  deleteVirtualMachine,
  queueAction,
  updateVirtualMachine,
  type PowerAction,
  type VirtualMachineChanges,
} from "../../lifecycle/index.js";
import { isValidHostname } from "../../spec/validate.js";
import {
  integerArgument,
  keyValueArray,
  objectArgument,
  pagination,
  paginationObject,
  requireLookup,
  stringArgument,
  stringListArgument,
  type ArgumentBag,
} from "../arguments.js";
import type { Operation, OperationContext } from "../operation.js";
import * as present from "../presenters.js";
import { findVirtualMachine } from "../lookups.js";
import { limitCheck } from "../refusals.js";
import { annotationsOf, virtualMachineView } from "../views.js";

/** Power actions, deletion, and what a VM holds: the operations the build engine carries out. */

/** The `properties` of a VM update, checked and resolved (a group must be the organization's). */
async function changesOf(
  context: OperationContext,
  properties: ArgumentBag,
  organizationId: string,
): Promise<VirtualMachineChanges> {
  const name = stringArgument(properties, "name", { maxLength: 255 });
  const hostname = stringArgument(properties, "hostname", { maxLength: 63 });
  const description = stringArgument(properties, "description", { maxLength: 10_000 });
  const tagNames = stringListArgument(properties, "tag_names");
  if (name !== undefined && name.trim() === "")
    throw new ApiError("validation_error", { errors: ["Name can't be blank"] });
  if (hostname !== undefined && !(isValidHostname(hostname) && !hostname.includes(".")))
    throw new ApiError("validation_error", {
      errors: [`"${hostname}" is not a valid host name (letters, digits and inner hyphens, 1-63 characters)`],
    });
  let groupId: string | null | undefined;
  if (properties.group === null) groupId = null;
  else if (properties.group !== undefined) {
    const lookup = requireLookup(properties, "group", ["id"] as const);
    const group = await context.services.db
      .selectFrom("virtual_machine_groups")
      .select("id")
      .where("id", "=", lookup.value)
      .where("organization_id", "=", organizationId)
      .executeTakeFirst();
    if (!group) throw new ApiError("virtual_machine_group_not_found");
    groupId = group.id;
  }
  return {
    ...(name !== undefined ? { name } : {}),
    ...(hostname !== undefined ? { hostname } : {}),
    ...(description !== undefined ? { description: description === "" ? null : description } : {}),
    ...(groupId !== undefined ? { groupId } : {}),
    ...(tagNames !== undefined ? { tagNames } : {}),
  };
}

/** Runs a resource change: a VM that cannot take it, or a host without the room, answers `task_queueing_error`. */
async function changing<T>(context: OperationContext, change: () => Promise<T>): Promise<T> {
  try {
    return await queueing(context, change);
  } catch (error) {
    if (error instanceof ChangeRefused) throw new ApiError("task_queueing_error", { details: error.message });
    throw error;
  }
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

function powerAction(action: PowerAction): Operation {
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
  {
    name: "update_virtual_machine",
    method: "PATCH",
    path: "/virtual_machines/virtual_machine",
    scopes: ["virtual_machines"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const { db, baseDomain } = context.services;
      const vm = await findVirtualMachine(context);
      const properties = objectArgument(context.args, "properties");
      if (!properties) throw missingArgument(["properties"]);
      const changes = await changesOf(context, properties, vm.organization_id);
      const annotations =
        context.args.annotations === undefined ? undefined : keyValueArray(context.args, "annotations");
      try {
        const updated = await updateVirtualMachine(db, vm.id, {
          ...changes,
          ...(annotations !== undefined ? { annotations } : {}),
        });
        context.services.notifyWork?.();
        return {
          body: {
            virtual_machine: await virtualMachineView(db, updated, baseDomain),
            annotations: await annotationsOf(db, "VirtualMachine", vm.id),
          },
        };
      } catch (error) {
        if (error instanceof ChangeRefused)
          throw new ApiError("validation_error", { errors: [error.message] });
        throw error;
      }
    },
  },
  {
    name: "change_virtual_machine_package",
    method: "PUT",
    path: "/virtual_machines/virtual_machine/package",
    scopes: ["virtual_machines"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const vm = await findVirtualMachine(context);
      const lookup = requireLookup(context.args, "virtual_machine_package", ["id", "permalink"] as const);
      const pkg = await context.services.db
        .selectFrom("packages")
        .selectAll()
        .where(lookup.key, "=", lookup.value)
        .executeTakeFirst();
      // A private package of another organization reads like no package.
      if (!pkg || (pkg.privacy === "private" && pkg.organization_id !== vm.organization_id))
        throw new ApiError("package_not_found");
      const task = await changing(context, () =>
        changeResources(
          context.services.db,
          vm.id,
          {
            packageId: pkg.id,
            memoryInGb: pkg.memory_in_gb,
            cpuCores: pkg.cpu_cores,
            storageInGb: pkg.storage_in_gb,
          },
          limitCheck(context, vm),
        ),
      );
      return { body: { task: present.task(task) } };
    },
  },
  {
    name: "change_virtual_machine_flexible_resources",
    method: "PUT",
    path: "/virtual_machines/virtual_machine/flexible_resources",
    scopes: ["virtual_machines"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const vm = await findVirtualMachine(context);
      const resources = objectArgument(context.args, "resources");
      if (!resources) throw missingArgument(["resources"]);
      const memoryInGb = integerArgument(resources, "memory_in_gb");
      const cpuCores = integerArgument(resources, "cpu_cores");
      if (memoryInGb === undefined) throw missingArgument(["resources", "memory_in_gb"]);
      if (cpuCores === undefined) throw missingArgument(["resources", "cpu_cores"]);
      if (memoryInGb < 1 || memoryInGb > 1024 || cpuCores < 1 || cpuCores > 256)
        throw new ApiError("validation_error", {
          errors: ["memory_in_gb must be 1 to 1024 and cpu_cores 1 to 256"],
        });
      const task = await changing(context, () =>
        changeResources(
          context.services.db,
          vm.id,
          { packageId: null, memoryInGb, cpuCores },
          limitCheck(context, vm),
        ),
      );
      return { body: { task: present.task(task) } };
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
        deleteVirtualMachine(db, vm.id, context.services.now() + context.services.trashKeepSeconds),
      );
      const view = await virtualMachineView(db, deleted, baseDomain);
      return {
        body: { trash_object: present.trashObject(trash), virtual_machine: view },
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
              attach_on_boot: present.diskAttachmentState(d) !== "detached",
              boot: d.position === 1,
              state: present.diskAttachmentState(d),
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
