import { sql, type Kysely, type Transaction } from "kysely";
import {
  insertRow,
  lockedForUpdate,
  newId,
  retryingConflicts,
  type Database,
  type Row,
  type TaskAction,
  type VirtualMachineState,
} from "../store/index.js";
import { now, withLease, type Lease, type LeaseHolder } from "./leases.js";
import { diskPurged, purged } from "./release.js";
import { acceptsActions, nextTaskStatus, taskStatusesAllowing } from "./states.js";
import { setVmState } from "./vms.js";

/**
 * A VM's actions (power and deletion) are tasks in a queue of its own: accepted at once,
 * run one at a time in the order they were accepted, by the worker of the VM's host.
 */

/** Katapult's names of the tasks. */
export const TASK_NAMES: Record<TaskAction, string> = {
  start: "Start virtual machine",
  stop: "Stop virtual machine",
  shutdown: "Shutdown virtual machine",
  reset: "Reset virtual machine",
  delete: "Delete virtual machine",
  purge: "Purge items from trash",
  reconfigure: "Apply configuration to virtual machine",
  build_disk: "Build disk",
  resize_disk: "Resize disk",
  shrink_disk: "Shrink disk",
  disk_io_profile: "Change disk IO profile",
};

type Taken = "live" | "next_start" | "unchanged";

/**
 * A finished reconfiguration's name says when the guest took its addresses (at once where
 * its template runs Trebuchet's agent) and its disks (at once where the machine has
 * hot-plug), or that it takes them from its next start.
 */
export function reconfiguredTaskName(outcome: { addresses: Taken; disks: Taken }): string {
  const said: string[] = [];
  if (outcome.addresses !== "unchanged")
    said.push(outcome.addresses === "live" ? "addresses applied live" : "addresses apply at next start");
  if (outcome.disks !== "unchanged")
    said.push(outcome.disks === "live" ? "disks changed live" : "disks change at next start");
  return said.length === 0 ? TASK_NAMES.reconfigure : `${TASK_NAMES.reconfigure} (${said.join("; ")})`;
}

/** The VM cannot take actions now: deleted meanwhile, or still being built, or failed. */
export class ActionRefused extends Error {
  constructor(
    readonly reason: "deleted" | "not_ready",
    message: string,
  ) {
    super(message);
  }
}

export const CANCELLED_BY_DELETION = "cancelled: the virtual machine was deleted before this action ran";

/**
 * The VM's row, locked for the rest of the transaction (PostgreSQL; SQLite has one
 * writer): queueing and deleting a VM are serialised, so no action is queued behind
 * its deletion, and queue positions are given one at a time.
 */
export async function lockActionableVm(
  trx: Transaction<Database>,
  vmId: string,
): Promise<Row<"virtual_machines">> {
  const { vm, refusal } = await lockForChange(trx, vmId);
  if (refusal) throw refusal;
  return vm!;
}

/**
 * The VM, locked, if its host can take a change now: it is built, not failed, not in
 * the trash (a VM in the trash is reconfigured when it is restored); else undefined.
 */
export async function vmTakingChanges(
  trx: Transaction<Database>,
  vmId: string,
): Promise<Row<"virtual_machines"> | undefined> {
  const { vm, refusal } = await lockForChange(trx, vmId);
  return refusal ? undefined : vm;
}

async function lockForChange(
  trx: Transaction<Database>,
  vmId: string,
): Promise<{ vm?: Row<"virtual_machines">; refusal?: ActionRefused }> {
  const vm = await lockedForUpdate(
    trx,
    trx.selectFrom("virtual_machines").selectAll().where("id", "=", vmId),
  ).executeTakeFirst();
  if (!vm || vm.deleted_at !== null)
    return { refusal: new ActionRefused("deleted", "the virtual machine has been deleted") };
  const build = await trx
    .selectFrom("builds")
    .select("state")
    .where("virtual_machine_id", "=", vmId)
    .orderBy("created_at", "desc")
    .executeTakeFirst();
  if (build && build.state !== "complete")
    return {
      refusal: new ActionRefused(
        "not_ready",
        `the virtual machine's build is ${build.state}; try again when it is complete`,
      ),
    };
  if (!acceptsActions(vm.state))
    return { refusal: new ActionRefused("not_ready", `the virtual machine is ${vm.state}`) };
  return { vm };
}

/** What has a queue of tasks: a VM (its actions) or a standalone disk (its build, its purge). */
export interface QueueOwner {
  id: string;
  organization_id: string | null;
}

/** Queues an action last in its owner's queue (optionally as part of a larger task). */
export async function enqueue(
  trx: Transaction<Database>,
  owner: QueueOwner,
  action: TaskAction,
  parentId: string | null = null,
) {
  const last = await trx
    .selectFrom("tasks")
    .select((eb) => eb.fn.max("queue_position").as("position"))
    .where("object_id", "=", owner.id)
    .executeTakeFirst();
  const task = {
    id: newId("task"),
    organization_id: owner.organization_id,
    name: TASK_NAMES[action],
    status: "pending" as const,
    action,
    queue_position: Number(last?.position ?? 0) + 1,
    object_type: owner.id.startsWith("disk_") ? "Disk" : "VirtualMachine",
    object_id: owner.id,
    created_at: now(),
    ...(parentId === null ? {} : { parent_id: parentId }),
  };
  await insertRow(trx, "tasks", task);
  const queued: Row<"tasks"> = {
    ...task,
    parent_id: parentId,
    lease_owner: null,
    lease_expires_at: null,
    progress: 0,
    error: null,
    started_at: null,
    finished_at: null,
  };
  return queued;
}

export type QueuedTask = Awaited<ReturnType<typeof enqueue>>;

export type PowerAction = Extract<TaskAction, "start" | "stop" | "shutdown" | "reset">;

/** Queues a power action behind the VM's other actions. */
export function queueAction(db: Kysely<Database>, vmId: string, action: PowerAction): Promise<QueuedTask> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => enqueue(trx, await lockActionableVm(trx, vmId), action)),
  );
}

/**
 * Deletes a VM, in one transaction: it goes to the trash (kept until `keepUntil`), the
 * actions queued for it that have not started are cancelled, and its deletion is queued
 * (behind an action that is running, which finishes first).
 */
export function deleteVirtualMachine(db: Kysely<Database>, vmId: string, keepUntil: number) {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      const vm = await lockActionableVm(trx, vmId);
      const t = now();
      const trash = {
        id: newId("trashObject"),
        object_type: "VirtualMachine",
        object_id: vm.id,
        organization_id: vm.organization_id,
        keep_until: keepUntil,
        created_at: t,
      };
      await trx.updateTable("virtual_machines").set({ deleted_at: t }).where("id", "=", vm.id).execute();
      await insertRow(trx, "trash_objects", trash);
      await trx
        .updateTable("tasks")
        .set({ status: nextTaskStatus("pending", "cancel")!, error: CANCELLED_BY_DELETION, finished_at: t })
        .where("object_id", "=", vm.id)
        .where("action", "is not", null)
        .where("status", "in", taskStatusesAllowing("cancel"))
        .execute();
      const task = await enqueue(trx, vm, "delete");
      return { vm, trash, task };
    }),
  );
}

export interface ClaimedTask {
  lease: Lease;
  taskId: string;
  /** The object whose queue it is in: a VM's ID, or a standalone disk's (see objectType). */
  vmId: string;
  objectType: "VirtualMachine" | "Disk";
  action: TaskAction;
  /** The larger task this one is part of (a whole trash's purge). */
  parentId: string | null;
  /** Claimed from a worker whose lease ran out. */
  takenOver: boolean;
}

/**
 * Claims the next action of a VM on this host: the first in its VM's queue, when no
 * other action of that VM runs; or a running one whose worker's lease ran out (it runs
 * again: every action is decided anew from the VM's real power state).
 */
export async function claimTask(
  db: Kysely<Database>,
  holder: LeaseHolder,
  hostId: string,
): Promise<ClaimedTask | undefined> {
  const t = now();
  return db.transaction().execute(async (trx) => {
    const task = await lockedForUpdate(
      trx,
      trx
        .selectFrom("tasks as t")
        .select(["t.id", "t.object_id", "t.object_type", "t.action", "t.status", "t.parent_id"])
        .where("t.action", "is not", null)
        .where((eb) =>
          eb.or([
            eb(
              "t.object_id",
              "in",
              eb.selectFrom("virtual_machines").select("id").where("host_id", "=", hostId),
            ),
            eb("t.object_id", "in", eb.selectFrom("disks").select("id").where("host_id", "=", hostId)),
          ]),
        )
        .where((eb) =>
          eb.or([
            eb.and([
              eb("t.status", "=", "pending"),
              // A VM's tasks wait for its build to end (a reconfiguration may be queued meanwhile).
              eb.not(
                eb.exists(
                  eb
                    .selectFrom("builds")
                    .select(sql`1`.as("one"))
                    .whereRef("builds.virtual_machine_id", "=", "t.object_id")
                    .where("builds.state", "in", ["pending", "building"]),
                ),
              ),
              eb.not(
                eb.exists(
                  eb
                    .selectFrom("tasks as other")
                    .select(sql`1`.as("one"))
                    .whereRef("other.object_id", "=", "t.object_id")
                    .where("other.action", "is not", null)
                    .where((o) =>
                      o.or([
                        o("other.status", "=", "running"),
                        o.and([
                          o("other.status", "=", "pending"),
                          o("other.queue_position", "<", o.ref("t.queue_position")),
                        ]),
                      ]),
                    ),
                ),
              ),
            ]),
            eb.and([eb("t.status", "=", "running"), holder.abandoned(t)]),
          ]),
        )
        .orderBy("t.created_at")
        .orderBy("t.queue_position")
        .limit(1),
      { skipLocked: true },
    ).executeTakeFirst();
    if (!task) return undefined;
    const lease: Lease = { table: "tasks", id: task.id, token: holder.newToken(), seconds: holder.seconds };
    await trx
      .updateTable("tasks")
      .set((eb) => ({
        status: nextTaskStatus(task.status, "claim")!,
        lease_owner: lease.token,
        lease_expires_at: t + lease.seconds,
        started_at: eb.fn.coalesce("started_at", eb.val(t)),
        progress: 10,
      }))
      .where("id", "=", task.id)
      .where("status", "=", task.status)
      .execute();
    return {
      lease,
      taskId: task.id,
      vmId: task.object_id!,
      objectType: task.object_type === "Disk" ? ("Disk" as const) : ("VirtualMachine" as const),
      action: task.action!,
      parentId: task.parent_id,
      takenOver: task.status === "running",
    };
  });
}

/** The action drives the host: the VM shows `state` meanwhile. */
export function actionStep(
  db: Kysely<Database>,
  task: ClaimedTask,
  state: VirtualMachineState,
): Promise<void> {
  return withLease(db, task.lease, async (trx) => {
    await setVmState(trx, task.vmId, state);
    await trx.updateTable("tasks").set({ progress: 50 }).where("id", "=", task.taskId).execute();
  });
}

/**
 * The action is over: the VM is recorded as `state` and the task as completed or failed.
 * A completed purge also gives back what the VM held: it is gone for good.
 */
export function finishTask(
  db: Kysely<Database>,
  task: ClaimedTask,
  state: VirtualMachineState,
  failure?: string,
  /** A name that says how the task was done (a reconfiguration: live or at the next start). */
  name?: string,
): Promise<void> {
  return withLease(db, task.lease, async (trx) => {
    if (task.action === "purge" && failure === undefined) await purged(trx, task.vmId);
    await setVmState(trx, task.vmId, state);
    const status = nextTaskStatus("running", failure === undefined ? "complete" : "fail")!;
    await trx
      .updateTable("tasks")
      .set({
        status,
        ...(failure === undefined ? { progress: 100 } : { error: failure }),
        ...(name !== undefined ? { name } : {}),
        finished_at: now(),
        lease_owner: null,
        lease_expires_at: null,
      })
      .where("id", "=", task.taskId)
      .where("status", "in", taskStatusesAllowing(failure === undefined ? "complete" : "fail"))
      .execute();
    if (task.parentId !== null) await settleParent(trx, task.parentId);
  });
}

/**
 * A standalone disk's task is over: a build records where the disk is (or that it
 * failed), a purge that the disk is gone.
 */
export function finishDiskTask(
  db: Kysely<Database>,
  task: ClaimedTask,
  outcome: { path?: string; failure?: string },
  /** What a built disk does next, in the same transaction (joinVmOnceBuilt). */
  onBuilt?: (trx: Transaction<Database>, diskId: string) => Promise<void>,
): Promise<void> {
  return withLease(db, task.lease, async (trx) => {
    const failed = outcome.failure !== undefined;
    if (task.action === "build_disk") {
      await trx
        .updateTable("disks")
        .set(failed || !outcome.path ? { state: "failed" } : { state: "ready", path: outcome.path })
        .where("id", "=", task.vmId)
        .where("state", "=", "pending")
        .execute();
      if (!failed && onBuilt) await onBuilt(trx, task.vmId);
    }
    if (task.action === "resize_disk" || task.action === "shrink_disk") {
      // A resize the host refused leaves the disk as it was.
      const disk = await trx
        .selectFrom("disks")
        .select("size_before_resize_in_gb")
        .where("id", "=", task.vmId)
        .executeTakeFirst();
      const before = disk?.size_before_resize_in_gb ?? null;
      await trx
        .updateTable("disks")
        .set({ size_before_resize_in_gb: null, ...(failed && before !== null ? { size_in_gb: before } : {}) })
        .where("id", "=", task.vmId)
        .execute();
    }
    if (task.action === "purge" && !failed) await diskPurged(trx, task.vmId);
    await trx
      .updateTable("tasks")
      .set({
        status: nextTaskStatus("running", failed ? "fail" : "complete")!,
        ...(failed ? { error: outcome.failure! } : { progress: 100 }),
        finished_at: now(),
        lease_owner: null,
        lease_expires_at: null,
      })
      .where("id", "=", task.taskId)
      .where("status", "in", taskStatusesAllowing(failed ? "fail" : "complete"))
      .execute();
    if (task.parentId !== null) await settleParent(trx, task.parentId);
  });
}

/** A task made of others completes (or fails) once each of them has. */
export async function settleParent(trx: Kysely<Database>, parentId: string): Promise<void> {
  // Children finishing at once settle one after the other, each seeing the others' ends.
  const parent = await lockedForUpdate(
    trx,
    trx.selectFrom("tasks").select("status").where("id", "=", parentId),
  ).executeTakeFirst();
  if (parent?.status !== "running") return;
  const children = await trx.selectFrom("tasks").select("status").where("parent_id", "=", parentId).execute();
  const done = children.filter((c) => c.status === "completed" || c.status === "failed");
  const failed = done.filter((c) => c.status === "failed").length;
  const finished = done.length === children.length;
  await trx
    .updateTable("tasks")
    .set({
      progress: children.length === 0 ? 100 : Math.floor((100 * done.length) / children.length),
      ...(finished
        ? {
            status: failed > 0 ? "failed" : "completed",
            finished_at: now(),
            ...(failed > 0 ? { error: `${failed} of ${children.length} objects could not be purged` } : {}),
          }
        : {}),
    })
    .where("id", "=", parentId)
    .where("status", "=", "running")
    .execute();
}
