import type { Kysely } from "kysely";
import type { Database } from "../store/index.js";

/** Requests per minute each identity may make, per kind of request. */
export interface RateLimits {
  read: number;
  write: number;
  build: number;
}

export const DEFAULT_RATE_LIMITS: RateLimits = { read: 1000, write: 1000, build: 1000 };

export function parseRateLimits(text: string | undefined): RateLimits {
  const limits = { ...DEFAULT_RATE_LIMITS };
  if (!text) return limits;
  for (const part of text.split(",")) {
    const [bucket, value] = part.split("=").map((s) => s.trim());
    if (!bucket || !(bucket in limits) || !value || !/^[0-9]+$/.test(value) || Number(value) < 1) {
      throw new Error(`rate limits must read like "read=1000,write=1000,build=100", got "${text}"`);
    }
    limits[bucket as keyof RateLimits] = Number(value);
  }
  return limits;
}

export interface RateLimitResult {
  permitted: number;
  remaining: number;
  /** Seconds until the window ends, for Retry-After. */
  resetIn: number;
  exceeded: boolean;
}

interface Window {
  start: number;
  /** The shared count as last read from the database (every process's requests). */
  known: number;
  /** This process's requests not yet written. */
  pending: number;
  syncedAt: number;
}

/** Longest a process keeps requests to itself before writing them (seconds). */
const SYNC_INTERVAL = 0.1;

/**
 * Fixed one-minute windows counted in the database, so every API process sharing it
 * shares the counts. Each process adds its requests in small batches: at most every
 * 100 ms, and on every request once fewer than a tenth of the allowance is left, so
 * the limit is exact where it matters and a busy identity costs few writes.
 */
export class RateLimiter {
  /** By identity, then bucket: the identity's ID is the cached identity's own string, so no key is built per request. */
  private readonly windows = new Map<string, Partial<Record<keyof RateLimits, Window>>>();
  private sweepAfter = 0;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly limits: RateLimits,
  ) {}

  async hit(identityId: string, bucket: keyof RateLimits, now = Date.now() / 1000): Promise<RateLimitResult> {
    const start = Math.floor(now / 60) * 60;
    let windows = this.windows.get(identityId);
    if (!windows) this.windows.set(identityId, (windows = {}));
    let window = windows[bucket];
    if (!window || window.start !== start) {
      window = { start, known: 0, pending: 0, syncedAt: 0 };
      windows[bucket] = window;
    }
    window.pending++;
    const permitted = this.limits[bucket];
    const remaining = permitted - window.known - window.pending;
    if (now - window.syncedAt >= SYNC_INTERVAL || window.pending >= Math.max(1, remaining / 10)) {
      await this.sync(identityId, bucket, window, now);
    }
    if (now > this.sweepAfter) {
      this.sweepAfter = now + 60;
      for (const [identity, windows] of this.windows) {
        if (Object.values(windows).every((w) => w.start < start)) this.windows.delete(identity);
      }
      await this.db
        .deleteFrom("rate_limit_counters")
        .where("window_start", "<", start - 60)
        .execute();
    }
    const used = window.known + window.pending;
    return {
      permitted,
      remaining: Math.max(0, permitted - used),
      resetIn: Math.max(1, Math.ceil(start + 60 - now)),
      exceeded: used > permitted,
    };
  }

  private async sync(identityId: string, bucket: string, window: Window, now: number): Promise<void> {
    const batch = window.pending;
    window.pending -= batch;
    window.syncedAt = now;
    try {
      const row = await this.db
        .insertInto("rate_limit_counters")
        .values({ identity_id: identityId, bucket, window_start: window.start, count: batch })
        .onConflict((oc) =>
          oc
            .columns(["identity_id", "bucket", "window_start"])
            .doUpdateSet((eb) => ({ count: eb("rate_limit_counters.count", "+", batch) })),
        )
        .returning("count")
        .executeTakeFirstOrThrow();
      window.known = Math.max(window.known + batch, row.count);
    } catch (error) {
      window.pending += batch;
      throw error;
    }
  }

  permitted(bucket: keyof RateLimits): number {
    return this.limits[bucket];
  }
}
