import { AddressesExhausted, allocateNewToInterface, allocateToInterface } from "../../lifecycle/index.js";
import { ApiError } from "../../errors.js";
import type { Row } from "../../store/index.js";
import { enumArgument, pagination, paginationObject, requireLookup } from "../arguments.js";
import { findIpAddress, findNetworkInterface, findVirtualMachine } from "../lookups.js";
import { inKatapultWords } from "../refusals.js";
import type { Operation, OperationContext } from "../operation.js";
import { ipAddressView, networkInterfaceListItem, networkInterfaceView } from "../views.js";
import { addressError } from "./ip-addresses.js";

/** A VM's network interfaces and the addresses on them. */

const READ_SCOPES = ["virtual_machines", "virtual_machines:read"];

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
