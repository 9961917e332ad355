import { sql, type Kysely } from "kysely";

/**
 * The lifecycle layer's needs:
 * - `tasks.queue_position`: a VM's actions run one at a time, in the order they were
 *   accepted; the position is given under a lock on the VM's row, one per VM.
 * - idempotency keys remember what was done (`outcome_json`, a lifecycle record), not
 *   an HTTP response; keys recorded in the old form are dropped (they live 24 hours).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("tasks").addColumn("queue_position", "bigint").execute();
  // Actions already queued keep their order: by creation, per VM.
  await sql`update tasks set queue_position = (
      select count(*) from tasks earlier
      where earlier.object_id = tasks.object_id and earlier.action is not null
        and (earlier.created_at < tasks.created_at or (earlier.created_at = tasks.created_at and earlier.id <= tasks.id)))
    where action is not null`.execute(db);
  await db.schema
    .createIndex("tasks_object_queue")
    .on("tasks")
    .columns(["object_id", "queue_position"])
    .unique()
    // Only actions queue: build tasks (most rows) pay nothing for it.
    .where(sql.ref("queue_position"), "is not", null)
    .execute();
  await sql`delete from idempotency_keys`.execute(db);
  await db.schema.alterTable("idempotency_keys").dropColumn("response_status").execute();
  await db.schema.alterTable("idempotency_keys").renameColumn("response_body", "outcome_json").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`delete from idempotency_keys`.execute(db);
  await db.schema.alterTable("idempotency_keys").renameColumn("outcome_json", "response_body").execute();
  await db.schema
    .alterTable("idempotency_keys")
    .addColumn("response_status", "integer", (c) => c.notNull().defaultTo(201))
    .execute();
  await db.schema.dropIndex("tasks_object_queue").execute();
  await db.schema.alterTable("tasks").dropColumn("queue_position").execute();
}
