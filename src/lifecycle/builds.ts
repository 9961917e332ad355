import type { Kysely, Transaction } from "kysely";
import { lockedForUpdate, type Database, type Row, type VirtualMachineState } from "../store/index.js";
import { now, withLease, type Lease, type LeaseHolder } from "./leases.js";
import { anotherHostHasRoom, hasRoom, needsOf, unplaceableReason } from "./placement.js";
import { releaseVm } from "./release.js";
import { setVmState } from "./vms.js";
import { buildStatesAllowing, nextBuildState } from "./states.js";

/**
 * A build's life after acceptance (accept.ts): claimed by the worker of a host with room,
 * its steps recorded, then complete or failed. Every write after the claim is made under
 * the claim's lease (withLease): a worker that lost it writes nothing more.
 */

export interface ClaimedBuild {
  lease: Lease;
  buildId: string;
  taskId: string;
  vmId: string;
  /** This claim's attempt, from 1; a crash mid-build costs one. */
  attempt: number;
  /** When the build was accepted (Unix seconds). */
  acceptedAt: number;
  /** Claimed from a worker whose lease ran out. */
  takenOver: boolean;
}

export type BuildClaim =
  | { kind: "claimed"; build: ClaimedBuild }
  /** No host of the data center has room: the build was failed and says why. */
  | { kind: "unplaceable"; buildId: string; reason: string }
  /** This host is full, another may take it. */
  | { kind: "elsewhere" }
  | { kind: "none" };

/**
 * Claims the oldest pending build of the host's data center (or one whose worker's lease
 * ran out) when the host has room, placing its VM on the host in the same transaction.
 */
export async function claimBuild(
  db: Kysely<Database>,
  holder: LeaseHolder,
  host: Row<"hosts">,
): Promise<BuildClaim> {
  const t = now();
  const claimed = await db.transaction().execute(async (trx) => {
    const build = await lockedForUpdate(
      trx,
      trx
        .selectFrom("builds")
        .select(["id", "state", "task_id", "virtual_machine_id", "attempts", "created_at"])
        .where("virtual_machine_id", "in", (eb) =>
          eb
            .selectFrom("virtual_machines")
            .innerJoin("zones", "zones.id", "virtual_machines.zone_id")
            .select("virtual_machines.id")
            .where("zones.data_center_id", "=", host.data_center_id),
        )
        .where((eb) =>
          eb.or([eb("state", "=", "pending"), eb.and([eb("state", "=", "building"), holder.abandoned(t)])]),
        )
        .orderBy("created_at")
        .orderBy("id")
        .limit(1),
      { skipLocked: true },
    ).executeTakeFirst();
    if (!build) return { kind: "none" } as const;
    const needs = await needsOf(trx, build.id);
    if (!(await hasRoom(trx, host, needs))) return { kind: "full", build, needs } as const;
    const state = nextBuildState(build.state, "claim")!;
    const lease: Lease = { table: "builds", id: build.id, token: holder.newToken(), seconds: holder.seconds };
    await trx
      .updateTable("builds")
      .set({
        state,
        lease_owner: lease.token,
        lease_expires_at: t + lease.seconds,
        attempts: build.attempts + 1,
        updated_at: t,
      })
      .where("id", "=", build.id)
      .where("state", "=", build.state)
      .execute();
    await setVmState(trx, needs.vmId, "allocating", { host_id: host.id });
    return {
      kind: "claimed",
      build: {
        lease,
        buildId: build.id,
        taskId: build.task_id,
        vmId: needs.vmId,
        attempt: build.attempts + 1,
        acceptedAt: Number(build.created_at),
        takenOver: build.state === "building",
      },
    } as const;
  });
  if (claimed.kind !== "full") return claimed;
  // Another host of the data center may have room; only fail when none has. A build
  // another worker holds (an expired lease) is not failed from here: only a claim takes it.
  if (claimed.build.state !== "pending" || (await anotherHostHasRoom(db, host, claimed.needs)))
    return { kind: "elsewhere" };
  const reason = await unplaceableReason(db, host, claimed.needs);
  const failed = await db.transaction().execute(async (trx) => {
    // Only while still pending: a build another worker claimed meanwhile is its to finish.
    const written = await trx
      .updateTable("builds")
      .set({ state: nextBuildState("pending", "fail")!, failure_reason: reason, updated_at: now() })
      .where("id", "=", claimed.build.id)
      .where("state", "=", "pending")
      .executeTakeFirst();
    if (Number(written.numUpdatedRows) !== 1) return false;
    await recordFailure(trx, claimed.build.task_id, claimed.needs.vmId, reason);
    return true;
  });
  return failed ? { kind: "unplaceable", buildId: claimed.build.id, reason } : { kind: "none" };
}

/** The build's task is running (its worker begins, or begins again after a takeover). */
export function beginBuild(db: Kysely<Database>, build: ClaimedBuild): Promise<void> {
  return withLease(db, build.lease, async (trx) => {
    await trx
      .updateTable("tasks")
      .set((eb) => ({
        status: "running",
        started_at: eb.fn.coalesce("started_at", eb.val(now())),
        progress: 5,
        error: null,
      }))
      .where("id", "=", build.taskId)
      .execute();
  });
}

/** A step begins: its progress, and the state the VM shows meanwhile. */
export function buildStep(
  db: Kysely<Database>,
  build: ClaimedBuild,
  progress: number,
  vmState?: VirtualMachineState,
): Promise<void> {
  return withLease(db, build.lease, async (trx) => {
    await trx.updateTable("tasks").set({ progress }).where("id", "=", build.taskId).execute();
    if (vmState) await setVmState(trx, build.vmId, vmState);
  });
}

/** The host created the VM's disks, seed and network: its own disks are ready there. */
export function buildCreated(db: Kysely<Database>, build: ClaimedBuild, hostId: string): Promise<void> {
  return withLease(db, build.lease, async (trx) => {
    await trx
      .updateTable("disks")
      .set({ state: "ready", host_id: hostId })
      .where("virtual_machine_id", "=", build.vmId)
      .where("shared", "=", 0)
      .execute();
    await setVmState(trx, build.vmId, "stopped");
  });
}

export function completeBuild(db: Kysely<Database>, build: ClaimedBuild): Promise<void> {
  return withLease(db, build.lease, async (trx) => {
    const t = now();
    await setVmState(trx, build.vmId, "started");
    await trx
      .updateTable("disks")
      .set({ state: "attached" })
      .where("virtual_machine_id", "=", build.vmId)
      .execute();
    await finishBuild(trx, build, { state: "complete", failure_reason: null });
    await trx
      .updateTable("tasks")
      .set({ status: "completed", progress: 100, finished_at: t })
      .where("id", "=", build.taskId)
      .execute();
  });
}

/** Records the failure and gives back everything the build reserved. */
export function failBuild(db: Kysely<Database>, build: ClaimedBuild, reason: string): Promise<void> {
  return withLease(db, build.lease, async (trx) => {
    await finishBuild(trx, build, { state: "failed", failure_reason: reason });
    await recordFailure(trx, build.taskId, build.vmId, reason);
  });
}

async function finishBuild(
  trx: Transaction<Database>,
  build: ClaimedBuild,
  outcome: { state: "complete" | "failed"; failure_reason: string | null },
): Promise<void> {
  await trx
    .updateTable("builds")
    .set({ ...outcome, lease_owner: null, lease_expires_at: null, updated_at: now() })
    .where("id", "=", build.buildId)
    // Only from a state the machine lets this outcome follow.
    .where("state", "in", buildStatesAllowing(outcome.state === "complete" ? "complete" : "fail"))
    .execute();
}

/** The failed build's VM is gone: its reservations are released and its task failed. */
async function recordFailure(trx: Kysely<Database>, taskId: string, vmId: string, reason: string) {
  const t = now();
  await releaseVm(trx, vmId);
  await setVmState(trx, vmId, "failed", { deleted_at: t, purged_at: t });
  await trx
    .updateTable("tasks")
    .set({ status: "failed", error: reason, finished_at: t })
    .where("id", "=", taskId)
    .execute();
  // Changes queued while it was being built have no VM left to reach.
  await trx
    .updateTable("tasks")
    .set({ status: "failed", error: "cancelled: the virtual machine's build failed", finished_at: t })
    .where("object_id", "=", vmId)
    .where("status", "=", "pending")
    .where("action", "is not", null)
    .execute();
}
