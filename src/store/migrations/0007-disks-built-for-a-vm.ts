import type { Kysely } from "kysely";

/**
 * A disk created with `virtual_machine_disk` is built on its VM's host and joins the VM
 * once built: the VM it is for, and whether it is then attached or only assigned. A
 * standalone disk's resize remembers the size it had, to go back to if the host fails it.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("disks").addColumn("size_before_resize_in_gb", "integer").execute();
  await db.schema.alterTable("disks").addColumn("build_for_vm_id", "text").execute();
  await db.schema
    .alterTable("disks")
    .addColumn("attach_when_built", "integer", (column) => column.notNull().defaultTo(0))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("disks").dropColumn("attach_when_built").execute();
  await db.schema.alterTable("disks").dropColumn("build_for_vm_id").execute();
  await db.schema.alterTable("disks").dropColumn("size_before_resize_in_gb").execute();
}
