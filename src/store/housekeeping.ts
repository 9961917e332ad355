import type { Kysely } from "kysely";
import type { Database } from "./schema.js";

/** How often every server process sweeps expired rows (ms). */
export const HOUSEKEEPING_INTERVAL_MS = 60_000;

/**
 * Deletes idempotency keys past their 24 hours (a reuse would find them expired anyway).
 * Idempotent, so every process may run it. (Trash past its `keep_until` is purged by the
 * lifecycle: `purgeExpiredTrash`.)
 */
export async function purgeExpired(db: Kysely<Database>, now: number): Promise<{ idempotencyKeys: number }> {
  const keys = await db.deleteFrom("idempotency_keys").where("expires_at", "<=", now).executeTakeFirst();
  return { idempotencyKeys: Number(keys.numDeletedRows) };
}
