import type { Kysely } from "kysely";
import {
  insertRow,
  lockedForUpdate,
  newId,
  retryingConflicts,
  type Database,
  type Row,
} from "../store/index.js";
import { queueReconfigure, reconfigureTask } from "./address-changes.js";
import { isUniqueViolation } from "./addresses.js";
import { now } from "./leases.js";
import { shortOfRoom } from "./placement.js";
import { ensureWithinLimits, lockOrganization, type LimitCheck } from "./organization-limits.js";
import { lockActionableVm } from "./tasks.js";

/** What a VM's owner may change of it without a host knowing (bar its hostname). */
export interface VirtualMachineChanges {
  name?: string;
  hostname?: string;
  description?: string | null;
  /** A group of the VM's organization, or null for none. */
  groupId?: string | null;
  /** The VM's tags, by name, in this order; tags are created on first use. */
  tagNames?: string[];
  annotations?: { key: string; value: string }[];
}

export class ChangeRefused extends Error {}

/**
 * Applies the changes in one transaction. A new hostname must not name another live VM
 * of the organization; it changes the VM's FQDN and the reverse DNS its addresses had
 * from it, and reaches the guest at its next start (a `reconfigure` task rewrites the seed).
 */
export function updateVirtualMachine(
  db: Kysely<Database>,
  vmId: string,
  changes: VirtualMachineChanges,
): Promise<Row<"virtual_machines">> {
  return retryingConflicts(async () => {
    try {
      return await db.transaction().execute(async (trx) => {
        const vm = await lockedForUpdate(
          trx,
          trx.selectFrom("virtual_machines").selectAll().where("id", "=", vmId),
        ).executeTakeFirstOrThrow();
        const set: Partial<Row<"virtual_machines">> = {};
        if (changes.name !== undefined) set.name = changes.name;
        if (changes.description !== undefined) set.description = changes.description;
        if (changes.groupId !== undefined) set.group_id = changes.groupId;
        const hostname = changes.hostname?.toLowerCase();
        if (hostname !== undefined && hostname !== vm.hostname) {
          const org = await trx
            .selectFrom("organizations")
            .select("infrastructure_domain")
            .where("id", "=", vm.organization_id)
            .executeTakeFirstOrThrow();
          const twin = await trx
            .selectFrom("virtual_machines")
            .select("id")
            .where("organization_id", "=", vm.organization_id)
            .where("hostname", "=", hostname)
            .where("deleted_at", "is", null)
            .executeTakeFirst();
          if (twin) throw new ChangeRefused(`hostname ${hostname} is already used by ${twin.id}`);
          set.hostname = hostname;
          set.fqdn = `${hostname}.${org.infrastructure_domain}`;
          await trx
            .updateTable("ip_addresses")
            .set({ reverse_dns: set.fqdn })
            .where("allocation_type", "=", "VirtualMachine")
            .where("allocation_id", "=", vm.id)
            .where("reverse_dns", "=", vm.fqdn)
            .execute();
        }
        if (Object.keys(set).length > 0)
          await trx.updateTable("virtual_machines").set(set).where("id", "=", vm.id).execute();
        if (changes.tagNames !== undefined) await setTags(trx, vm, changes.tagNames);
        if (changes.annotations !== undefined) {
          await trx
            .deleteFrom("annotations")
            .where("object_type", "=", "VirtualMachine")
            .where("object_id", "=", vm.id)
            .execute();
          for (const [index, annotation] of changes.annotations.entries())
            await insertRow(trx, "annotations", {
              object_type: "VirtualMachine",
              object_id: vm.id,
              position: index + 1,
              key: annotation.key,
              value: annotation.value,
            });
        }
        if (set.hostname !== undefined) await queueReconfigure(trx, vm.id);
        return { ...vm, ...set };
      });
    } catch (error) {
      // Another request took the hostname (the live-hostname index) or made one of the tags meanwhile.
      if (isUniqueViolation(error))
        throw new ChangeRefused(
          changes.hostname !== undefined
            ? `hostname ${changes.hostname} is already used`
            : "another request changed this organization's tags at the same time; try again",
        );
      throw error;
    }
  });
}

async function setTags(trx: Kysely<Database>, vm: Row<"virtual_machines">, names: string[]): Promise<void> {
  await trx.deleteFrom("virtual_machine_tags").where("virtual_machine_id", "=", vm.id).execute();
  for (const [index, name] of [...new Set(names)].entries()) {
    let tag = await trx
      .selectFrom("tags")
      .select("id")
      .where("organization_id", "=", vm.organization_id)
      .where("name", "=", name)
      .executeTakeFirst();
    if (!tag) {
      tag = { id: newId("tag") };
      await insertRow(trx, "tags", {
        id: tag.id,
        organization_id: vm.organization_id,
        name,
        color: "light_blue",
        created_at: now(),
      });
    }
    await insertRow(trx, "virtual_machine_tags", {
      virtual_machine_id: vm.id,
      tag_id: tag.id,
      position: index + 1,
    });
  }
}

/** What a VM runs on: a package's, or flexible resources (no package). */
export interface ResourceChange {
  packageId: string | null;
  memoryInGb: number;
  cpuCores: number;
  /** The package's storage: the system disk grows to it if it is smaller. */
  storageInGb?: number;
}

/**
 * Changes a VM's memory and CPUs (and package), in one transaction, if its host has the
 * memory: they apply from the VM's next start (a `reconfigure` task rewrites its
 * definition at once, and grows its system disk to the package's storage, live).
 * Answers that task.
 */
export function changeResources(
  db: Kysely<Database>,
  vmId: string,
  change: ResourceChange,
  limits: LimitCheck,
): Promise<Row<"tasks">> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      await lockOrganization(trx, limits.organizationId);
      const vm = await lockActionableVm(trx, vmId);
      const system = await trx
        .selectFrom("disks")
        .select("size_in_gb")
        .where("virtual_machine_id", "=", vm.id)
        .where("position", "=", 1)
        .where("path", "is", null)
        .executeTakeFirst();
      const growth = Math.max(0, (change.storageInGb ?? 0) - (system?.size_in_gb ?? Infinity));
      await ensureWithinLimits(trx, limits, {
        virtual_machine_memory: change.memoryInGb - vm.memory_in_gb,
        disk_space: growth,
      });
      const short = await shortOfRoom(trx, vm.host_id, { memory: change.memoryInGb, disk: growth }, vm.id);
      if (short) throw new ChangeRefused(short);
      await trx
        .updateTable("virtual_machines")
        .set({ package_id: change.packageId, memory_in_gb: change.memoryInGb, cpu_cores: change.cpuCores })
        .where("id", "=", vm.id)
        .execute();
      if (change.storageInGb !== undefined)
        await trx
          .updateTable("disks")
          .set({ size_in_gb: change.storageInGb })
          .where("virtual_machine_id", "=", vm.id)
          .where("position", "=", 1)
          .where("path", "is", null)
          .where("size_in_gb", "<", change.storageInGb)
          .execute();
      return reconfigureTask(trx, vm.id);
    }),
  );
}
