import {
  addInterface,
  AddressesExhausted,
  allocateNewToInterface,
  allocateToInterface,
  changeSpeedProfile,
  deleteInterface,
  InterfaceRefused,
  setInterfaceAttached,
} from "../../lifecycle/index.js";
import { ApiError } from "../../errors.js";
import type { Row } from "../../store/index.js";
import { enumArgument, lookupArgument, pagination, paginationObject, requireLookup } from "../arguments.js";
import * as present from "../presenters.js";
import { checkOwnership } from "../resolve.js";
import { findIpAddress, findNetworkInterface, findVirtualMachine } from "../lookups.js";
import { inKatapultWords, limitCheck } from "../refusals.js";
import type { Operation, OperationContext } from "../operation.js";
import { ipAddressView, networkInterfaceListItem, networkInterfaceView } from "../views.js";
import { addressError } from "./ip-addresses.js";

/** A VM's network interfaces and the addresses on them. */

const READ_SCOPES = ["virtual_machines", "virtual_machines:read"];
const NETWORK_INTERFACE_SCOPES = ["virtual_machines", "virtual_machines:network_interfaces"];

/** A lifecycle refusal in Katapult's words. */
function interfaceError(error: unknown): unknown {
  if (!(error instanceof InterfaceRefused)) return error;
  switch (error.reason) {
    case "already_attached":
      return new ApiError("virtual_machine_network_interface_already_attached");
    case "already_detached":
      return new ApiError("virtual_machine_network_interface_already_detached");
    case "attached":
      return new ApiError("deletion_restricted", { errors: [error.message] });
    case "same_speed_profile":
      return new ApiError("speed_profile_already_assigned");
    case "vm_not_ready":
      return new ApiError("task_queueing_error", { details: error.message });
    case "gone":
      return new ApiError("virtual_machine_network_interface_not_found");
  }
}

async function speedProfileId(context: OperationContext): Promise<string> {
  const lookup = requireLookup(context.args, "speed_profile", ["id", "permalink"] as const);
  const profile = await context.services.db
    .selectFrom("network_speed_profiles")
    .select("id")
    .where(lookup.key, "=", lookup.value)
    .executeTakeFirst();
  if (!profile) throw new ApiError("network_speed_profile_not_found");
  return profile.id;
}

/** The network or virtual network a new interface joins: exactly one, in the VM's data center. */
async function segmentOf(
  context: OperationContext,
  vm: Row<"virtual_machines">,
): Promise<{ networkId: string | null; virtualNetworkId: string | null }> {
  const { db } = context.services;
  const networkLookup = lookupArgument(context.args, "network", ["id", "permalink"] as const);
  const virtualLookup = lookupArgument(context.args, "virtual_network", ["id"] as const);
  if (!networkLookup === !virtualLookup)
    throw new ApiError("validation_error", {
      errors: ["give either a network or a virtual network for the interface, not both"],
    });
  const zone = await db
    .selectFrom("zones")
    .select("data_center_id")
    .where("id", "=", vm.zone_id)
    .executeTakeFirstOrThrow();
  if (networkLookup) {
    const network = await db
      .selectFrom("networks")
      .select(["id", "data_center_id"])
      .where(networkLookup.key, "=", networkLookup.value)
      .executeTakeFirst();
    if (!network) throw new ApiError("network_not_found");
    if (network.data_center_id !== zone.data_center_id)
      throw new ApiError("validation_error", {
        errors: ["the network is in another data center than the virtual machine"],
      });
    return { networkId: network.id, virtualNetworkId: null };
  }
  const vnet = await db
    .selectFrom("virtual_networks")
    .select(["id", "organization_id", "data_center_id"])
    .where("id", "=", virtualLookup!.value)
    .executeTakeFirst();
  if (!vnet) throw new ApiError("virtual_network_not_found");
  await checkOwnership(context, vnet.organization_id, "virtual_network_not_found");
  if (vnet.organization_id !== vm.organization_id) throw new ApiError("virtual_network_not_found");
  if (vnet.data_center_id !== zone.data_center_id)
    throw new ApiError("validation_error", {
      errors: ["the virtual network is in another data center than the virtual machine"],
    });
  return { networkId: null, virtualNetworkId: vnet.id };
}

function attachment(attached: boolean): Operation {
  const verb = attached ? "attach" : "detach";
  return {
    name: `${verb}_virtual_machine_network_interface`,
    method: "POST",
    path: `/virtual_machine_network_interfaces/virtual_machine_network_interface/${verb}`,
    scopes: NETWORK_INTERFACE_SCOPES,
    access: "write",
    bucket: "write",
    async handle(context) {
      const { nic, vm } = await findNetworkInterface(context);
      const { nic: changed, task } = await inKatapultWords(interfaceError, () =>
        setInterfaceAttached(context.services.db, nic.id, attached),
      );
      context.services.notifyWork?.();
      const { virtual_machine_network_interface } = await interfaceAnswer(context, changed, vm);
      return { body: { virtual_machine_network_interface, task: present.task(task) } };
    },
  };
}

function addressVersion(context: OperationContext): 4 | 6 {
  const args =
    context.args.address_version === undefined && context.segments.address_version !== undefined
      ? { ...context.args, address_version: context.segments.address_version }
      : context.args;
  const version = enumArgument(args, "address_version", ["ipv4", "ipv6"] as const);
  if (!version)
    throw new ApiError(
      "missing_required_argument",
      { path: ["address_version"], argument: { name: "address_version", description: null } },
      "The 'address_version' argument is required but has not been provided",
    );
  return version === "ipv4" ? 4 : 6;
}

async function interfaceAnswer(
  context: OperationContext,
  nic: Row<"network_interfaces">,
  vm: Row<"virtual_machines">,
) {
  const fresh = await context.services.db
    .selectFrom("network_interfaces")
    .selectAll()
    .where("id", "=", nic.id)
    .executeTakeFirstOrThrow();
  return { virtual_machine_network_interface: await networkInterfaceView(context.services.db, fresh, vm) };
}

export const networkInterfaceOperations: Operation[] = [
  {
    name: "create_virtual_machine_network_interface",
    method: "POST",
    path: "/virtual_machines/virtual_machine/network_interfaces",
    scopes: NETWORK_INTERFACE_SCOPES,
    access: "write",
    bucket: "write",
    async handle(context) {
      const vm = await findVirtualMachine(context);
      const segment = await segmentOf(context, vm);
      const speed = await speedProfileId(context);
      const nic = await inKatapultWords(interfaceError, () =>
        addInterface(context.services.db, vm.id, { ...segment, speedProfileId: speed }),
      );
      return { body: await interfaceAnswer(context, nic, vm) };
    },
  },
  attachment(true),
  attachment(false),
  {
    name: "delete_virtual_machine_network_interface",
    method: "DELETE",
    path: "/virtual_machine_network_interfaces/virtual_machine_network_interface",
    scopes: NETWORK_INTERFACE_SCOPES,
    access: "write",
    bucket: "write",
    async handle(context) {
      const { nic, vm } = await findNetworkInterface(context);
      // Answered as it was, with the addresses it had.
      const view = await networkInterfaceView(context.services.db, nic, vm);
      await inKatapultWords(interfaceError, () =>
        deleteInterface(context.services.db, nic.id, limitCheck(context, vm)),
      );
      return { body: { virtual_machine_network_interface: view } };
    },
  },
  {
    name: "update_virtual_machine_network_interface_speed_profile",
    method: "PATCH",
    path: "/virtual_machine_network_interfaces/virtual_machine_network_interface/update_speed_profile",
    scopes: ["virtual_machines"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const { nic } = await findNetworkInterface(context);
      const speed = await speedProfileId(context);
      const task = await inKatapultWords(interfaceError, () =>
        changeSpeedProfile(context.services.db, nic.id, speed),
      );
      context.services.notifyWork?.();
      return { body: { task: present.task(task) } };
    },
  },
  {
    name: "list_virtual_machine_network_interfaces",
    method: "GET",
    path: "/virtual_machines/virtual_machine/network_interfaces",
    scopes: READ_SCOPES,
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
      const shown = nics.slice((page.page - 1) * page.perPage, page.page * page.perPage);
      return {
        body: {
          pagination: paginationObject(page, nics.length),
          virtual_machine_network_interfaces: await Promise.all(
            shown.map((nic) => networkInterfaceListItem(db, nic, vm, context.services.baseDomain)),
          ),
        },
      };
    },
  },
  {
    name: "get_virtual_machine_network_interface",
    method: "GET",
    path: "/virtual_machine_network_interfaces/virtual_machine_network_interface",
    scopes: READ_SCOPES,
    access: "read",
    bucket: "read",
    async handle(context) {
      const { nic, vm } = await findNetworkInterface(context);
      return { body: await interfaceAnswer(context, nic, vm) };
    },
  },
  {
    name: "get_virtual_machine_network_interface_for_network",
    method: "GET",
    path: "/virtual_machines/virtual_machine/networks/network/interface",
    scopes: READ_SCOPES,
    access: "read",
    bucket: "read",
    async handle(context) {
      const { db } = context.services;
      const vm = await findVirtualMachine(context);
      const lookup = requireLookup(
        context.args,
        "network",
        ["id", "permalink"] as const,
        context.segments.network,
      );
      const network = await db
        .selectFrom("networks")
        .select("id")
        .where(lookup.key, "=", lookup.value)
        .executeTakeFirst();
      if (!network) throw new ApiError("network_not_found");
      const nic = await db
        .selectFrom("network_interfaces")
        .selectAll()
        .where("virtual_machine_id", "=", vm.id)
        .where("network_id", "=", network.id)
        .orderBy("position")
        .executeTakeFirst();
      if (!nic) throw new ApiError("interface_not_found");
      return { body: await interfaceAnswer(context, nic, vm) };
    },
  },
  {
    name: "list_available_ips_for_network_interface",
    method: "GET",
    path: "/virtual_machine_network_interfaces/virtual_machine_network_interface/available_ips/address_version",
    scopes: ["ip_addresses", "ip_addresses:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const { db, baseDomain } = context.services;
      const { nic, vm } = await findNetworkInterface(context);
      const version = addressVersion(context);
      const free = nic.network_id
        ? await db
            .selectFrom("ip_addresses")
            .select("id")
            .where("organization_id", "=", vm.organization_id)
            .where("network_id", "=", nic.network_id)
            .where("ip_version", "=", version)
            .where("allocation_id", "is", null)
            .orderBy("address_key")
            .execute()
        : [];
      return {
        body: { ip_addresses: await Promise.all(free.map((ip) => ipAddressView(db, ip.id, baseDomain))) },
      };
    },
  },
  {
    name: "allocate_ip_to_network_interface",
    method: "POST",
    path: "/virtual_machine_network_interfaces/virtual_machine_network_interface/allocate_ip",
    scopes: ["ip_addresses"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const { nic, vm } = await findNetworkInterface(context);
      const ip = await findIpAddress(context);
      if (ip.organization_id !== vm.organization_id) throw new ApiError("ip_address_not_found");
      await inKatapultWords(addressError, () => allocateToInterface(context.services.db, ip.id, nic));
      context.services.notifyWork?.();
      return { body: await interfaceAnswer(context, nic, vm) };
    },
  },
  {
    name: "allocate_new_ip_to_network_interface",
    method: "POST",
    path: "/virtual_machine_network_interfaces/virtual_machine_network_interface/allocate_new_ip",
    scopes: ["ip_addresses"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const { db, baseDomain } = context.services;
      const { nic } = await findNetworkInterface(context);
      const version = addressVersion(context);
      try {
        const ip = await allocateNewToInterface(db, nic, version);
        context.services.notifyWork?.();
        return { body: { ip_address: await ipAddressView(db, ip.id, baseDomain) } };
      } catch (error) {
        if (error instanceof AddressesExhausted) throw new ApiError("no_available_addresses");
        throw addressError(error);
      }
    },
  },
];
