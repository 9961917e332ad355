import type { Kysely, Transaction } from "kysely";
import {
  insertRow,
  lockedForUpdate,
  newId,
  retryingConflicts,
  type Database,
  type Row,
} from "../store/index.js";
import { reconfigureTask } from "./address-changes.js";
import { now } from "./leases.js";
import { ensureWithinLimits, lockOrganization, type LimitCheck } from "./organization-limits.js";
import { shortOfRoom, usageOf } from "./placement.js";
import { enqueue, vmTakingChanges, type QueuedTask } from "./tasks.js";

/**
 * Standalone disks: made empty on a host of their data center (a `Build disk` task),
 * assigned to a VM on that host (it then has the disk, detached), attached (the VM's
 * definition names it: hot-plugged into a running q35 machine, else from its next start), detached, unassigned,
 * and deleted to the trash like VMs. A disk's state: `pending` (being built), `ready`
 * (built; detached if assigned), `attached`, `failed`, `deleted` (purged).
 */

export class DiskRefused extends Error {
  constructor(
    readonly reason:
      | "no_room"
      | "unassigned"
      | "unable_to_assign"
      | "unable_to_unassign"
      | "assigned"
      | "invalid"
      | "in_trash"
      | "vm_not_ready",
    message: string,
  ) {
    super(message);
  }
}

export interface NewDisk {
  organizationId: string;
  /** The configured limits of organizations that have none of their own. */
  defaultLimits: LimitCheck["defaults"];
  dataCenterId: string;
  name: string;
  sizeInGb: number;
  storageSpeed: string;
  ioProfileId: string | null;
  fileSystemType: string | null;
  /** Built on this VM's host and given to it once built (`virtual_machine_disk`); attached too when `attach`. */
  forVm?: { vm: Row<"virtual_machines">; attach: boolean };
}

/** Is this disk part of its VM's machine (in its definition)? An assigned but detached standalone disk waits outside. */
export function inDefinition(disk: Pick<Row<"disks">, "state" | "path">): boolean {
  if (disk.state === "deleted" || disk.state === "failed") return false;
  return !(disk.path !== null && disk.state === "ready");
}

async function lockDisk(trx: Transaction<Database>, diskId: string) {
  const disk = await lockedForUpdate(
    trx,
    trx.selectFrom("disks").selectAll().where("id", "=", diskId),
  ).executeTakeFirst();
  if (!disk || disk.state === "deleted") throw new DiskRefused("in_trash", "the disk is gone");
  const trash = await trx
    .selectFrom("trash_objects")
    .select("id")
    .where("object_id", "=", diskId)
    .executeTakeFirst();
  if (trash) throw new DiskRefused("in_trash", "the disk is in the trash");
  return disk;
}

/**
 * Records a new empty disk and queues its build: on its VM's host for a disk made for a
 * VM, else on the first host of its data center with room.
 */
export function createDisk(
  db: Kysely<Database>,
  spec: NewDisk,
): Promise<{ disk: Row<"disks">; task: QueuedTask }> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      await lockOrganization(trx, spec.organizationId);
      const limits = { organizationId: spec.organizationId, defaults: spec.defaultLimits };
      await ensureWithinLimits(trx, limits, { disk_space: spec.sizeInGb });
      const forVm = spec.forVm?.vm;
      if (forVm && (forVm.host_id === null || forVm.deleted_at !== null || forVm.state === "failed"))
        throw new DiskRefused("unable_to_assign", "the virtual machine has no host to build the disk on");
      let candidates = trx
        .selectFrom("hosts")
        .innerJoin("zones", "zones.id", "hosts.zone_id")
        .selectAll("hosts")
        .where("zones.data_center_id", "=", spec.dataCenterId)
        .orderBy("hosts.name");
      if (forVm) candidates = candidates.where("hosts.id", "=", forVm.host_id!);
      const hosts = await lockedForUpdate(trx, candidates).execute();
      if (forVm && hosts.length === 0)
        throw new DiskRefused("unable_to_assign", "the virtual machine is in another data center");
      let chosen: Row<"hosts"> | undefined;
      for (const host of hosts) {
        const used = await usageOf(trx, host.id, "");
        if (used.disk + spec.sizeInGb <= host.disk_in_gb) {
          chosen = host;
          break;
        }
      }
      if (!chosen)
        throw new DiskRefused(
          "no_room",
          `no host in the data center has room for ${spec.sizeInGb} GB of disk`,
        );
      const disk: Row<"disks"> = {
        id: newId("disk"),
        organization_id: spec.organizationId,
        data_center_id: spec.dataCenterId,
        name: spec.name,
        size_in_gb: spec.sizeInGb,
        storage_speed: spec.storageSpeed,
        io_profile_id: spec.ioProfileId,
        file_system_type: spec.fileSystemType,
        virtual_machine_id: null,
        position: null,
        shared: 0,
        host_id: chosen.id,
        path: null,
        state: "pending",
        build_for_vm_id: forVm?.id ?? null,
        size_before_resize_in_gb: null,
        attach_when_built: spec.forVm?.attach ? 1 : 0,
        created_at: now(),
      };
      await insertRow(trx, "disks", disk);
      const task = await enqueue(trx, disk, "build_disk");
      return { disk, task };
    }),
  );
}

/**
 * A disk built for a VM joins it (in the build's own transaction): assigned, and attached
 * with a reconfiguration of the VM when asked for and the VM takes changes now; a VM gone
 * meanwhile leaves the disk with the organization, unassigned.
 */
export async function joinVmOnceBuilt(trx: Transaction<Database>, diskId: string): Promise<void> {
  const disk = await trx.selectFrom("disks").selectAll().where("id", "=", diskId).executeTakeFirst();
  if (!disk?.build_for_vm_id || disk.state !== "ready") return;
  await trx.updateTable("disks").set({ build_for_vm_id: null }).where("id", "=", diskId).execute();
  const vm = await vmTakingChanges(trx, disk.build_for_vm_id);
  const stillThere = await trx
    .selectFrom("virtual_machines")
    .select(["id", "host_id"])
    .where("id", "=", disk.build_for_vm_id)
    .where("deleted_at", "is", null)
    .where("purged_at", "is", null)
    .executeTakeFirst();
  if (!stillThere || stillThere.host_id !== disk.host_id) return;
  const last = await trx
    .selectFrom("disks")
    .select((eb) => eb.fn.max("position").as("position"))
    .where("virtual_machine_id", "=", stillThere.id)
    .executeTakeFirst();
  const attach = disk.attach_when_built === 1 && vm !== undefined;
  await trx
    .updateTable("disks")
    .set({
      virtual_machine_id: stillThere.id,
      position: Number(last?.position ?? 0) + 1,
      ...(attach ? { state: "attached" as const } : {}),
    })
    .where("id", "=", diskId)
    .execute();
  if (attach) await reconfigureTask(trx, stillThere.id);
}

/** A disk no VM has goes to the trash (its file stays on its host until the purge). */
export function deleteDisk(
  db: Kysely<Database>,
  diskId: string,
  keepUntil: number,
): Promise<{ disk: Row<"disks">; trash: Row<"trash_objects"> }> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      const disk = await lockDisk(trx, diskId);
      if (disk.virtual_machine_id !== null)
        throw new DiskRefused(
          "assigned",
          `the disk is assigned to ${disk.virtual_machine_id}: unassign it first`,
        );
      // Shared disks are the operator's (catalog), on no host of ours to purge them from.
      if (disk.shared === 1 || disk.host_id === null)
        throw new DiskRefused(
          "invalid",
          "a shared disk is managed by the operator, not deleted through the API",
        );
      const trash: Row<"trash_objects"> = {
        id: newId("trashObject"),
        object_type: "Disk",
        object_id: disk.id,
        organization_id: disk.organization_id,
        keep_until: keepUntil,
        created_at: now(),
      };
      await insertRow(trx, "trash_objects", trash);
      return { disk, trash };
    }),
  );
}

/** Gives a disk to a VM on the same host; it is assigned, detached, until attached. */
export function assignDisk(
  db: Kysely<Database>,
  diskId: string,
  vm: Row<"virtual_machines">,
): Promise<Row<"disks">> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      const disk = await lockDisk(trx, diskId);
      if (disk.virtual_machine_id === vm.id) return disk;
      if (disk.virtual_machine_id !== null)
        throw new DiskRefused("unable_to_assign", `the disk is assigned to ${disk.virtual_machine_id}`);
      if (disk.state !== "ready" || disk.path === null)
        throw new DiskRefused(
          "unable_to_assign",
          `the disk is ${disk.state === "pending" ? "still being built" : disk.state}`,
        );
      if (disk.host_id !== vm.host_id)
        throw new DiskRefused("unable_to_assign", "the disk and the virtual machine are on different hosts");
      const last = await trx
        .selectFrom("disks")
        .select((eb) => eb.fn.max("position").as("position"))
        .where("virtual_machine_id", "=", vm.id)
        .executeTakeFirst();
      const assigned = { virtual_machine_id: vm.id, position: Number(last?.position ?? 0) + 1 };
      await trx.updateTable("disks").set(assigned).where("id", "=", disk.id).execute();
      return { ...disk, ...assigned };
    }),
  );
}

/** Takes a detached disk from its VM (a no-op for a disk no VM has). */
export function unassignDisk(db: Kysely<Database>, diskId: string): Promise<Row<"disks">> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      const disk = await lockDisk(trx, diskId);
      if (disk.virtual_machine_id === null) return disk;
      if (disk.path === null)
        throw new DiskRefused("unable_to_unassign", "a disk made with its virtual machine stays with it");
      if (disk.state === "attached") throw new DiskRefused("unable_to_unassign", "detach the disk first");
      const unassigned = { virtual_machine_id: null, position: null };
      await trx.updateTable("disks").set(unassigned).where("id", "=", disk.id).execute();
      return { ...disk, ...unassigned };
    }),
  );
}

/**
 * Attaches an assigned disk to its VM's machine, or detaches it: the VM's definition
 * changes (a `reconfigure` task, answered here). A running q35 machine takes the change
 * at once (hot-plug); a running microvm lets go of a detached disk at once and takes an
 * attached one from its next start. The task's name says which.
 */
export function setDiskAttached(
  db: Kysely<Database>,
  diskId: string,
  attached: boolean,
): Promise<{ disk: Row<"disks">; task: Row<"tasks"> }> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      const disk = await lockDisk(trx, diskId);
      if (disk.virtual_machine_id === null)
        throw new DiskRefused("unassigned", "the disk is not assigned to a virtual machine");
      if (disk.path === null)
        throw new DiskRefused(
          "unable_to_unassign",
          "a disk made with its virtual machine is always attached",
        );
      const vm = await vmTakingChanges(trx, disk.virtual_machine_id);
      if (!vm)
        throw new DiskRefused(
          "vm_not_ready",
          "the disk's virtual machine takes no changes now (being built, failed or in the trash)",
        );
      const state = attached ? ("attached" as const) : ("ready" as const);
      if (disk.state !== state)
        await trx.updateTable("disks").set({ state }).where("id", "=", disk.id).execute();
      const task = await reconfigureTask(trx, disk.virtual_machine_id);
      return { disk: { ...disk, state }, task };
    }),
  );
}

/**
 * Puts a disk under another IO profile. One in its VM's machine changes through the VM's
 * `reconfigure` task (QMP `block_set_io_throttle` on a running machine, the drive's
 * options from its next start); one no machine has, through a task of its own that
 * only records it. Answers the task.
 */
export function changeIoProfile(
  db: Kysely<Database>,
  diskId: string,
  ioProfileId: string,
): Promise<{ disk: Row<"disks">; task: QueuedTask }> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      const disk = await lockDisk(trx, diskId);
      if (disk.state === "failed") throw new DiskRefused("invalid", "the disk failed to build");
      if (disk.shared === 1) throw new DiskRefused("invalid", "a shared disk's profile is the operator's");
      const changed = { ...disk, io_profile_id: ioProfileId };
      if (disk.virtual_machine_id !== null && inDefinition(disk)) {
        if (!(await vmTakingChanges(trx, disk.virtual_machine_id)))
          throw new DiskRefused(
            "vm_not_ready",
            "the disk's virtual machine takes no changes now (being built, failed or in the trash)",
          );
        await trx
          .updateTable("disks")
          .set({ io_profile_id: ioProfileId })
          .where("id", "=", disk.id)
          .execute();
        return { disk: changed, task: await reconfigureTask(trx, disk.virtual_machine_id) };
      }
      await trx.updateTable("disks").set({ io_profile_id: ioProfileId }).where("id", "=", disk.id).execute();
      return { disk: changed, task: await enqueue(trx, disk, "disk_io_profile") };
    }),
  );
}

/** Changes what a disk is called. */
export async function renameDisk(db: Kysely<Database>, diskId: string, name: string): Promise<void> {
  await db.updateTable("disks").set({ name }).where("id", "=", diskId).execute();
}

/**
 * Resizes a disk. One in its VM's machine grows through the VM's `reconfigure` task (a
 * running guest sees the new size at once); one no machine has, through a `Resize disk`
 * task of its own, or shrinks, offline only, through a `Shrink disk` task. Answers the task.
 */
export function resizeDisk(
  db: Kysely<Database>,
  diskId: string,
  sizeInGb: number,
  method: "online" | "offline" | undefined,
  limits: LimitCheck,
): Promise<QueuedTask> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      await lockOrganization(trx, limits.organizationId);
      const disk = await lockDisk(trx, diskId);
      if (sizeInGb === disk.size_in_gb)
        throw new DiskRefused("invalid", `the disk already has ${disk.size_in_gb} GB`);
      if (disk.state === "pending" || disk.state === "failed")
        throw new DiskRefused(
          "invalid",
          `the disk is ${disk.state === "pending" ? "still being built" : "failed"}`,
        );
      if (disk.shared === 1) throw new DiskRefused("invalid", "a shared disk is resized by the operator");
      const inMachine = disk.virtual_machine_id !== null && inDefinition(disk);
      if (sizeInGb < disk.size_in_gb) {
        // Shrinking rewrites the image (and its filesystem) with nothing holding it open.
        if (method !== "offline")
          throw new DiskRefused("invalid", "a disk shrinks only offline: give resize_method offline");
        if (inMachine)
          throw new DiskRefused(
            "invalid",
            disk.path === null
              ? "a disk made with its virtual machine does not shrink"
              : "detach the disk from its virtual machine to shrink it",
          );
        await trx
          .updateTable("disks")
          .set({ size_in_gb: sizeInGb, size_before_resize_in_gb: disk.size_in_gb })
          .where("id", "=", disk.id)
          .execute();
        return enqueue(trx, disk, "shrink_disk");
      }
      await ensureWithinLimits(trx, limits, { disk_space: sizeInGb - disk.size_in_gb });
      const short = await shortOfRoom(trx, disk.host_id, { memory: 0, disk: sizeInGb - disk.size_in_gb });
      if (short) throw new DiskRefused("no_room", short);
      if (inMachine) {
        if (!(await vmTakingChanges(trx, disk.virtual_machine_id!)))
          throw new DiskRefused(
            "vm_not_ready",
            "the disk's virtual machine takes no changes now (being built, failed or in the trash)",
          );
        await trx.updateTable("disks").set({ size_in_gb: sizeInGb }).where("id", "=", disk.id).execute();
        return reconfigureTask(trx, disk.virtual_machine_id!);
      }
      await trx
        .updateTable("disks")
        .set({ size_in_gb: sizeInGb, size_before_resize_in_gb: disk.size_in_gb })
        .where("id", "=", disk.id)
        .execute();
      return enqueue(trx, disk, "resize_disk");
    }),
  );
}
