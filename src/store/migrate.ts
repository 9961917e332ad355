import type { Kysely } from "kysely";
import { Migrator, type Migration, type MigrationResultSet } from "kysely/migration";
import * as initial from "./migrations/0001-initial.js";
import * as workQueue from "./migrations/0002-work-queue.js";
import * as lifecycle from "./migrations/0003-lifecycle.js";
import * as columnDefaults from "./migrations/0004-column-defaults.js";
import * as vmResources from "./migrations/0005-vm-resources.js";
import * as backupPolicySchedules from "./migrations/0006-backup-policy-schedules.js";
import * as disksBuiltForAVm from "./migrations/0007-disks-built-for-a-vm.js";
import * as organizationLimits from "./migrations/0008-organization-limits.js";

/** Every migration, in order. Names are permanent once released. */
const MIGRATIONS: Record<string, Migration> = {
  "0001-initial": initial,
  "0002-work-queue": workQueue,
  "0003-lifecycle": lifecycle,
  "0004-column-defaults": columnDefaults,
  "0005-vm-resources": vmResources,
  "0006-backup-policy-schedules": backupPolicySchedules,
  "0007-disks-built-for-a-vm": disksBuiltForAVm,
  "0008-organization-limits": organizationLimits,
};

export interface MigrationReport {
  applied: string[];
  pending: string[];
}

/** Brings the schema up to date. Safe to run from several processes at once (the migrator holds a lock). */
export async function migrateToLatest<DB>(db: Kysely<DB>): Promise<MigrationReport> {
  const migrator = new Migrator({
    db: db as unknown as Kysely<unknown>,
    provider: { getMigrations: async () => MIGRATIONS },
  });
  const result: MigrationResultSet = await migrator.migrateToLatest();
  if (result.error) {
    const failed = result.results?.find((r) => r.status === "Error")?.migrationName;
    const reason = result.error instanceof Error ? result.error.message : String(result.error);
    throw new Error(`migration ${failed ?? "(unknown)"} failed: ${reason}`);
  }
  const applied = (result.results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
  const all = await migrator.getMigrations();
  return { applied, pending: all.filter((m) => m.executedAt === undefined).map((m) => m.name) };
}

export async function migrationStatus<DB>(
  db: Kysely<DB>,
): Promise<{ name: string; executedAt: Date | null }[]> {
  const migrator = new Migrator({
    db: db as unknown as Kysely<unknown>,
    provider: { getMigrations: async () => MIGRATIONS },
  });
  return (await migrator.getMigrations()).map((m) => ({ name: m.name, executedAt: m.executedAt ?? null }));
}
