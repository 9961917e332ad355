import type { Kysely } from "kysely";

/**
 * Backup policies as the API edits them: the minute of their schedule (the spec gives
 * none; the API does) and when a policy is due to go (`DELETE .../schedule`).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("disk_backup_policies").addColumn("schedule_minute", "integer").execute();
  await db.schema.alterTable("disk_backup_policies").addColumn("delete_at", "bigint").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("disk_backup_policies").dropColumn("delete_at").execute();
  await db.schema.alterTable("disk_backup_policies").dropColumn("schedule_minute").execute();
}
