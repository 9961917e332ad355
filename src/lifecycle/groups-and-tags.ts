import type { Kysely } from "kysely";
import { insertRow, newId, type Database, type Row } from "../store/index.js";
import { isUniqueViolation } from "./addresses.js";
import { now } from "./leases.js";

/** An organization's VM groups and tags: names its VMs carry, with no host behind them. */

export class NameTaken extends Error {}
export class GroupInUse extends Error {}

async function uniquely<T>(what: string, name: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    if (isUniqueViolation(error)) throw new NameTaken(`a ${what} named ${name} already exists`);
    throw error;
  }
}

export function createGroup(
  db: Kysely<Database>,
  organizationId: string,
  fields: { name: string; segregate: boolean; autoSegregate: boolean },
): Promise<Row<"virtual_machine_groups">> {
  const group: Row<"virtual_machine_groups"> = {
    id: newId("virtualMachineGroup"),
    organization_id: organizationId,
    name: fields.name,
    segregate: fields.segregate ? 1 : 0,
    auto_segregate: fields.autoSegregate ? 1 : 0,
    created_at: now(),
  };
  return uniquely("group", fields.name, async () => {
    await insertRow(db, "virtual_machine_groups", group);
    return group;
  });
}

export function updateGroup(
  db: Kysely<Database>,
  groupId: string,
  fields: { name?: string; segregate?: boolean; autoSegregate?: boolean },
): Promise<void> {
  const set = {
    ...(fields.name !== undefined ? { name: fields.name } : {}),
    ...(fields.segregate !== undefined ? { segregate: fields.segregate ? (1 as const) : (0 as const) } : {}),
    ...(fields.autoSegregate !== undefined
      ? { auto_segregate: fields.autoSegregate ? (1 as const) : (0 as const) }
      : {}),
  };
  if (Object.keys(set).length === 0) return Promise.resolve();
  return uniquely("group", fields.name ?? "", async () => {
    await db.updateTable("virtual_machine_groups").set(set).where("id", "=", groupId).execute();
  });
}

/** A group with VMs in it (in the trash too: they may come back) is not deleted. */
export function deleteGroup(db: Kysely<Database>, groupId: string): Promise<void> {
  return db.transaction().execute(async (trx) => {
    const member = await trx
      .selectFrom("virtual_machines")
      .select("id")
      .where("group_id", "=", groupId)
      .where("purged_at", "is", null)
      .executeTakeFirst();
    if (member) throw new GroupInUse(`virtual machine ${member.id} is in this group`);
    await trx.deleteFrom("virtual_machine_groups").where("id", "=", groupId).execute();
  });
}

export function createTag(
  db: Kysely<Database>,
  organizationId: string,
  fields: { name: string; color: string },
): Promise<Row<"tags">> {
  const tag: Row<"tags"> = {
    id: newId("tag"),
    organization_id: organizationId,
    name: fields.name,
    color: fields.color,
    created_at: now(),
  };
  return uniquely("tag", fields.name, async () => {
    await insertRow(db, "tags", tag);
    return tag;
  });
}

export function updateTag(
  db: Kysely<Database>,
  tagId: string,
  fields: { name?: string; color?: string },
): Promise<void> {
  const set = {
    ...(fields.name !== undefined ? { name: fields.name } : {}),
    ...(fields.color !== undefined ? { color: fields.color } : {}),
  };
  if (Object.keys(set).length === 0) return Promise.resolve();
  return uniquely("tag", fields.name ?? "", async () => {
    await db.updateTable("tags").set(set).where("id", "=", tagId).execute();
  });
}

/** A tag goes from every VM that had it, then itself. */
export function deleteTag(db: Kysely<Database>, tagId: string): Promise<void> {
  return db.transaction().execute(async (trx) => {
    await trx.deleteFrom("virtual_machine_tags").where("tag_id", "=", tagId).execute();
    await trx.deleteFrom("tags").where("id", "=", tagId).execute();
  });
}
