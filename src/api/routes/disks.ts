import {
  assignDisk,
  changeIoProfile,
  createDisk,
  deleteDisk,
  DiskRefused,
  renameDisk,
  resizeDisk,
  setDiskAttached,
  unassignDisk,
} from "../../lifecycle/index.js";
import { ApiError, missingArgument } from "../../errors.js";
import type { Row } from "../../store/index.js";
import {
  booleanArgument,
  enumArgument,
  integerArgument,
  keyValueArray,
  objectArgument,
  requireLookup,
  stringArgument,
  type ArgumentBag,
} from "../arguments.js";
import { findVirtualMachine } from "../lookups.js";
import { inKatapultWords, limitCheck } from "../refusals.js";
import type { Operation, OperationContext } from "../operation.js";
import * as present from "../presenters.js";
import { checkOwnership, resolveOrganization } from "../resolve.js";
import { annotationsOf, diskView } from "../views.js";
import { insertRow } from "../../store/index.js";

/** Disks: an organization's, standalone or on its VMs. */

/** The disk a request names, if the identity reaches it; one in the trash answers `object_in_trash`. */
export async function findDisk(context: OperationContext): Promise<Row<"disks">> {
  const { db } = context.services;
  const lookup = requireLookup(context.args, "disk", ["id"] as const, context.segments.disk);
  const disk = await db.selectFrom("disks").selectAll().where("id", "=", lookup.value).executeTakeFirst();
  if (!disk || disk.state === "deleted") throw new ApiError("disk_not_found");
  await checkOwnership(context, disk.organization_id, "disk_not_found");
  const trash = await db
    .selectFrom("trash_objects")
    .selectAll()
    .where("object_id", "=", disk.id)
    .executeTakeFirst();
  if (trash) throw new ApiError("object_in_trash", { trash_object: present.trashObject(trash) });
  return disk;
}

/** A lifecycle refusal in Katapult's words. */
function diskError(error: unknown): unknown {
  if (!(error instanceof DiskRefused)) return error;
  switch (error.reason) {
    case "unassigned":
      return new ApiError("unassigned_disk");
    case "unable_to_assign":
      return new ApiError("unable_to_assign", { details: error.message });
    case "unable_to_unassign":
      return new ApiError("unable_to_unassign", { details: error.message });
    case "in_trash":
      return new ApiError("disk_not_found");
    case "vm_not_ready":
      return new ApiError("task_queueing_error", { details: error.message });
    case "no_room":
    case "assigned":
    case "invalid":
      return new ApiError("validation_error", { errors: [error.message] });
  }
}

/**
 * `virtual_machine_disk` of a new disk: the VM (the organization's) it is built for, and
 * whether it is attached once built (`attach`, default false: assigned only). A disk
 * starts as a data disk of a running system: `boot: true` is refused.
 */
async function builtForVm(
  context: OperationContext,
  properties: ArgumentBag,
  organizationId: string,
): Promise<{ vm: Row<"virtual_machines">; attach: boolean } | undefined> {
  const attachment = objectArgument(properties, "virtual_machine_disk");
  if (!attachment) return undefined;
  if (booleanArgument(attachment, "boot"))
    throw new ApiError("validation_error", { errors: ["A new disk cannot be a boot disk"] });
  const vm = await findVirtualMachine({ ...context, args: attachment, segments: {} });
  if (vm.organization_id !== organizationId) throw new ApiError("virtual_machine_not_found");
  return { vm, attach: booleanArgument(attachment, "attach") ?? false };
}

async function freshView(context: OperationContext, diskId: string) {
  const { db } = context.services;
  const disk = await db.selectFrom("disks").selectAll().where("id", "=", diskId).executeTakeFirstOrThrow();
  return diskView(db, disk);
}

async function ioProfileOf(context: OperationContext, properties: ArgumentBag): Promise<string | null> {
  const { db } = context.services;
  if (properties.io_profile === undefined || properties.io_profile === null) {
    // Katapult gives a new disk its default profile; here, the catalog's first.
    const first = await db.selectFrom("disk_io_profiles").select("id").orderBy("name").executeTakeFirst();
    return first?.id ?? null;
  }
  const lookup = requireLookup(properties, "io_profile", ["id", "permalink"] as const);
  const profile = await db
    .selectFrom("disk_io_profiles")
    .select("id")
    .where(lookup.key, "=", lookup.value)
    .executeTakeFirst();
  if (!profile) throw new ApiError("disk_io_profile_not_found");
  return profile.id;
}

async function setAnnotations(
  context: OperationContext,
  diskId: string,
  annotations: { key: string; value: string }[],
) {
  const { db } = context.services;
  await db.transaction().execute(async (trx) => {
    await trx
      .deleteFrom("annotations")
      .where("object_type", "=", "Disk")
      .where("object_id", "=", diskId)
      .execute();
    for (const [index, annotation] of annotations.entries())
      await insertRow(trx, "annotations", {
        object_type: "Disk",
        object_id: diskId,
        position: index + 1,
        key: annotation.key,
        value: annotation.value,
      });
  });
}

export const diskOperations: Operation[] = [
  {
    name: "get_disk",
    method: "GET",
    path: "/disks/disk",
    scopes: ["disks", "disks:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const { db } = context.services;
      const disk = await findDisk(context);
      return {
        body: { disk: await diskView(db, disk), annotations: await annotationsOf(db, "Disk", disk.id) },
      };
    },
  },
  {
    name: "create_disk",
    method: "POST",
    path: "/organizations/organization/disks",
    scopes: ["disks"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const { db } = context.services;
      const org = await resolveOrganization(context);
      const properties = objectArgument(context.args, "properties");
      if (!properties) throw missingArgument(["properties"]);
      const name = stringArgument(properties, "name", { maxLength: 255 });
      if (!name?.trim()) throw new ApiError("validation_error", { errors: ["Name can't be blank"] });
      const sizeInGb = integerArgument(properties, "size_in_gb");
      if (sizeInGb === undefined) throw missingArgument(["properties", "size_in_gb"]);
      if (sizeInGb < 1 || sizeInGb > 16_384)
        throw new ApiError("validation_error", { errors: ["Size in GB must be between 1 and 16384"] });
      if (properties.data_center === undefined) throw missingArgument(["properties", "data_center"]);
      const dcLookup = requireLookup(properties, "data_center", ["id", "permalink"] as const);
      const dc = await db
        .selectFrom("data_centers")
        .select("id")
        .where(dcLookup.key, "=", dcLookup.value)
        .executeTakeFirst();
      if (!dc) throw new ApiError("data_center_not_found");
      const forVm = await builtForVm(context, properties, org.id);
      const storageSpeed = enumArgument(properties, "storage_speed", ["nvme", "ssd"] as const) ?? "nvme";
      const fileSystem = enumArgument(properties, "initial_file_system", ["ext4", "xfs"] as const) ?? null;
      const ioProfileId = await ioProfileOf(context, properties);
      const annotations = keyValueArray(context.args, "annotations");
      const { disk, task } = await inKatapultWords(diskError, () =>
        createDisk(db, {
          organizationId: org.id,
          dataCenterId: dc.id,
          name,
          sizeInGb,
          storageSpeed,
          ioProfileId,
          fileSystemType: fileSystem,
          defaultLimits: context.services.organizationLimits,
          ...(forVm ? { forVm } : {}),
        }),
      );
      if (annotations.length > 0) await setAnnotations(context, disk.id, annotations);
      context.services.notifyWork?.();
      return {
        status: 201,
        body: {
          disk: await diskView(db, disk),
          task: present.task(task),
          annotations: await annotationsOf(db, "Disk", disk.id),
        },
      };
    },
  },
  {
    name: "update_disk",
    method: "PATCH",
    path: "/disks/disk",
    scopes: ["disks"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const { db } = context.services;
      const disk = await findDisk(context);
      const properties = objectArgument(context.args, "properties");
      if (!properties) throw missingArgument(["properties"]);
      if (properties.size_in_gb !== undefined)
        throw new ApiError("validation_error", {
          errors: ["Size can only be changed with PUT /disks/_/resize"],
        });
      const name = stringArgument(properties, "name", { maxLength: 255 });
      if (name !== undefined) {
        if (!name.trim()) throw new ApiError("validation_error", { errors: ["Name can't be blank"] });
        await renameDisk(db, disk.id, name);
      }
      if (context.args.annotations !== undefined)
        await setAnnotations(context, disk.id, keyValueArray(context.args, "annotations"));
      return {
        body: {
          disk: await freshView(context, disk.id),
          annotations: await annotationsOf(db, "Disk", disk.id),
        },
      };
    },
  },
  {
    name: "delete_disk",
    method: "DELETE",
    path: "/disks/disk",
    scopes: ["disks"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const disk = await findDisk(context);
      const { trash } = await inKatapultWords(diskError, () =>
        deleteDisk(context.services.db, disk.id, context.services.now() + context.services.trashKeepSeconds),
      );
      return {
        body: { disk: await diskView(context.services.db, disk), trash_object: present.trashObject(trash) },
      };
    },
  },
  {
    name: "assign_disk",
    method: "POST",
    path: "/disks/disk/assign",
    scopes: ["disks"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const disk = await findDisk(context);
      const vm = await findVirtualMachine(context);
      if (vm.organization_id !== disk.organization_id) throw new ApiError("virtual_machine_not_found");
      await inKatapultWords(diskError, () => assignDisk(context.services.db, disk.id, vm));
      return { body: { disk: await freshView(context, disk.id) } };
    },
  },
  {
    name: "unassign_disk",
    method: "POST",
    path: "/disks/disk/unassign",
    scopes: ["disks"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const disk = await findDisk(context);
      await inKatapultWords(diskError, () => unassignDisk(context.services.db, disk.id));
      return { body: { disk: await freshView(context, disk.id) } };
    },
  },
  {
    name: "resize_disk",
    method: "PUT",
    path: "/disks/disk/resize",
    scopes: ["disks"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const disk = await findDisk(context);
      const sizeInGb = integerArgument(context.args, "size_in_gb");
      if (sizeInGb === undefined) throw missingArgument(["size_in_gb"]);
      if (sizeInGb < 1 || sizeInGb > 16_384)
        throw new ApiError("validation_error", { errors: ["Size in GB must be between 1 and 16384"] });
      const method = enumArgument(context.args, "resize_method", ["online", "offline"] as const);
      const task = await inKatapultWords(diskError, () =>
        resizeDisk(context.services.db, disk.id, sizeInGb, method, limitCheck(context, disk)),
      );
      context.services.notifyWork?.();
      return { body: { disk: await freshView(context, disk.id), task: present.task(task) } };
    },
  },
  {
    name: "change_disk_io_profile",
    method: "PUT",
    path: "/disks/disk/io_profile",
    scopes: ["disks"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const disk = await findDisk(context);
      if (context.args.io_profile === undefined || context.args.io_profile === null)
        throw missingArgument(["io_profile"]);
      const profileId = await ioProfileOf(context, context.args);
      if (profileId === null) throw new ApiError("disk_io_profile_not_found");
      const { task } = await inKatapultWords(diskError, () =>
        changeIoProfile(context.services.db, disk.id, profileId),
      );
      context.services.notifyWork?.();
      return { body: { disk: await freshView(context, disk.id), task: present.task(task) } };
    },
  },
  ...(["attach", "detach"] as const).map((change): Operation => ({
    name: `${change}_disk`,
    method: "POST",
    path: `/disks/disk/${change}`,
    scopes: ["disks"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const disk = await findDisk(context);
      const { task } = await inKatapultWords(diskError, () =>
        setDiskAttached(context.services.db, disk.id, change === "attach"),
      );
      context.services.notifyWork?.();
      return { body: { disk: await freshView(context, disk.id), task: present.task(task) } };
    },
  })),
];
