import type { Kysely, Transaction } from "kysely";
import {
  insertRow,
  lockedForUpdate,
  newId,
  retryingConflicts,
  type Database,
  type Row,
} from "../store/index.js";
import { freshMacAddress } from "./accept.js";
import { reconfigureTask } from "./address-changes.js";
import { ensureWithinLimits, lockOrganization, type LimitCheck } from "./organization-limits.js";
import { now } from "./leases.js";
import { vmTakingChanges } from "./tasks.js";

/**
 * A VM's network interfaces after its build: added (detached), attached (its tap joins
 * the network's bridge at once; the guest sees the new device from its next start, as
 * microvm has no hot-plug), detached (the tap leaves the bridge at once: the guest's
 * link is cut), deleted (only while detached; its addresses stay the organization's),
 * and held to a speed profile (tc on the tap, at once). Every change to the machine is
 * the VM's `reconfigure` task.
 */

export class InterfaceRefused extends Error {
  constructor(
    readonly reason:
      "already_attached" | "already_detached" | "attached" | "same_speed_profile" | "vm_not_ready" | "gone",
    message: string,
  ) {
    super(message);
  }
}

type Interface = Row<"network_interfaces">;

export interface NewInterface {
  /** Exactly one of the two. */
  networkId: string | null;
  virtualNetworkId: string | null;
  speedProfileId: string;
}

async function lockInterface(trx: Transaction<Database>, nicId: string): Promise<Interface> {
  const nic = await lockedForUpdate(
    trx,
    trx.selectFrom("network_interfaces").selectAll().where("id", "=", nicId),
  ).executeTakeFirst();
  if (!nic) throw new InterfaceRefused("gone", "the network interface is gone");
  return nic;
}

async function changingVm(trx: Transaction<Database>, vmId: string) {
  const vm = await vmTakingChanges(trx, vmId);
  if (!vm)
    throw new InterfaceRefused(
      "vm_not_ready",
      "the virtual machine takes no changes now (being built, failed or in the trash)",
    );
  return vm;
}

/** Adds a detached interface to a VM, on a network or a virtual network. */
export function addInterface(db: Kysely<Database>, vmId: string, spec: NewInterface): Promise<Interface> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      const vm = await lockedForUpdate(
        trx,
        trx.selectFrom("virtual_machines").select(["id", "deleted_at"]).where("id", "=", vmId),
      ).executeTakeFirst();
      if (!vm || vm.deleted_at !== null)
        throw new InterfaceRefused("vm_not_ready", "the virtual machine is in the trash");
      const last = await trx
        .selectFrom("network_interfaces")
        .select((eb) => eb.fn.max("position").as("position"))
        .where("virtual_machine_id", "=", vmId)
        .executeTakeFirst();
      const nic: Interface = {
        id: newId("networkInterface"),
        virtual_machine_id: vmId,
        position: Number(last?.position ?? 0) + 1,
        network_id: spec.networkId,
        virtual_network_id: spec.virtualNetworkId,
        speed_profile_id: spec.speedProfileId,
        mac_address: await freshMacAddress(trx),
        state: "detached",
        created_at: now(),
      };
      await insertRow(trx, "network_interfaces", nic);
      return nic;
    }),
  );
}

/** Attaches an interface to its VM's machine, or detaches it; answers the VM's reconfiguration. */
export function setInterfaceAttached(
  db: Kysely<Database>,
  nicId: string,
  attached: boolean,
): Promise<{ nic: Interface; task: Row<"tasks"> }> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      const nic = await lockInterface(trx, nicId);
      const state = attached ? ("attached" as const) : ("detached" as const);
      if (nic.state === state)
        throw new InterfaceRefused(
          attached ? "already_attached" : "already_detached",
          `the network interface is already ${state}`,
        );
      await changingVm(trx, nic.virtual_machine_id);
      await trx.updateTable("network_interfaces").set({ state }).where("id", "=", nic.id).execute();
      const task = await reconfigureTask(trx, nic.virtual_machine_id);
      return { nic: { ...nic, state }, task };
    }),
  );
}

/**
 * Deletes a detached interface; the addresses on it stay the organization's, unallocated
 * (and count against its limit of those).
 */
export function deleteInterface(db: Kysely<Database>, nicId: string, limits: LimitCheck): Promise<Interface> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      await lockOrganization(trx, limits.organizationId);
      const nic = await lockInterface(trx, nicId);
      if (nic.state === "attached")
        throw new InterfaceRefused("attached", "the network interface is attached: detach it first");
      const held = await trx
        .selectFrom("ip_addresses")
        .select((eb) => eb.fn.countAll().as("count"))
        .where("network_interface_id", "=", nic.id)
        .executeTakeFirstOrThrow();
      await ensureWithinLimits(trx, limits, { unallocated_ip_addresses: Number(held.count) });
      await trx
        .updateTable("ip_addresses")
        .set({
          allocation_type: null,
          allocation_id: null,
          network_interface_id: null,
          reverse_dns: null,
          release_with_vm: 0,
        })
        .where("network_interface_id", "=", nic.id)
        .execute();
      await trx.deleteFrom("network_interfaces").where("id", "=", nic.id).execute();
      return nic;
    }),
  );
}

/** Holds an interface to another speed profile; answers the VM's reconfiguration (tc on its tap). */
export function changeSpeedProfile(
  db: Kysely<Database>,
  nicId: string,
  speedProfileId: string,
): Promise<Row<"tasks">> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      const nic = await lockInterface(trx, nicId);
      if (nic.speed_profile_id === speedProfileId)
        throw new InterfaceRefused("same_speed_profile", "the interface already has this speed profile");
      await changingVm(trx, nic.virtual_machine_id);
      await trx
        .updateTable("network_interfaces")
        .set({ speed_profile_id: speedProfileId })
        .where("id", "=", nic.id)
        .execute();
      return reconfigureTask(trx, nic.virtual_machine_id);
    }),
  );
}
