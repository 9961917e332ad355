import { ApiError } from "../../errors.js";
import type { Row } from "../../store/index.js";
import { requireLookup } from "../arguments.js";
import type { Operation, OperationContext } from "../operation.js";
import * as present from "../presenters.js";
import { checkOwnership } from "../resolve.js";
import { annotationsOf, diskView } from "../views.js";

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
];
