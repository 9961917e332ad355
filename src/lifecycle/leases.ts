import { sql, type Kysely, type SqlBool, type Transaction } from "kysely";
import { isDatabaseUnavailable, randomAlphanumeric, type Database } from "../store/index.js";

/**
 * Leases: a worker owns a claimed build or task while its lease lasts. A lease's token
 * is unique to one claim (`<host>:<worker>/<claim>`), so a job never mistakes a later
 * claim of the same row, even by its own worker, for its own.
 */
export type LeasedTable = "builds" | "tasks";

export interface Lease {
  table: LeasedTable;
  id: string;
  token: string;
  seconds: number;
}

/** The lease is gone (another claim took the row): the job stops and never writes again. */
export class LeaseLost extends Error {
  constructor(lease: Lease) {
    super(`the lease on ${lease.id} is lost`);
  }
}

export const now = (): number => Math.floor(Date.now() / 1000);

/** Who claims: one per worker; its tokens are `<id>/<random>`. */
export class LeaseHolder {
  readonly id: string;
  /** Tokens of the jobs this worker is running now: never taken over by its own claims. */
  readonly held = new Set<string>();
  /** When this worker last found the database unavailable (ms). */
  private outageAt = -Infinity;

  constructor(
    readonly hostName: string,
    readonly seconds: number,
  ) {
    this.id = `${hostName}:${randomAlphanumeric(8)}`;
  }

  newToken(): string {
    return `${this.id}/${randomAlphanumeric(8)}`;
  }

  /**
   * The database was unavailable to this worker just now. Other workers could not renew
   * their leases during the outage either, so for one lease period after it this worker
   * takes over no expired lease: their heartbeats renew them first.
   */
  noteOutage(): void {
    this.outageAt = Date.now();
  }

  /**
   * A lease nobody holds any more: expired (and not one of this worker's running jobs,
   * whose heartbeat may just have been kept from the database), or held by an earlier
   * incarnation of this host's worker (one worker per host, so that one is dead).
   */
  abandoned(t: number) {
    const host = `${this.hostName}:`;
    const mine = `${this.id}/`;
    const held = [...this.held];
    const recovering = Date.now() - this.outageAt < this.seconds * 1000;
    const expired = recovering
      ? sql<SqlBool>`1 = 0`
      : held.length > 0
        ? sql<SqlBool>`lease_expires_at < ${t} and lease_owner not in (${sql.join(held)})`
        : sql<SqlBool>`lease_expires_at < ${t}`;
    return sql<SqlBool>`((${expired}) or (substr(lease_owner, 1, ${host.length}) = ${host} and substr(lease_owner, 1, ${mine.length}) <> ${mine}))`;
  }
}

/**
 * Runs `work` in a transaction that first proves and renews the lease: the row's lease
 * is still this token's (the update also locks the row on PostgreSQL, so no claim can
 * take it before this transaction ends). Every write a worker makes for a job goes
 * through here; without the lease, nothing is written and LeaseLost is thrown.
 */
export async function withLease<T>(
  db: Kysely<Database>,
  lease: Lease,
  work: (trx: Transaction<Database>) => Promise<T>,
): Promise<T> {
  return db.transaction().execute(async (trx) => {
    const renewed = await trx
      .updateTable(lease.table)
      .set({ lease_expires_at: now() + lease.seconds })
      .where("id", "=", lease.id)
      .where("lease_owner", "=", lease.token)
      .executeTakeFirst();
    if (Number(renewed.numUpdatedRows) !== 1) throw new LeaseLost(lease);
    return work(trx);
  });
}

/**
 * Proves the lease is still this claim's and renews it for a whole lease period: work
 * on the host done right after cannot be undercut by a takeover (a claim needs the
 * lease expired). Throws LeaseLost otherwise.
 */
export function renewLease(db: Kysely<Database>, lease: Lease): Promise<void> {
  return withLease(db, lease, async () => undefined);
}

/**
 * Renews a lease every third of its length until stopped; `onLost` is called once if a
 * renewal finds the lease gone. A renewal the database could not take (an outage) is
 * not a loss: the next one tries again, and nobody can claim the row meanwhile either.
 */
export function heartbeat(db: Kysely<Database>, lease: Lease, onLost: () => void): { stop(): void } {
  let lost = false;
  const timer = setInterval(
    () => {
      renewLease(db, lease).catch((error: unknown) => {
        if (error instanceof LeaseLost && !lost) {
          lost = true;
          onLost();
        }
      });
    },
    (lease.seconds * 1000) / 3,
  );
  return { stop: () => clearInterval(timer) };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `work`, and again while the database is unavailable, backing off up to 2 s,
 * until it succeeds, fails for another reason, or `signal` is aborted. Workers wait an
 * outage out this way instead of failing the builds and tasks in their hands.
 */
export async function untilAvailable<T>(
  work: () => Promise<T>,
  options: { signal?: AbortSignal; onWait?: (error: unknown) => void } = {},
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (!isDatabaseUnavailable(error) || options.signal?.aborted) throw error;
      options.onWait?.(error);
      await sleep(Math.min(2000, 100 * 2 ** attempt));
    }
  }
}
