import type { Kysely } from "kysely";
import type { HostCleanupOptions, HostCleanupReport } from "../hosts/driver.js";
import { createDriver } from "../hosts/registry.js";
import { installationId, type Database, type Row } from "../store/index.js";

/** What the records say of one host's VMs. */
export interface HostRecords {
  vms: Pick<Row<"virtual_machines">, "id" | "state" | "deleted_at" | "purged_at">[];
  /** VMs with a build pending or running. */
  building: ReadonlySet<string>;
  /** Objects with an action pending or running. */
  busy: ReadonlySet<string>;
}

export async function readHostRecords(db: Kysely<Database>, hostId: string): Promise<HostRecords> {
  const [vms, builds, tasks] = await Promise.all([
    db
      .selectFrom("virtual_machines")
      .select(["id", "state", "deleted_at", "purged_at"])
      .where("host_id", "=", hostId)
      .execute(),
    db
      .selectFrom("builds")
      .select("virtual_machine_id")
      .where("state", "in", ["pending", "building"])
      .execute(),
    db
      .selectFrom("tasks")
      .select("object_id")
      .where("status", "in", ["pending", "running"])
      .where("action", "is not", null)
      .execute(),
  ]);
  return {
    vms,
    building: new Set(builds.flatMap((b) => (b.virtual_machine_id ? [b.virtual_machine_id] : []))),
    busy: new Set(tasks.flatMap((t) => (t.object_id ? [t.object_id] : []))),
  };
}

/**
 * The VMs whose host state must stay: every VM not purged, except a failed one (its
 * leftovers go), and anything with work in hand. A VM in the trash stays, powered off,
 * until its purge.
 */
export function liveOnHost(records: HostRecords): Set<string> {
  const live = new Set(records.busy);
  for (const vm of records.vms) {
    if (vm.purged_at !== null) continue;
    if (vm.deleted_at !== null || records.building.has(vm.id) || vm.state !== "failed") live.add(vm.id);
  }
  return live;
}

export interface HostCleanupResult extends HostCleanupReport {
  host: string;
  installation: string;
}

/**
 * `trebuchet admin host cleanup`, and the demo when it stops: removes from this machine
 * what the named catalog host (or the catalog's only host) holds that no live VM of this
 * installation owns, through the host's own driver.
 */
export async function cleanUpHost(options: {
  db: Kysely<Database>;
  dataDir: string;
  hostName?: string;
  cleanup?: HostCleanupOptions;
}): Promise<HostCleanupResult> {
  const query = options.db.selectFrom("hosts").selectAll();
  const hosts = await (options.hostName ? query.where("name", "=", options.hostName) : query).execute();
  const host = hosts.length === 1 ? hosts[0] : undefined;
  if (!host)
    throw new HostCleanupError(
      options.hostName
        ? `no host "${options.hostName}" in the catalog`
        : `the catalog has ${hosts.length} hosts: name the one on this machine with --host`,
    );
  const installation = await installationId(options.db);
  const driver = createDriver(host.driver, {
    hostName: host.name,
    namespace: host.namespace,
    dataDir: options.dataDir,
    installation,
    log: () => undefined,
  });
  const live = liveOnHost(await readHostRecords(options.db, host.id));
  return { host: host.name, installation, ...(await driver.cleanup(live, options.cleanup)) };
}

/** A cleanup the operator asked for that cannot be done as asked. */
export class HostCleanupError extends Error {}
