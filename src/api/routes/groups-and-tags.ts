import {
  createGroup,
  createTag,
  deleteGroup,
  deleteTag,
  GroupInUse,
  NameTaken,
  updateGroup,
  updateTag,
} from "../../lifecycle/index.js";
import { ApiError, missingArgument } from "../../errors.js";
import type { Row } from "../../store/index.js";
import {
  booleanArgument,
  enumArgument,
  objectArgument,
  pagination,
  requireLookup,
  stringArgument,
  type ArgumentBag,
} from "../arguments.js";
import type { Operation, OperationContext } from "../operation.js";
import { pageOf } from "../paging.js";
import * as present from "../presenters.js";
import { checkOwnership, resolveOrganization } from "../resolve.js";

/** An organization's VM groups and tags. */

const TAG_COLORS = [
  "red",
  "pink",
  "purple",
  "dark_blue",
  "green",
  "teal",
  "aqua",
  "light_blue",
  "yellow",
  "orange",
  "orange_red",
  "brown",
  "black",
  "dark_gray",
  "light_gray",
  "light_brown",
  "pastel_red",
  "pastel_pink",
  "pastel_purple",
  "pastel_dark_blue",
  "pastel_green",
  "pastel_teal",
  "pastel_aqua",
  "pastel_light_blue",
  "pastel_yellow",
  "pastel_orange",
  "pastel_orange_red",
  "pastel_brown",
  "pastel_black",
  "pastel_dark_gray",
  "pastel_light_gray",
  "pastel_light_brown",
] as const;

function propertiesOf(context: OperationContext): ArgumentBag {
  const properties = objectArgument(context.args, "properties");
  if (!properties) throw missingArgument(["properties"]);
  return properties;
}

function nameOf(properties: ArgumentBag, required: boolean): string | undefined {
  const name = stringArgument(properties, "name", { maxLength: 255 });
  if (name === undefined && !required) return undefined;
  if (!name?.trim()) throw new ApiError("validation_error", { errors: ["Name can't be blank"] });
  return name.trim();
}

async function named<T>(change: () => Promise<T>): Promise<T> {
  try {
    return await change();
  } catch (error) {
    if (error instanceof NameTaken) throw new ApiError("validation_error", { errors: [error.message] });
    throw error;
  }
}

async function findGroup(context: OperationContext): Promise<Row<"virtual_machine_groups">> {
  const lookup = requireLookup(
    context.args,
    "virtual_machine_group",
    ["id"] as const,
    context.segments.virtual_machine_group,
  );
  const group = await context.services.db
    .selectFrom("virtual_machine_groups")
    .selectAll()
    .where("id", "=", lookup.value)
    .executeTakeFirst();
  if (!group) throw new ApiError("virtual_machine_group_not_found");
  await checkOwnership(context, group.organization_id, "virtual_machine_group_not_found");
  return group;
}

async function findTag(context: OperationContext): Promise<Row<"tags">> {
  const lookup = requireLookup(context.args, "tag", ["id"] as const, context.segments.tag);
  const tag = await context.services.db
    .selectFrom("tags")
    .selectAll()
    .where("id", "=", lookup.value)
    .executeTakeFirst();
  if (!tag) throw new ApiError("tag_not_found");
  await checkOwnership(context, tag.organization_id, "tag_not_found");
  return tag;
}

const groupById = (context: OperationContext, id: string) =>
  context.services.db
    .selectFrom("virtual_machine_groups")
    .selectAll()
    .where("id", "=", id)
    .executeTakeFirstOrThrow();
const tagById = (context: OperationContext, id: string) =>
  context.services.db.selectFrom("tags").selectAll().where("id", "=", id).executeTakeFirstOrThrow();

const GROUP_SCOPES = ["virtual_machine_groups"];
const TAG_SCOPES = ["tags"];

export const groupAndTagOperations: Operation[] = [
  {
    name: "list_virtual_machine_groups",
    method: "GET",
    path: "/organizations/organization/virtual_machine_groups",
    scopes: ["virtual_machine_groups", "virtual_machine_groups:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const org = await resolveOrganization(context);
      const rows = await context.services.db
        .selectFrom("virtual_machine_groups")
        .selectAll()
        .where("organization_id", "=", org.id)
        .orderBy("name")
        .execute();
      return { body: { virtual_machine_groups: rows.map(present.virtualMachineGroup) } };
    },
  },
  {
    name: "create_virtual_machine_group",
    method: "POST",
    path: "/organizations/organization/virtual_machine_groups",
    scopes: GROUP_SCOPES,
    access: "write",
    bucket: "write",
    async handle(context) {
      const org = await resolveOrganization(context);
      const properties = propertiesOf(context);
      const group = await named(() =>
        createGroup(context.services.db, org.id, {
          name: nameOf(properties, true)!,
          segregate: booleanArgument(properties, "segregate") ?? true,
          autoSegregate: booleanArgument(properties, "auto_segregate") ?? false,
        }),
      );
      return { body: { virtual_machine_group: present.virtualMachineGroup(group) } };
    },
  },
  {
    name: "get_virtual_machine_group",
    method: "GET",
    path: "/virtual_machine_groups/virtual_machine_group",
    scopes: ["virtual_machine_groups", "virtual_machine_groups:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      return { body: { virtual_machine_group: present.virtualMachineGroup(await findGroup(context)) } };
    },
  },
  {
    name: "update_virtual_machine_group",
    method: "PATCH",
    path: "/virtual_machine_groups/virtual_machine_group",
    scopes: GROUP_SCOPES,
    access: "write",
    bucket: "write",
    async handle(context) {
      const group = await findGroup(context);
      const properties = propertiesOf(context);
      const name = nameOf(properties, false);
      const segregate = booleanArgument(properties, "segregate");
      const autoSegregate = booleanArgument(properties, "auto_segregate");
      await named(() =>
        updateGroup(context.services.db, group.id, {
          ...(name !== undefined ? { name } : {}),
          ...(segregate !== undefined ? { segregate } : {}),
          ...(autoSegregate !== undefined ? { autoSegregate } : {}),
        }),
      );
      return {
        body: { virtual_machine_group: present.virtualMachineGroup(await groupById(context, group.id)) },
      };
    },
  },
  {
    name: "delete_virtual_machine_group",
    method: "DELETE",
    path: "/virtual_machine_groups/virtual_machine_group",
    scopes: GROUP_SCOPES,
    access: "write",
    bucket: "write",
    async handle(context) {
      const group = await findGroup(context);
      try {
        await deleteGroup(context.services.db, group.id);
      } catch (error) {
        if (error instanceof GroupInUse)
          throw new ApiError("deletion_restricted", { details: error.message });
        throw error;
      }
      return { body: { virtual_machine_group: present.virtualMachineGroup(group) } };
    },
  },
  {
    name: "list_tags",
    method: "GET",
    path: "/organizations/organization/tags",
    scopes: ["tags", "tags:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const org = await resolveOrganization(context);
      const base = context.services.db.selectFrom("tags").where("organization_id", "=", org.id);
      const { pagination: p, items } = await pageOf(pagination(context.args), base, (q) =>
        q.selectAll().orderBy("name"),
      );
      return {
        body: { pagination: p, tags: items.map((t) => ({ id: t.id, name: t.name, color: t.color })) },
      };
    },
  },
  {
    name: "create_tag",
    method: "POST",
    path: "/organizations/organization/tags",
    scopes: TAG_SCOPES,
    access: "write",
    bucket: "write",
    async handle(context) {
      const org = await resolveOrganization(context);
      const properties = propertiesOf(context);
      const tag = await named(() =>
        createTag(context.services.db, org.id, {
          name: nameOf(properties, true)!,
          color: enumArgument(properties, "color", TAG_COLORS) ?? "light_blue",
        }),
      );
      return { body: { tag: present.tag(tag) } };
    },
  },
  {
    name: "get_tag",
    method: "GET",
    path: "/tags/tag",
    scopes: ["tags", "tags:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      return { body: { tag: present.tag(await findTag(context)) } };
    },
  },
  {
    name: "update_tag",
    method: "PATCH",
    path: "/tags/tag",
    scopes: TAG_SCOPES,
    access: "write",
    bucket: "write",
    async handle(context) {
      const tag = await findTag(context);
      const properties = propertiesOf(context);
      const name = nameOf(properties, false);
      const color = enumArgument(properties, "color", TAG_COLORS);
      await named(() =>
        updateTag(context.services.db, tag.id, {
          ...(name !== undefined ? { name } : {}),
          ...(color !== undefined ? { color } : {}),
        }),
      );
      return { body: { tag: present.tag(await tagById(context, tag.id)) } };
    },
  },
  {
    name: "delete_tag",
    method: "DELETE",
    path: "/tags/tag",
    scopes: TAG_SCOPES,
    access: "write",
    bucket: "write",
    async handle(context) {
      const tag = await findTag(context);
      await deleteTag(context.services.db, tag.id);
      return { body: { tag: present.tag(tag) } };
    },
  },
];
