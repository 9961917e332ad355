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

/**
 * Fixed one-minute windows counted in the database, so every API process sharing the
 * database shares the counts. One upsert per request; stale windows are swept now and then.
 */
export class RateLimiter {
  private sweepAfter = 0;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly limits: RateLimits,
  ) {}

  async hit(identityId: string, bucket: keyof RateLimits, now = Date.now() / 1000): Promise<RateLimitResult> {
    const windowStart = Math.floor(now / 60) * 60;
    const row = await this.db
      .insertInto("rate_limit_counters")
      .values({ identity_id: identityId, bucket, window_start: windowStart, count: 1 })
      .onConflict((oc) =>
        oc
          .columns(["identity_id", "bucket", "window_start"])
          .doUpdateSet((eb) => ({ count: eb("rate_limit_counters.count", "+", 1) })),
      )
      .returning("count")
      .executeTakeFirstOrThrow();
    if (now > this.sweepAfter) {
      this.sweepAfter = now + 60;
      await this.db
        .deleteFrom("rate_limit_counters")
        .where("window_start", "<", windowStart - 60)
        .execute();
    }
    const permitted = this.limits[bucket];
    return {
      permitted,
      remaining: Math.max(0, permitted - row.count),
      resetIn: Math.max(1, Math.ceil(windowStart + 60 - now)),
      exceeded: row.count > permitted,
    };
  }

  permitted(bucket: keyof RateLimits): number {
    return this.limits[bucket];
  }
}
