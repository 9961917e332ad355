import { sql, type Kysely, type Transaction } from "kysely";
import { dialectOf, type Database } from "../store/index.js";
import {
  describeBreach,
  LIMIT_NAMES,
  limitBreaches,
  type LimitBreach,
  type LimitName,
  type OrganizationLimits,
  type Usage,
} from "./quota.js";

/** A request that would take its organization past one of its limits. */
export class LimitReached extends Error {
  constructor(readonly breaches: LimitBreach[]) {
    super(breaches.map(describeBreach).join("; "));
  }
}

/** What an organization's limits are checked against: its ID and the configured defaults. */
export interface LimitCheck {
  organizationId: string;
  defaults: OrganizationLimits;
}

/** The stored form: null = the default, -1 = unlimited. */
const UNLIMITED = -1;

/**
 * Makes the transaction the only one changing what this organization holds until it ends:
 * the first thing a unit of work that checks a limit does, so that two requests racing
 * for the last of a limit count one after the other. On PostgreSQL a row lock on the
 * organization that does not block inserts referring to it; on SQLite a write, which
 * takes the database's write lock before anything is counted (a transaction that had
 * read first could not take it any more once another process committed).
 */
export async function lockOrganization(trx: Transaction<Database>, organizationId: string): Promise<void> {
  if (dialectOf(trx) === "postgres") {
    await trx
      .selectFrom("organizations")
      .select("id")
      .where("id", "=", organizationId)
      .forNoKeyUpdate()
      .execute();
  } else {
    await trx
      .updateTable("organizations")
      .set((eb) => ({ name: eb.ref("name") }))
      .where("id", "=", organizationId)
      .execute();
  }
}

/**
 * What an organization holds (of `only` those resources, when given; the others read 0).
 * A VM in the trash still counts (with its memory, disks and addresses) until it is
 * purged: it can be restored at any time.
 */
export async function organizationUsage(
  db: Kysely<Database>,
  organizationId: string,
  only: readonly LimitName[] = LIMIT_NAMES,
): Promise<Usage> {
  const usage: Usage = {
    virtual_machines: 0,
    virtual_machine_memory: 0,
    disk_space: 0,
    unallocated_ip_addresses: 0,
  };
  if (only.includes("virtual_machines") || only.includes("virtual_machine_memory")) {
    const vms = await db
      .selectFrom("virtual_machines")
      .select((eb) => [eb.fn.countAll().as("count"), eb.fn.sum("memory_in_gb").as("memory")])
      .where("organization_id", "=", organizationId)
      .where("purged_at", "is", null)
      .executeTakeFirstOrThrow();
    usage.virtual_machines = Number(vms.count);
    usage.virtual_machine_memory = Number(vms.memory ?? 0);
  }
  if (only.includes("disk_space")) {
    const disks = await db
      .selectFrom("disks")
      // A disk being shrunk or resized by its own task holds its larger size until the
      // task is done: a failed one gives it back.
      .select(
        sql<
          string | number | null
        >`sum(case when size_before_resize_in_gb > size_in_gb then size_before_resize_in_gb else size_in_gb end)`.as(
          "size",
        ),
      )
      .where("organization_id", "=", organizationId)
      .where("state", "!=", "deleted")
      .executeTakeFirstOrThrow();
    usage.disk_space = Number(disks.size ?? 0);
  }
  if (only.includes("unallocated_ip_addresses")) {
    const addresses = await db
      .selectFrom("ip_addresses")
      .select((eb) => eb.fn.countAll().as("count"))
      .where("organization_id", "=", organizationId)
      .where("allocation_id", "is", null)
      .executeTakeFirstOrThrow();
    usage.unallocated_ip_addresses = Number(addresses.count);
  }
  return usage;
}

/** An organization's limits: its own where an operator set them, else the defaults. */
export async function limitsOf(
  db: Kysely<Database>,
  check: LimitCheck,
): Promise<{ limits: OrganizationLimits; overridden: LimitName[] }> {
  const row = await db
    .selectFrom("organization_limits")
    .selectAll()
    .where("organization_id", "=", check.organizationId)
    .executeTakeFirst();
  const limits = { ...check.defaults };
  const overridden: LimitName[] = [];
  for (const name of LIMIT_NAMES) {
    const stored = row?.[name];
    if (stored === null || stored === undefined) continue;
    limits[name] = stored === UNLIMITED ? null : stored;
    overridden.push(name);
  }
  return { limits, overridden };
}

/**
 * Refuses (LimitReached) a change that would take the organization past a limit. Call it
 * after lockOrganization, in the transaction that makes the change, with what it adds.
 */
export async function ensureWithinLimits(
  trx: Transaction<Database>,
  check: LimitCheck,
  requested: Partial<Usage>,
): Promise<void> {
  const asked = LIMIT_NAMES.filter((name) => (requested[name] ?? 0) > 0);
  if (asked.length === 0) return;
  const { limits } = await limitsOf(trx, check);
  // Only limited resources are counted: an unlimited organization's count would grow with it.
  const counted = asked.filter((name) => limits[name] !== null);
  if (counted.length === 0) return;
  const current = await organizationUsage(trx, check.organizationId, counted);
  const breaches = limitBreaches(limits, current, requested);
  if (breaches.length > 0) throw new LimitReached(breaches);
}

/** What an operator sets for one limit: a number, unlimited (null), or back to the default. */
export type LimitSetting = number | null | "default";

/** Sets an organization's own limits; names left out keep what they had. */
export async function setOrganizationLimits(
  db: Kysely<Database>,
  organizationId: string,
  settings: Partial<Record<LimitName, LimitSetting>>,
): Promise<void> {
  const stored = (setting: LimitSetting) =>
    setting === "default" ? null : setting === null ? UNLIMITED : setting;
  const values: Partial<Record<LimitName, number | null>> = {};
  for (const name of LIMIT_NAMES) {
    const setting = settings[name];
    if (setting !== undefined) values[name] = stored(setting);
  }
  const now = Math.floor(Date.now() / 1000);
  await db
    .insertInto("organization_limits")
    .values({ organization_id: organizationId, ...values, updated_at: now })
    .onConflict((oc) => oc.column("organization_id").doUpdateSet({ ...values, updated_at: now }))
    .execute();
}
