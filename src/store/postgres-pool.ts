import type { PostgresPool, PostgresPoolClient } from "kysely";
import type pg from "pg";
import { DatabaseUnreachable } from "./unavailable.js";

/**
 * The pg pool as Kysely sees it, made to survive its database going away:
 *
 * - every client has an `'error'` listener for its whole life. pg's pool listens only
 *   while a client is idle; a checked-out client (a group commit, a claim, a heartbeat)
 *   whose server disappears emits `'error'` with nobody listening, and Node ends the
 *   process. Here the error is noted and the query in flight fails on its own.
 * - failures the pg client raises without a SQLSTATE (connection refused or timed out,
 *   "Connection terminated") are given one code (`DatabaseUnreachable`), so callers
 *   recognise an outage by its code, never by its message.
 * - a client whose connection failed is discarded when released, not pooled again.
 */
export function resilientPool(pool: pg.Pool, driver: typeof pg): PostgresPool {
  const broken = new WeakSet<pg.PoolClient>();
  pool.on("connect", (client) => {
    client.on("error", () => broken.add(client as pg.PoolClient));
  });
  // Idle clients' errors reach the pool too; the client is dropped and the next query reconnects.
  pool.on("error", () => undefined);

  const tag = (client: pg.PoolClient | undefined, error: unknown): never => {
    if (error instanceof driver.DatabaseError) throw error;
    if (client) broken.add(client);
    throw new DatabaseUnreachable(error);
  };

  const wrappers = new WeakMap<pg.PoolClient, PostgresPoolClient>();
  const wrap = (client: pg.PoolClient): PostgresPoolClient => {
    let wrapper = wrappers.get(client);
    if (!wrapper) {
      wrapper = {
        query: ((sqlOrCursor: string | pg.Submittable, parameters?: readonly unknown[]) =>
          typeof sqlOrCursor === "string"
            ? client.query(sqlOrCursor, parameters as unknown[]).catch((error: unknown) => tag(client, error))
            : client.query(sqlOrCursor)) as unknown as PostgresPoolClient["query"],
        release: (discard?: boolean) => client.release(discard === true || broken.has(client)),
      } as PostgresPoolClient;
      wrappers.set(client, wrapper);
    }
    return wrapper;
  };

  return {
    connect: () => pool.connect().then(wrap, (error: unknown) => tag(undefined, error)),
    end: () => pool.end(),
  };
}
