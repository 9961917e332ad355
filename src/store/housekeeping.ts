import type { Kysely } from "kysely";
import type { Database } from "./schema.js";

/** How often every server process sweeps expired rows (ms). */
export const HOUSEKEEPING_INTERVAL_MS = 60_000;

/**
 * Deletes what has outlived its promise: idempotency keys past their 24 hours (a reuse
 * would find them expired anyway) and trash past its `keep_until` (the object is then
 * gone for good: lookups answer not found, as Katapult's do after the trash is purged).
 * Idempotent, so every process may run it.
 */
export async function purgeExpired(
  db: Kysely<Database>,
  now: number,
): Promise<{ idempotencyKeys: number; trashObjects: number }> {
  const keys = await db.deleteFrom("idempotency_keys").where("expires_at", "<=", now).executeTakeFirst();
  const trash = await db.deleteFrom("trash_objects").where("keep_until", "<=", now).executeTakeFirst();
  return { idempotencyKeys: Number(keys.numDeletedRows), trashObjects: Number(trash.numDeletedRows) };
}
