import { ApiError } from "../../errors.js";
import { purgeAllTrash, purgeTrashObject, restoreTrashObject, TrashRefused } from "../../lifecycle/index.js";
import type { Row } from "../../store/index.js";
import { pagination, requireLookup } from "../arguments.js";
import type { Operation, OperationContext } from "../operation.js";
import { pageOf } from "../paging.js";
import * as present from "../presenters.js";
import { checkOwnership, resolveOrganization } from "../resolve.js";

/** The trash: what was deleted, until it is restored or purged. */

/** The trash object a request names (`id` or `object_id`), if the identity reaches it. */
async function findTrashObject(context: OperationContext): Promise<Row<"trash_objects">> {
  const lookup = requireLookup(
    context.args,
    "trash_object",
    ["id", "object_id"] as const,
    context.segments.trash_object,
  );
  const trash = await context.services.db
    .selectFrom("trash_objects")
    .selectAll()
    .where(lookup.key, "=", lookup.value)
    .executeTakeFirst();
  if (!trash) throw new ApiError("trash_object_not_found");
  await checkOwnership(context, trash.organization_id, "trash_object_not_found");
  return trash;
}

export const trashOperations: Operation[] = [
  {
    name: "list_trash_objects",
    method: "GET",
    path: "/organizations/organization/trash_objects",
    scopes: ["trash_objects:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const org = await resolveOrganization(context);
      const base = context.services.db.selectFrom("trash_objects").where("organization_id", "=", org.id);
      const { pagination: paged, items } = await pageOf(pagination(context.args), base, (q) =>
        q.selectAll().orderBy("created_at").orderBy("id"),
      );
      return { body: { pagination: paged, trash_objects: items.map(present.trashObject) } };
    },
  },
  {
    name: "get_trash_object",
    method: "GET",
    path: "/trash_objects/trash_object",
    scopes: ["trash_objects:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      return { body: { trash_object: present.trashObject(await findTrashObject(context)) } };
    },
  },
  {
    name: "purge_trash_object",
    method: "DELETE",
    path: "/trash_objects/trash_object",
    scopes: ["trash_objects:purge"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const trash = await findTrashObject(context);
      const task = await purgeTrashObject(context.services.db, trash.id);
      // Purged or restored since it was looked up: answer as a lookup now would.
      if (!task) throw new ApiError("trash_object_not_found");
      context.services.notifyWork?.();
      return { body: { task: present.task(task) } };
    },
  },
  {
    name: "restore_trash_object",
    method: "POST",
    path: "/trash_objects/trash_object/restore",
    scopes: ["trash_objects:restore"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const trash = await findTrashObject(context);
      try {
        const restored = await restoreTrashObject(context.services.db, trash.id);
        if (!restored) throw new ApiError("trash_object_not_found");
        return { body: { trash_object: present.trashObject(restored) } };
      } catch (error) {
        if (error instanceof TrashRefused && error.reason === "purging")
          throw new ApiError("task_queueing_error", { details: error.message });
        if (error instanceof TrashRefused)
          throw new ApiError("validation_error", { errors: [error.message] });
        throw error;
      }
    },
  },
  {
    name: "purge_all_trash_objects",
    method: "POST",
    path: "/organizations/organization/trash_objects/purge_all",
    scopes: ["trash_objects:purge"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const org = await resolveOrganization(context);
      const task = await purgeAllTrash(context.services.db, org.id);
      context.services.notifyWork?.();
      return { body: { task: present.task(task) } };
    },
  },
];
