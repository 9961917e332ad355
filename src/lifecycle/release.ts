import type { Kysely } from "kysely";
import type { Database } from "../store/index.js";
import { now } from "./leases.js";
import { storedPlanOf } from "./stored-plan.js";

/**
 * Gives back what a VM held, in the transaction given: addresses made for it (by its
 * build, or `allocate_new_ip`) return to the pool, addresses the organization owned
 * before stay with it (unallocated), the disks made with it are marked deleted, standalone and shared disks
 * are detached and kept. Idempotent.
 */
export async function releaseVm(trx: Kysely<Database>, vmId: string): Promise<void> {
  // Builds before `release_with_vm` existed say in their plan which addresses were new.
  const planned = (await storedPlanOf(trx, vmId))?.addresses ?? [];
  const madeByBuild = new Set(planned.filter((a) => a.kind === "new").map((a) => a.id));
  const held = await trx
    .selectFrom("ip_addresses")
    .select(["id", "release_with_vm"])
    .where("allocation_type", "=", "VirtualMachine")
    .where("allocation_id", "=", vmId)
    .execute();
  const returned = held.filter((r) => r.release_with_vm === 1 || madeByBuild.has(r.id)).map((r) => r.id);
  const kept = held.map((r) => r.id).filter((id) => !returned.includes(id));
  if (returned.length > 0) await trx.deleteFrom("ip_addresses").where("id", "in", returned).execute();
  if (kept.length > 0) {
    await trx
      .updateTable("ip_addresses")
      .set({ allocation_type: null, allocation_id: null, network_interface_id: null, reverse_dns: null })
      .where("id", "in", kept)
      .execute();
  }
  // Disks made on their own outlive the VM they were given to: back to the organization, detached.
  await trx
    .updateTable("disks")
    .set({ virtual_machine_id: null, position: null, state: "ready" })
    .where("virtual_machine_id", "=", vmId)
    .where("shared", "=", 0)
    .where("path", "is not", null)
    .execute();
  await trx
    .updateTable("disks")
    .set({ state: "deleted" })
    .where("virtual_machine_id", "=", vmId)
    .where("shared", "=", 0)
    .execute();
  await trx
    .updateTable("disks")
    .set({ virtual_machine_id: null, position: null, state: "ready" })
    .where("virtual_machine_id", "=", vmId)
    .where("shared", "=", 1)
    .execute();
}

/** A purge finished: the VM is gone for good, what it held is given back. */
export async function purged(trx: Kysely<Database>, vmId: string): Promise<void> {
  await releaseVm(trx, vmId);
  await trx.updateTable("virtual_machines").set({ purged_at: now() }).where("id", "=", vmId).execute();
  await trx.deleteFrom("trash_objects").where("object_id", "=", vmId).execute();
}

/** A standalone disk's purge finished: its file is gone from its host. */
export async function diskPurged(trx: Kysely<Database>, diskId: string): Promise<void> {
  await trx.updateTable("disks").set({ state: "deleted" }).where("id", "=", diskId).execute();
  await trx.deleteFrom("trash_objects").where("object_id", "=", diskId).execute();
}
