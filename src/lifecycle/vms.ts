import { sql, type Kysely } from "kysely";
import type { Database, VirtualMachineState } from "../store/index.js";

/** The one write of a VM's state; callers hold the lease or the lock that entitles them to it. */
export async function setVmState(
  trx: Kysely<Database>,
  vmId: string,
  state: VirtualMachineState,
  also: { host_id?: string; deleted_at?: number; purged_at?: number } = {},
): Promise<void> {
  await trx
    .updateTable("virtual_machines")
    .set({ state, ...also })
    .where("id", "=", vmId)
    .execute();
}

/**
 * Reconciliation's write: the host says the VM is `observed`, the record says `recorded`.
 * Written only while nothing else owns the VM's state (no build or action pending or
 * running for it) and the record is still what was read.
 */
export async function recordObservedState(
  db: Kysely<Database>,
  vmId: string,
  recorded: VirtualMachineState,
  observed: VirtualMachineState,
): Promise<boolean> {
  const result = await db
    .updateTable("virtual_machines")
    .set({ state: observed })
    .where("id", "=", vmId)
    .where("state", "=", recorded)
    .where("deleted_at", "is", null)
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom("tasks")
            .select(sql`1`.as("one"))
            .where("object_id", "=", vmId)
            .where("action", "is not", null)
            .where("status", "in", ["pending", "running"]),
        ),
      ),
    )
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom("builds")
            .select(sql`1`.as("one"))
            .where("virtual_machine_id", "=", vmId)
            .where("state", "in", ["pending", "building"]),
        ),
      ),
    )
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}
