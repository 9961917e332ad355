import { canonicalAddress } from "../catalog/addresses.js";
import { ApiError } from "../errors.js";
import type { Row } from "../store/index.js";
import { requireLookup } from "./arguments.js";
import type { OperationContext } from "./operation.js";
import * as present from "./presenters.js";
import { checkOwnership } from "./resolve.js";

/** Finding the objects a request names, as the identity may see them (else not found). */

/**
 * The VM a request names, if the identity may act on it: a live one, else one in the
 * trash (`object_in_trash`); a purged one is not found.
 */
export async function findVirtualMachine(context: OperationContext): Promise<Row<"virtual_machines">> {
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
    .where("purged_at", "is", null)
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
    throw new ApiError("object_in_trash", { trash_object: present.trashObject(trash) });
  }
  return vm;
}

/** The IP address a request names (`id` or `address`), among the identity's organizations. */
export async function findIpAddress(context: OperationContext): Promise<Row<"ip_addresses">> {
  const lookup = requireLookup(
    context.args,
    "ip_address",
    ["id", "address"] as const,
    context.segments.ip_address,
  );
  const value = lookup.key === "address" ? (canonicalAddress(lookup.value) ?? lookup.value) : lookup.value;
  const candidates = await context.services.db
    .selectFrom("ip_addresses")
    .selectAll()
    .where(lookup.key, "=", value)
    .execute();
  // The same address may exist in several organizations' networks; only the caller's counts.
  for (const candidate of candidates) {
    try {
      await checkOwnership(context, candidate.organization_id, "ip_address_not_found");
      return candidate;
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== "ip_address_not_found") throw error;
    }
  }
  throw new ApiError("ip_address_not_found");
}

/** The network interface a request names, on a VM of the identity's (not purged). */
export async function findNetworkInterface(
  context: OperationContext,
): Promise<{ nic: Row<"network_interfaces">; vm: Row<"virtual_machines"> }> {
  const lookup = requireLookup(
    context.args,
    "virtual_machine_network_interface",
    ["id"] as const,
    context.segments.virtual_machine_network_interface,
  );
  const { db } = context.services;
  const nic = await db
    .selectFrom("network_interfaces")
    .selectAll()
    .where("id", "=", lookup.value)
    .executeTakeFirst();
  const vm = nic
    ? await db
        .selectFrom("virtual_machines")
        .selectAll()
        .where("id", "=", nic.virtual_machine_id)
        .where("purged_at", "is", null)
        .executeTakeFirst()
    : undefined;
  if (!nic || !vm) throw new ApiError("virtual_machine_network_interface_not_found");
  await checkOwnership(context, vm.organization_id, "virtual_machine_network_interface_not_found");
  return { nic, vm };
}
