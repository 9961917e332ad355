import type { Kysely } from "kysely";

/**
 * An organization's own limits, set by `trebuchet admin org limits`. A missing row, or a
 * null column, means the configured default; -1 means unlimited (kept apart from null so
 * an operator can lift one organization's limit above the default).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("organization_limits")
    .addColumn("organization_id", "text", (c) =>
      c.primaryKey().references("organizations.id").onDelete("cascade"),
    )
    .addColumn("virtual_machines", "integer")
    .addColumn("virtual_machine_memory", "integer")
    .addColumn("disk_space", "integer")
    .addColumn("unallocated_ip_addresses", "integer")
    .addColumn("updated_at", "bigint", (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("organization_limits").execute();
}
