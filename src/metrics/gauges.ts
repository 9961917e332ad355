import { sql, type Kysely } from "kysely";
import { usageOf } from "../lifecycle/placement.js";
import { BUILD_STATES, VIRTUAL_MACHINE_STATES, type Database } from "../store/index.js";
import type { Metrics } from "./metrics.js";

/** Catalog sizes are GiB (a VM of 1 GB has 1024 MiB of memory). */
const GIB = 1024 ** 3;

/** What the database says when scraped: one read serves every gauge of a scrape. */
export interface RecordedFigures {
  builds: Map<string, number>;
  queue: { depth: number; oldestCreatedAt: number | null };
  vms: Map<string, number>;
  vmsInTrash: number;
  hosts: { name: string; memoryUsedGb: number; memoryGb: number; diskUsedGb: number; diskGb: number }[];
}

export async function readFigures(db: Kysely<Database>): Promise<RecordedFigures> {
  const builds = await db
    .selectFrom("builds")
    .select(["state", sql<number>`count(*)`.as("count")])
    .groupBy("state")
    .execute();
  const queue = await db
    .selectFrom("builds")
    .select([sql<number>`count(*)`.as("depth"), sql<number | null>`min(created_at)`.as("oldest")])
    .where("state", "=", "pending")
    .executeTakeFirstOrThrow();
  const vms = await db
    .selectFrom("virtual_machines")
    .select([
      "state",
      sql<number>`count(*)`.as("count"),
      sql<number>`sum(case when deleted_at is null then 0 else 1 end)`.as("trashed"),
    ])
    .where("purged_at", "is", null)
    .groupBy("state")
    .execute();
  const hosts = [];
  for (const host of await db.selectFrom("hosts").selectAll().orderBy("name").execute()) {
    const used = await usageOf(db, host.id, "");
    hosts.push({
      name: host.name,
      memoryUsedGb: used.memory,
      memoryGb: host.memory_in_gb,
      diskUsedGb: used.disk,
      diskGb: host.disk_in_gb,
    });
  }
  const trashed = vms.reduce((sum, row) => sum + Number(row.trashed), 0);
  return {
    builds: new Map(builds.map((row) => [row.state, Number(row.count)])),
    queue: {
      depth: Number(queue.depth),
      oldestCreatedAt: queue.oldest === null ? null : Number(queue.oldest),
    },
    vms: new Map(vms.map((row) => [row.state, Number(row.count) - Number(row.trashed)])),
    vmsInTrash: trashed,
    hosts,
  };
}

/** The QEMU (or other driver's) processes running on the in-process host agent's host. */
export type LocalProcesses = () => Promise<{ host: string; running: number } | undefined>;

/**
 * Registers the gauges read from the database (and the local host agent) at scrape time.
 * A database that does not answer leaves them out and says so in
 * trebuchet_metrics_database_up, so /metrics itself still answers.
 */
export function registerRecordedGauges(
  metrics: Metrics,
  db: Kysely<Database>,
  processes?: LocalProcesses,
  clock: () => number = () => Date.now() / 1000,
): void {
  // A scrape collects every gauge at once: they share the read in flight.
  let reading: Promise<RecordedFigures | undefined> | undefined;
  const figures = () =>
    (reading ??= readFigures(db)
      .catch(() => undefined)
      .finally(() => {
        reading = undefined;
      }));
  metrics.gauge(
    "trebuchet_metrics_database_up",
    "1 when the last scrape read the database, else 0",
    [],
    async (g) => {
      g.set((await figures()) ? 1 : 0);
    },
  );
  metrics.gauge("trebuchet_builds", "Builds by state", ["state"], async (g) => {
    const f = await figures();
    if (f) for (const state of BUILD_STATES) g.set({ state }, f.builds.get(state) ?? 0);
  });
  metrics.gauge(
    "trebuchet_build_queue_depth",
    "Builds accepted and not yet claimed by a host agent",
    [],
    async (g) => {
      const f = await figures();
      if (f) g.set(f.queue.depth);
    },
  );
  metrics.gauge(
    "trebuchet_build_queue_oldest_age_seconds",
    "How long the oldest pending build has waited (0 when none waits)",
    [],
    async (g) => {
      const f = await figures();
      if (f) g.set(f.queue.oldestCreatedAt === null ? 0 : Math.max(0, clock() - f.queue.oldestCreatedAt));
    },
  );
  metrics.gauge(
    "trebuchet_virtual_machines",
    "Virtual machines by state, those in the trash left out",
    ["state"],
    async (g) => {
      const f = await figures();
      if (f) for (const state of VIRTUAL_MACHINE_STATES) g.set({ state }, f.vms.get(state) ?? 0);
    },
  );
  metrics.gauge(
    "trebuchet_virtual_machines_in_trash",
    "Virtual machines in the trash, not yet purged",
    [],
    async (g) => {
      const f = await figures();
      if (f) g.set(f.vmsInTrash);
    },
  );
  const perHost = (name: string, help: string, value: (host: RecordedFigures["hosts"][number]) => number) =>
    metrics.gauge(name, help, ["host"], async (g) => {
      const f = await figures();
      if (f) for (const host of f.hosts) g.set({ host: host.name }, value(host));
    });
  perHost("trebuchet_host_memory_used_bytes", "Memory of the host's VMs", (h) => h.memoryUsedGb * GIB);
  perHost(
    "trebuchet_host_memory_capacity_bytes",
    "Memory the catalog gives the host",
    (h) => h.memoryGb * GIB,
  );
  perHost("trebuchet_host_disk_used_bytes", "Disk space of the host's disks", (h) => h.diskUsedGb * GIB);
  perHost(
    "trebuchet_host_disk_capacity_bytes",
    "Disk space the catalog gives the host",
    (h) => h.diskGb * GIB,
  );
  if (processes)
    metrics.gauge(
      "trebuchet_host_qemu_processes",
      "QEMU processes (VMs running) on the host of this process's host agent",
      ["host"],
      async (g) => {
        const local = await processes().catch(() => undefined);
        if (local) g.set({ host: local.host }, local.running);
      },
    );
}
