import type { Kysely } from "kysely";
import { lockedForUpdate, type Database, type Row } from "../store/index.js";

/**
 * First-fit placement: a host has room for a VM when the memory and disk of its live
 * VMs plus the new one's fit its capacity. Read inside the claim's transaction, so
 * concurrent claims count each other's VMs.
 */

export interface Needs {
  vmId: string;
  memory: number;
  disk: number;
}

export async function needsOf(db: Kysely<Database>, buildId: string): Promise<Needs> {
  const row = await db
    .selectFrom("builds")
    .innerJoin("virtual_machines", "virtual_machines.id", "builds.virtual_machine_id")
    .select(["virtual_machines.id", "virtual_machines.memory_in_gb"])
    .where("builds.id", "=", buildId)
    .executeTakeFirstOrThrow();
  const disk = await db
    .selectFrom("disks")
    .select((eb) => eb.fn.sum<number>("size_in_gb").as("total"))
    .where("virtual_machine_id", "=", row.id)
    .where("shared", "=", 0)
    .executeTakeFirst();
  return { vmId: row.id, memory: row.memory_in_gb, disk: Number(disk?.total ?? 0) };
}

export async function usageOf(
  db: Kysely<Database>,
  hostId: string,
  exceptVm: string,
): Promise<{ memory: number; disk: number }> {
  const vms = await db
    .selectFrom("virtual_machines")
    .select((eb) => [eb.fn.sum<number>("memory_in_gb").as("memory")])
    .where("host_id", "=", hostId)
    .where("deleted_at", "is", null)
    .where("state", "!=", "failed")
    .where("id", "!=", exceptVm)
    .executeTakeFirst();
  // Disks stay on the host while their VM is in the trash, until it is purged.
  const disks = await db
    .selectFrom("disks")
    .innerJoin("virtual_machines", "virtual_machines.id", "disks.virtual_machine_id")
    .select((eb) => eb.fn.sum<number>("disks.size_in_gb").as("disk"))
    .where("virtual_machines.host_id", "=", hostId)
    .where("virtual_machines.purged_at", "is", null)
    .where("disks.state", "!=", "deleted")
    .where("disks.shared", "=", 0)
    .where("virtual_machines.id", "!=", exceptVm)
    .executeTakeFirst();
  const standalone = await standaloneDiskUsage(db, hostId);
  return { memory: Number(vms?.memory ?? 0), disk: Number(disks?.disk ?? 0) + standalone };
}

/** Disks made on the host that no VM has (yet). */
export async function standaloneDiskUsage(db: Kysely<Database>, hostId: string): Promise<number> {
  const row = await db
    .selectFrom("disks")
    .select((eb) => eb.fn.sum<number>("size_in_gb").as("disk"))
    .where("host_id", "=", hostId)
    .where("virtual_machine_id", "is", null)
    .where("shared", "=", 0)
    .where("state", "!=", "deleted")
    .executeTakeFirst();
  return Number(row?.disk ?? 0);
}

export async function hasRoom(db: Kysely<Database>, host: Row<"hosts">, needs: Needs): Promise<boolean> {
  const used = await usageOf(db, host.id, needs.vmId);
  return used.memory + needs.memory <= host.memory_in_gb && used.disk + needs.disk <= host.disk_in_gb;
}

/** Another active host of the data center with room, if any. */
export async function anotherHostHasRoom(
  db: Kysely<Database>,
  host: Row<"hosts">,
  needs: Needs,
): Promise<boolean> {
  const hosts = await db
    .selectFrom("hosts")
    .selectAll()
    .where("data_center_id", "=", host.data_center_id)
    .where("state", "=", "active")
    .where("id", "!=", host.id)
    .execute();
  for (const other of hosts) if (await hasRoom(db, other, needs)) return true;
  return false;
}

/** Why no host of the data center can take the VM, for the build's failure reason. */
export async function unplaceableReason(
  db: Kysely<Database>,
  host: Row<"hosts">,
  needs: Needs,
): Promise<string> {
  const used = await usageOf(db, host.id, needs.vmId);
  const dc = await db
    .selectFrom("data_centers")
    .select("permalink")
    .where("id", "=", host.data_center_id)
    .executeTakeFirstOrThrow();
  return `no hypervisor host in data center ${dc.permalink} has room for ${needs.memory} GB of memory and ${needs.disk} GB of disk (host ${host.name}: ${used.memory} of ${host.memory_in_gb} GB memory and ${used.disk} of ${host.disk_in_gb} GB disk in use)`;
}

/**
 * Does the VM's host have room for `more` memory and disk beyond what it holds now
 * (`exceptVm`'s memory left out, for a VM whose memory changes)? The host's row is
 * locked for the rest of the transaction, so concurrent changes on one host are
 * counted one after the other. Answers why not, or undefined when there is room.
 */
export async function shortOfRoom(
  trx: Kysely<Database>,
  hostId: string | null,
  more: { memory: number; disk: number },
  exceptVm = "",
): Promise<string | undefined> {
  if (hostId === null) return undefined;
  const host = await lockedForUpdate(
    trx,
    trx.selectFrom("hosts").selectAll().where("id", "=", hostId),
  ).executeTakeFirst();
  if (!host) return undefined;
  const used = await usageOf(trx, host.id, exceptVm);
  const vmDisks =
    exceptVm === ""
      ? 0
      : Number(
          (
            await trx
              .selectFrom("disks")
              .select((eb) => eb.fn.sum<number>("size_in_gb").as("disk"))
              .where("virtual_machine_id", "=", exceptVm)
              .where("shared", "=", 0)
              .where("state", "!=", "deleted")
              .executeTakeFirst()
          )?.disk ?? 0,
        );
  if (used.memory + more.memory > host.memory_in_gb)
    return `host ${host.name} has ${host.memory_in_gb - used.memory} GB of memory free; ${more.memory} GB asked`;
  if (used.disk + vmDisks + more.disk > host.disk_in_gb)
    return `host ${host.name} has ${host.disk_in_gb - used.disk - vmDisks} GB of disk free; ${more.disk} GB more asked`;
  return undefined;
}
