import { sql, type Kysely } from "kysely";

/**
 * What a VM's whole life needs:
 * - `virtual_machines.purged_at`: a deleted VM sits in the trash with its disks and
 *   addresses (`deleted_at` set) until it is purged (`purged_at` set: gone for good);
 * - `ip_addresses.network_interface_id`: the interface an address is allocated on, and
 *   `release_with_vm`: it was made for its VM, and returns to the pool when the VM is
 *   purged (an address the organization had before stays with it);
 * - `network_interfaces.state`: attached to its VM or detached;
 * - `tasks.parent_id`: a task made of other tasks (purging a whole trash).
 * VMs deleted before this migration were destroyed by their deletion task: they count
 * as purged, and their trash entries go.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("virtual_machines").addColumn("purged_at", "bigint").execute();
  // No foreign key: SQLite could not drop the column again; the lifecycle keeps it true.
  await db.schema.alterTable("ip_addresses").addColumn("network_interface_id", "text").execute();
  await db.schema
    .alterTable("ip_addresses")
    .addColumn("release_with_vm", "integer", (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema
    .alterTable("network_interfaces")
    .addColumn("state", "text", (c) => c.notNull().defaultTo("attached"))
    .execute();
  await db.schema.alterTable("tasks").addColumn("parent_id", "text").execute();
  await db.schema.createIndex("tasks_parent_id").on("tasks").column("parent_id").execute();
  await db.schema
    .createIndex("ip_addresses_network_interface_id")
    .on("ip_addresses")
    .column("network_interface_id")
    .execute();

  await sql`update virtual_machines set purged_at = deleted_at
    where deleted_at is not null and (
      not exists (select 1 from trash_objects t where t.object_id = virtual_machines.id)
      or exists (select 1 from tasks k where k.object_id = virtual_machines.id
                 and k.action = 'delete' and k.status = 'completed'))`.execute(db);
  await sql`delete from trash_objects where object_id in
    (select id from virtual_machines where purged_at is not null)`.execute(db);
  // Addresses sit on the VM's first interface in their network (the build's choice).
  await sql`update ip_addresses set network_interface_id = (
      select n.id from network_interfaces n
      where n.virtual_machine_id = ip_addresses.allocation_id and n.network_id = ip_addresses.network_id
      order by n.position limit 1)
    where allocation_type = 'VirtualMachine'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex("ip_addresses_network_interface_id").execute();
  await db.schema.dropIndex("tasks_parent_id").execute();
  await db.schema.alterTable("tasks").dropColumn("parent_id").execute();
  await db.schema.alterTable("network_interfaces").dropColumn("state").execute();
  await db.schema.alterTable("ip_addresses").dropColumn("release_with_vm").execute();
  await db.schema.alterTable("ip_addresses").dropColumn("network_interface_id").execute();
  await db.schema.alterTable("virtual_machines").dropColumn("purged_at").execute();
}
