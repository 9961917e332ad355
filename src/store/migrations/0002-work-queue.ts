import type { Kysely } from "kysely";

// Power actions and deletions are tasks that workers claim like builds: with a lease.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("tasks").addColumn("action", "text").execute();
  await db.schema.alterTable("tasks").addColumn("lease_owner", "text").execute();
  await db.schema.alterTable("tasks").addColumn("lease_expires_at", "bigint").execute();
  await db.schema.createIndex("tasks_status_action").on("tasks").columns(["status", "action"]).execute();
  await db.schema.createIndex("builds_lease_owner").on("builds").column("lease_owner").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex("builds_lease_owner").execute();
  await db.schema.dropIndex("tasks_status_action").execute();
  for (const column of ["lease_expires_at", "lease_owner", "action"]) {
    await db.schema.alterTable("tasks").dropColumn(column).execute();
  }
}
