import type { Kysely, Transaction } from "kysely";
import { lockedForUpdate, retryingConflicts, type Database, type Row } from "../store/index.js";
import type { IpVersion } from "../catalog/addresses.js";
import { allocateAddress } from "./addresses.js";
import { ensureWithinLimits, lockOrganization, type LimitCheck } from "./organization-limits.js";
import { SPEC_CAPS } from "../planner/planner.js";
import { enqueue, type QueuedTask } from "./tasks.js";

/**
 * Changes to what addresses a VM holds, made by its organization: allocate (an address
 * it owns, or a new one) onto an interface, unallocate (it stays the organization's),
 * release (back to the pool). A live VM whose addresses change gets a `reconfigure`
 * task: its host applies the new definition (see HostDriver.reconfigure).
 */

export class AddressRefused extends Error {
  constructor(
    readonly reason:
      | "not_allocated"
      | "already_allocated"
      | "not_supported"
      | "wrong_network"
      | "no_interface"
      | "interface_detached"
      | "too_many_addresses",
    message: string,
  ) {
    super(message);
  }
}

async function lockAddress(trx: Transaction<Database>, ipId: string) {
  return lockedForUpdate(
    trx,
    trx.selectFrom("ip_addresses").selectAll().where("id", "=", ipId),
  ).executeTakeFirst();
}

/**
 * Queues the VM's host to apply its definition again, unless it is in the trash or gone
 * (a VM in the trash is reconfigured when it is restored), or failed, or a
 * reconfiguration that has not started is already queued (it will read this change
 * too). A VM still being built gets it too: the task waits for the build to end (see
 * claimTask), since the build may have read the definition before this change.
 */
export async function queueReconfigure(
  trx: Transaction<Database>,
  vmId: string,
): Promise<QueuedTask | undefined> {
  const vm = await lockedForUpdate(
    trx,
    trx.selectFrom("virtual_machines").selectAll().where("id", "=", vmId),
  ).executeTakeFirst();
  if (!vm || vm.deleted_at !== null || vm.state === "failed") return undefined;
  const waiting = await trx
    .selectFrom("tasks")
    .selectAll()
    .where("object_id", "=", vmId)
    .where("action", "=", "reconfigure")
    .where("status", "=", "pending")
    .executeTakeFirst();
  return waiting ?? enqueue(trx, vm, "reconfigure");
}

/** As queueReconfigure, for a VM already known to take changes: its reconfiguration task. */
export async function reconfigureTask(trx: Transaction<Database>, vmId: string) {
  const task = await queueReconfigure(trx, vmId);
  if (!task) throw new Error(`virtual machine ${vmId} takes no reconfiguration now`);
  return task;
}

function detach(trx: Kysely<Database>, ipId: string) {
  return (
    trx
      .updateTable("ip_addresses")
      // Taken off its VM, an address is the organization's, whatever it was made for.
      .set({
        allocation_type: null,
        allocation_id: null,
        network_interface_id: null,
        reverse_dns: null,
        release_with_vm: 0,
      })
      .where("id", "=", ipId)
      .execute()
  );
}

/**
 * Takes an address off what it is allocated to; the organization keeps it, so it counts
 * against its limit of unallocated addresses (else allocating new ones to a VM and
 * unallocating them would take a shared pool around the limit).
 */
export function unallocateAddress(db: Kysely<Database>, ipId: string, limits: LimitCheck): Promise<void> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      await lockOrganization(trx, limits.organizationId);
      await ensureWithinLimits(trx, limits, { unallocated_ip_addresses: 1 });
      const ip = await lockAddress(trx, ipId);
      if (!ip?.allocation_id) throw new AddressRefused("not_allocated", "the address is not allocated");
      if (ip.allocation_type !== "VirtualMachine")
        throw new AddressRefused("not_supported", `addresses of a ${ip.allocation_type} stay with it`);
      await detach(trx, ip.id);
      await queueReconfigure(trx, ip.allocation_id);
    }),
  );
}

/** Gives an address back to the pool, unallocating it first if it is allocated. */
export function releaseAddress(db: Kysely<Database>, ipId: string): Promise<void> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      const ip = await lockAddress(trx, ipId);
      if (!ip) return;
      if (ip.allocation_id && ip.allocation_type !== "VirtualMachine")
        throw new AddressRefused("not_supported", `addresses of a ${ip.allocation_type} stay with it`);
      await trx.deleteFrom("ip_addresses").where("id", "=", ip.id).execute();
      if (ip.allocation_id) await queueReconfigure(trx, ip.allocation_id);
    }),
  );
}

type Interface = Row<"network_interfaces">;

/** The interface's VM, locked: two allocations onto one VM count its addresses one after the other. */
async function vmOfInterface(trx: Kysely<Database>, nic: Interface) {
  return lockedForUpdate(
    trx,
    trx.selectFrom("virtual_machines").selectAll().where("id", "=", nic.virtual_machine_id),
  ).executeTakeFirstOrThrow();
}

/**
 * A VM holds at most as many addresses as one spec may ask for: one tenant must not take
 * a shared network's pool by allocating to a VM again and again.
 */
export const ADDRESSES_PER_VIRTUAL_MACHINE = SPEC_CAPS.addresses;

async function checkRoomForAddress(trx: Kysely<Database>, vmId: string): Promise<void> {
  const held = await trx
    .selectFrom("ip_addresses")
    .select((eb) => eb.fn.countAll().as("count"))
    .where("allocation_id", "=", vmId)
    .executeTakeFirstOrThrow();
  if (Number(held.count) >= ADDRESSES_PER_VIRTUAL_MACHINE)
    throw new AddressRefused(
      "too_many_addresses",
      `the virtual machine already holds ${ADDRESSES_PER_VIRTUAL_MACHINE} addresses, as many as one may`,
    );
}

async function allocateOnto(trx: Transaction<Database>, ip: Row<"ip_addresses">, nic: Interface) {
  const vm = await vmOfInterface(trx, nic);
  await checkRoomForAddress(trx, vm.id);
  await trx
    .updateTable("ip_addresses")
    .set({
      allocation_type: "VirtualMachine",
      allocation_id: vm.id,
      network_interface_id: nic.id,
      reverse_dns: vm.fqdn,
    })
    .where("id", "=", ip.id)
    .execute();
  await queueReconfigure(trx, vm.id);
}

function checkFree(ip: Row<"ip_addresses">): void {
  if (ip.allocation_id !== null)
    throw new AddressRefused("already_allocated", `the address is allocated to ${ip.allocation_id}`);
}

/** Allocates an address the organization owns onto an interface of one of its VMs. */
export function allocateToInterface(db: Kysely<Database>, ipId: string, nic: Interface): Promise<void> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      const ip = await lockAddress(trx, ipId);
      if (!ip) throw new AddressRefused("not_allocated", "the address is gone");
      checkFree(ip);
      if (nic.network_id !== ip.network_id)
        throw new AddressRefused("wrong_network", "the address is not in the interface's network");
      await allocateOnto(trx, ip, nic);
    }),
  );
}

/** Allocates an address onto the VM's first attached interface in the address's network. */
export function allocateToVirtualMachine(db: Kysely<Database>, ipId: string, vmId: string): Promise<void> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      const ip = await lockAddress(trx, ipId);
      if (!ip) throw new AddressRefused("not_allocated", "the address is gone");
      checkFree(ip);
      const nic = await trx
        .selectFrom("network_interfaces")
        .selectAll()
        .where("virtual_machine_id", "=", vmId)
        .where("network_id", "=", ip.network_id)
        .where("state", "=", "attached")
        .orderBy("position")
        .executeTakeFirst();
      if (!nic) throw new AddressRefused("no_interface", "the VM has no interface in the address's network");
      await allocateOnto(trx, ip, nic);
    }),
  );
}

/** Allocates a new address of the interface's network to the organization, onto the interface. */
export function allocateNewToInterface(
  db: Kysely<Database>,
  nic: Interface,
  version: IpVersion,
): Promise<Row<"ip_addresses">> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      if (nic.network_id === null)
        throw new AddressRefused("wrong_network", "the interface is on a virtual network, which has no pool");
      const vm = await vmOfInterface(trx, nic);
      await checkRoomForAddress(trx, vm.id);
      const ip = await allocateAddress(trx, {
        networkId: nic.network_id,
        version,
        subnetId: null,
        organizationId: vm.organization_id,
        allocationType: "VirtualMachine",
        allocationId: vm.id,
        networkInterfaceId: nic.id,
        releaseWithVm: true,
        reverseDns: vm.fqdn,
      });
      await queueReconfigure(trx, vm.id);
      return ip;
    }),
  );
}

/** Changes what an address says of itself (no host sees these). */
export async function updateAddress(
  db: Kysely<Database>,
  ipId: string,
  changes: { vip?: boolean; label?: string | null; reverseDns?: string | null },
): Promise<void> {
  const set = {
    ...(changes.vip !== undefined ? { vip: changes.vip ? (1 as const) : (0 as const) } : {}),
    ...(changes.label !== undefined ? { label: changes.label } : {}),
    ...(changes.reverseDns !== undefined ? { reverse_dns: changes.reverseDns } : {}),
  };
  if (Object.keys(set).length > 0)
    await db.updateTable("ip_addresses").set(set).where("id", "=", ipId).execute();
}
