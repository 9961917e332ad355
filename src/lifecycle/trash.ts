import type { Kysely, Transaction } from "kysely";
import {
  insertRow,
  lockedForUpdate,
  newId,
  retryingConflicts,
  type Database,
  type Row,
} from "../store/index.js";
import { queueReconfigure } from "./address-changes.js";
import { isUniqueViolation } from "./addresses.js";
import { now } from "./leases.js";
import { shortOfRoom } from "./placement.js";
import { enqueue, settleParent, TASK_NAMES, type QueuedTask } from "./tasks.js";

/**
 * The trash: a deleted VM waits there, powered off with its disks and addresses, until
 * it is restored or purged (by request, with the whole trash, or when its `keep_until`
 * passes). Purging is a task in the VM's queue, run by its host's worker.
 */

/** The trash cannot do this now. */
export class TrashRefused extends Error {
  constructor(
    readonly reason: "purging" | "hostname_taken" | "no_room",
    message: string,
  ) {
    super(message);
  }
}

/** The trash object's VM, locked for the rest of the transaction (see tasks.ts). */
async function lockTrashedVm(trx: Transaction<Database>, trash: Row<"trash_objects">) {
  return lockedForUpdate(
    trx,
    trx
      .selectFrom("virtual_machines")
      .selectAll()
      .where("id", "=", trash.object_id)
      .where("deleted_at", "is not", null)
      .where("purged_at", "is", null),
  ).executeTakeFirst();
}

/** What a trash object holds, locked: a VM, or a standalone disk (not purged yet). */
async function lockTrashed(trx: Transaction<Database>, trash: Row<"trash_objects">) {
  if (trash.object_type === "VirtualMachine") return lockTrashedVm(trx, trash);
  return lockedForUpdate(
    trx,
    trx.selectFrom("disks").selectAll().where("id", "=", trash.object_id).where("state", "!=", "deleted"),
  ).executeTakeFirst();
}

async function trashObject(trx: Kysely<Database>, trashId: string) {
  return trx.selectFrom("trash_objects").selectAll().where("id", "=", trashId).executeTakeFirst();
}

async function purgeUnderway(trx: Kysely<Database>, vmId: string) {
  return trx
    .selectFrom("tasks")
    .selectAll()
    .where("object_id", "=", vmId)
    .where("action", "=", "purge")
    .where("status", "in", ["pending", "running"])
    .executeTakeFirst();
}

/** Queues a purge (or answers the one already queued), `undefined` when the object is gone. */
async function queuePurge(trx: Transaction<Database>, trash: Row<"trash_objects">, parentId: string | null) {
  const object = await lockTrashed(trx, trash);
  if (!object) return undefined;
  const underway = await purgeUnderway(trx, object.id);
  if (underway) {
    // Already being purged on its own: the larger purge waits for it too.
    if (parentId !== null && underway.parent_id === null)
      await trx.updateTable("tasks").set({ parent_id: parentId }).where("id", "=", underway.id).execute();
    return { task: underway, queued: false };
  }
  return { task: await enqueue(trx, object, "purge", parentId), queued: true };
}

/** Purges one trash object; `undefined` when it is no longer in the trash. */
export function purgeTrashObject(db: Kysely<Database>, trashId: string): Promise<QueuedTask | undefined> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      const trash = await trashObject(trx, trashId);
      return trash ? (await queuePurge(trx, trash, null))?.task : undefined;
    }),
  );
}

/**
 * Purges everything in an organization's trash: one task that completes when the purge
 * of each object has (at once when the trash is empty).
 */
export function purgeAllTrash(db: Kysely<Database>, organizationId: string): Promise<Row<"tasks">> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      const t = now();
      const parent: Row<"tasks"> = {
        id: newId("task"),
        organization_id: organizationId,
        name: TASK_NAMES.purge,
        status: "running",
        action: null,
        lease_owner: null,
        lease_expires_at: null,
        queue_position: null,
        parent_id: null,
        progress: 0,
        object_type: "Organization",
        object_id: organizationId,
        error: null,
        created_at: t,
        started_at: t,
        finished_at: null,
      };
      await insertRow(trx, "tasks", parent);
      const trash = await trx
        .selectFrom("trash_objects")
        .selectAll()
        .where("organization_id", "=", organizationId)
        .orderBy("id")
        .execute();
      for (const object of trash) await queuePurge(trx, object, parent.id);
      await settleParent(trx, parent.id);
      return trx.selectFrom("tasks").selectAll().where("id", "=", parent.id).executeTakeFirstOrThrow();
    }),
  );
}

/**
 * Brings a VM back from the trash, as it was there: powered off, with its disks and
 * addresses (or a disk, as it was). Not while it is being purged, nor when a live VM
 * took its hostname.
 */
export function restoreTrashObject(
  db: Kysely<Database>,
  trashId: string,
): Promise<Row<"trash_objects"> | undefined> {
  return hostnameRaces(() =>
    retryingConflicts(() =>
      db.transaction().execute(async (trx) => {
        const trash = await trashObject(trx, trashId);
        if (!trash) return undefined;
        if (trash.object_type !== "VirtualMachine") {
          const disk = await lockTrashed(trx, trash);
          if (!disk) return undefined;
          if (await purgeUnderway(trx, disk.id))
            throw new TrashRefused("purging", "the object is being purged from the trash");
          await trx.deleteFrom("trash_objects").where("id", "=", trash.id).execute();
          return trash;
        }
        const vm = await lockTrashedVm(trx, trash);
        if (!vm) return undefined;
        if (await purgeUnderway(trx, vm.id))
          throw new TrashRefused("purging", "the object is being purged from the trash");
        const twin = await trx
          .selectFrom("virtual_machines")
          .select("id")
          .where("organization_id", "=", vm.organization_id)
          .where("hostname", "=", vm.hostname)
          .where("deleted_at", "is", null)
          .executeTakeFirst();
        if (twin)
          throw new TrashRefused("hostname_taken", `hostname ${vm.hostname} is now used by ${twin.id}`);
        // Its disks stayed on its host; its memory did not.
        const short = await shortOfRoom(trx, vm.host_id, { memory: vm.memory_in_gb, disk: 0 });
        if (short) throw new TrashRefused("no_room", short);
        await trx.updateTable("virtual_machines").set({ deleted_at: null }).where("id", "=", vm.id).execute();
        await trx.deleteFrom("trash_objects").where("id", "=", trash.id).execute();
        // What changed while it was in the trash (addresses taken off it) reaches its host.
        await queueReconfigure(trx, vm.id);
        return trash;
      }),
    ),
  );
}

/** Housekeeping: queues the purge of every trash object past its `keep_until`. */
export async function purgeExpiredTrash(db: Kysely<Database>, at: number): Promise<number> {
  const expired = await db
    .selectFrom("trash_objects")
    .select("id")
    .where("keep_until", "<=", at)
    .orderBy("keep_until")
    .limit(1000)
    .execute();
  let queued = 0;
  for (const { id } of expired) {
    const result = await retryingConflicts(() =>
      db.transaction().execute(async (trx) => {
        const trash = await trashObject(trx, id);
        return trash && trash.keep_until <= at ? queuePurge(trx, trash, null) : undefined;
      }),
    );
    if (result?.queued) queued += 1;
  }
  return queued;
}

/** A VM that took the hostname meanwhile trips the live-hostname index: the same refusal. */
async function hostnameRaces<T>(restore: () => Promise<T>): Promise<T> {
  try {
    return await restore();
  } catch (error) {
    if (isUniqueViolation(error))
      throw new TrashRefused("hostname_taken", "a live virtual machine took its hostname meanwhile");
    throw error;
  }
}
