import type { Kysely } from "kysely";
import { insertRow, type Database, type JsonColumn } from "../store/index.js";
import { now } from "./leases.js";

/**
 * Idempotency keys: what an identity's request with a key did, kept for a day, so a
 * retry of the same request gets the same outcome instead of doing it again. The
 * outcome is a lifecycle record (which build, which task), presented by the API as it
 * presents a new one.
 */

/** How long an outcome is kept. */
export const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;

export interface IdempotencyKey {
  identityId: string;
  key: string;
  /** Hash of the request (operation, organization, arguments): a key may not be reused for another. */
  requestHash: string;
}

/** The key was used before with another request. */
export class IdempotencyKeyReused extends Error {
  constructor(readonly key: string) {
    super(`idempotency key ${key} was used with another request`);
  }
}

/** The outcome recorded under this key, if any; throws IdempotencyKeyReused for another request. */
export async function recordedOutcome<T>(
  db: Kysely<Database>,
  column: JsonColumn<T>,
  request: IdempotencyKey,
): Promise<T | undefined> {
  const row = await db
    .selectFrom("idempotency_keys")
    .select(["request_hash", "outcome_json", "expires_at"])
    .where("identity_id", "=", request.identityId)
    .where("key", "=", request.key)
    .executeTakeFirst();
  if (!row) return undefined;
  if (row.expires_at <= now()) {
    // An expired key is free again: forget the old outcome so the new request can record its own.
    await db
      .deleteFrom("idempotency_keys")
      .where("identity_id", "=", request.identityId)
      .where("key", "=", request.key)
      .where("expires_at", "<=", now())
      .execute();
    return undefined;
  }
  if (row.request_hash !== request.requestHash) throw new IdempotencyKeyReused(request.key);
  return column.decode(row.outcome_json);
}

/** Records an outcome in the transaction that produced it, so both are committed or neither. */
export async function recordOutcome<T>(
  trx: Kysely<Database>,
  column: JsonColumn<T>,
  request: IdempotencyKey,
  outcome: T,
): Promise<void> {
  const t = now();
  await insertRow(trx, "idempotency_keys", {
    identity_id: request.identityId,
    key: request.key,
    request_hash: request.requestHash,
    outcome_json: column.encode(outcome),
    created_at: t,
    expires_at: t + IDEMPOTENCY_TTL_SECONDS,
  });
}

/**
 * Requests that share a name (an identity's key) run one after another in this process:
 * concurrent retries of one request wait for the first instead of racing it, and then
 * find its outcome recorded. (Across processes, a request that fails because of another
 * one's effects checks for that one's outcome instead: see the build route.)
 */
export class OneAtATime {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(name: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(name);
    const mine = previous ? previous.then(work, work) : work();
    const tail = mine.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(name, tail);
    void tail.then(() => {
      if (this.tails.get(name) === tail) this.tails.delete(name);
    });
    return mine;
  }
}
