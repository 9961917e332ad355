import {
  AddressesExhausted,
  AddressRefused,
  allocateToOrganization,
  allocateToVirtualMachine,
  releaseAddress,
  unallocateAddress,
  updateAddress,
} from "../../lifecycle/index.js";
import { ApiError } from "../../errors.js";
import { booleanArgument, enumArgument, pagination, requireLookup, stringArgument } from "../arguments.js";
import { findIpAddress, findVirtualMachine } from "../lookups.js";
import { inKatapultWords } from "../refusals.js";
import type { Operation, OperationContext } from "../operation.js";
import { pageOf } from "../paging.js";
import * as present from "../presenters.js";
import { resolveOrganization } from "../resolve.js";
import { ipAddressView } from "../views.js";

/** An organization's IP addresses: allocated from a network's pool, put on VMs, given back. */

/** A lifecycle refusal in Katapult's words. */
export function addressError(error: unknown): unknown {
  if (!(error instanceof AddressRefused)) return error;
  switch (error.reason) {
    case "not_allocated":
      return new ApiError("no_allocation");
    case "not_supported":
      return new ApiError("resource_does_not_support_unallocation");
    case "already_allocated":
      return new ApiError("ip_already_allocated");
    case "wrong_network":
      return new ApiError("invalid_ip", { details: error.message });
    case "no_interface":
    case "interface_detached":
      return new ApiError("no_interface_available", { details: error.message });
    case "too_many_addresses":
      return new ApiError("validation_error", { errors: [error.message] });
  }
}

/** What an address is allocated to, as the real API answers it (`type`/`value`) and as the schema lists it. */
async function allocationOf(
  context: OperationContext,
  ip: { allocation_type: string | null; allocation_id: string | null },
) {
  if (ip.allocation_type !== "VirtualMachine" || !ip.allocation_id) return null;
  const vm = await context.services.db
    .selectFrom("virtual_machines")
    .select(["id", "name"])
    .where("id", "=", ip.allocation_id)
    .executeTakeFirst();
  return vm
    ? { type: "VirtualMachine", value: { id: vm.id, name: vm.name }, id: vm.id, name: vm.name }
    : null;
}

export const ipAddressOperations: Operation[] = [
  {
    name: "list_ip_addresses",
    method: "GET",
    path: "/organizations/organization/ip_addresses",
    scopes: ["ip_addresses", "ip_addresses:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const { db, baseDomain } = context.services;
      const org = await resolveOrganization(context);
      const allocated = booleanArgument(context.args, "allocated");
      let base = db.selectFrom("ip_addresses").where("organization_id", "=", org.id);
      if (allocated === true) base = base.where("allocation_id", "is not", null);
      if (allocated === false) base = base.where("allocation_id", "is", null);
      const { pagination: paged, items } = await pageOf(pagination(context.args), base, (q) =>
        q.selectAll().orderBy("ip_version").orderBy("address_key"),
      );
      return {
        body: {
          pagination: paged,
          ip_addresses: items.map((ip) => present.ipAddressListItem(ip, baseDomain)),
        },
      };
    },
  },
  {
    name: "get_ip_address",
    method: "GET",
    path: "/ip_addresses/ip_address",
    scopes: ["ip_addresses", "ip_addresses:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const ip = await findIpAddress(context);
      return {
        body: {
          ip_address: await ipAddressView(context.services.db, ip.id, context.services.baseDomain),
          allocation: await allocationOf(context, ip),
        },
      };
    },
  },
  {
    name: "create_ip_address",
    method: "POST",
    path: "/organizations/organization/ip_addresses",
    scopes: ["ip_addresses"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const { db, baseDomain } = context.services;
      const org = await resolveOrganization(context);
      const networkLookup = requireLookup(context.args, "network", ["id", "permalink"] as const);
      const network = await db
        .selectFrom("networks")
        .selectAll()
        .where(networkLookup.key, "=", networkLookup.value)
        .executeTakeFirst();
      if (!network) throw new ApiError("network_not_found");
      const version = enumArgument(context.args, "version", ["ipv4", "ipv6"] as const);
      if (!version)
        throw new ApiError(
          "missing_required_argument",
          { path: ["version"], argument: { name: "version", description: null } },
          "The 'version' argument is required but has not been provided",
        );
      const vip = booleanArgument(context.args, "vip") ?? false;
      const label = stringArgument(context.args, "label", { maxLength: 255 }) ?? null;
      if (vip && !label) throw new ApiError("validation_error", { errors: ["Label can't be blank"] });
      try {
        const ip = await allocateToOrganization(db, {
          networkId: network.id,
          version: version === "ipv4" ? 4 : 6,
          organizationId: org.id,
          vip,
          label,
          defaultLimits: context.services.organizationLimits,
        });
        return { body: { ip_address: await ipAddressView(db, ip.id, baseDomain) } };
      } catch (error) {
        if (error instanceof AddressesExhausted) throw new ApiError("no_available_addresses");
        throw error;
      }
    },
  },
  {
    name: "update_ip_address",
    method: "PATCH",
    path: "/ip_addresses/ip_address",
    scopes: ["ip_addresses"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const { db, baseDomain } = context.services;
      const ip = await findIpAddress(context);
      const vip = booleanArgument(context.args, "vip");
      const label = stringArgument(context.args, "label", { maxLength: 255 });
      const reverseDns = stringArgument(context.args, "reverse_dns", { maxLength: 253 });
      if (reverseDns !== undefined && reverseDns !== "" && !HOSTNAME.test(reverseDns))
        throw new ApiError("validation_error", { errors: ["Reverse DNS is not a valid hostname"] });
      if ((vip ?? ip.vip === 1) && !(label ?? ip.label))
        throw new ApiError("validation_error", { errors: ["Label can't be blank"] });
      await updateAddress(db, ip.id, {
        ...(vip !== undefined ? { vip } : {}),
        ...(label !== undefined ? { label: label === "" ? null : label } : {}),
        ...(reverseDns !== undefined ? { reverseDns: reverseDns === "" ? null : reverseDns } : {}),
      });
      return { body: { ip_address: await ipAddressView(db, ip.id, baseDomain) } };
    },
  },
  {
    name: "delete_ip_address",
    method: "DELETE",
    path: "/ip_addresses/ip_address",
    scopes: ["ip_addresses"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const ip = await findIpAddress(context);
      await inKatapultWords(addressError, () => releaseAddress(context.services.db, ip.id));
      context.services.notifyWork?.();
      return { body: {} };
    },
  },
  {
    name: "unallocate_ip_address",
    method: "POST",
    path: "/ip_addresses/ip_address/unallocate",
    scopes: ["ip_addresses"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const ip = await findIpAddress(context);
      await inKatapultWords(addressError, () =>
        unallocateAddress(context.services.db, ip.id, {
          organizationId: ip.organization_id!,
          defaults: context.services.organizationLimits,
        }),
      );
      context.services.notifyWork?.();
      return { body: {} };
    },
  },
  {
    name: "allocate_ip_to_virtual_machine",
    method: "POST",
    path: "/virtual_machines/virtual_machine/allocate_ip",
    scopes: ["ip_addresses"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const { db, baseDomain } = context.services;
      const vm = await findVirtualMachine(context);
      const ip = await findIpAddress(context);
      if (ip.organization_id !== vm.organization_id) throw new ApiError("ip_address_not_found");
      await inKatapultWords(addressError, () => allocateToVirtualMachine(db, ip.id, vm.id));
      context.services.notifyWork?.();
      return { body: { ip_address: await ipAddressView(db, ip.id, baseDomain) } };
    },
  },
];

/** A DNS name: dot-separated labels of letters, digits and inner hyphens. */
const HOSTNAME =
  /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;
