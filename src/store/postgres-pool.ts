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
 * - connection failures the pg client raises without a SQLSTATE are given one code
 *   (`DatabaseUnreachable`), so callers recognise an outage by its code, never by its
 *   message: a connection that could not be made (or no free one in time), one whose
 *   socket failed or ended, and a query with no answer within the read timeout. Other
 *   errors without a SQLSTATE (a value pg cannot send) stay what they are: bugs.
 * - a client whose connection failed is discarded when released, not pooled again.
 */
export function resilientPool(pool: pg.Pool, driver: typeof pg, readTimeoutMs: number): PostgresPool {
  const broken = new WeakSet<pg.PoolClient>();
  pool.on("connect", (client) => {
    client.on("error", () => broken.add(client as pg.PoolClient));
  });
  // Idle clients' errors reach the pool too; the client is dropped and the next query reconnects.
  pool.on("error", () => undefined);

  const connectionFailed = (error: unknown): never => {
    // The server's own refusal keeps its SQLSTATE (53300: too many connections, 57P03: starting up).
    if (error instanceof driver.DatabaseError) throw error;
    throw new DatabaseUnreachable(error);
  };
  const queryFailed = (client: pg.PoolClient, startedAt: number, error: unknown): never => {
    if (error instanceof driver.DatabaseError) throw error;
    // The socket failed (its 'error' came first) or the server never answered.
    if (broken.has(client) || Date.now() - startedAt >= readTimeoutMs) {
      broken.add(client);
      throw new DatabaseUnreachable(error);
    }
    throw error;
  };

  const wrappers = new WeakMap<pg.PoolClient, PostgresPoolClient>();
  const wrap = (client: pg.PoolClient): PostgresPoolClient => {
    let wrapper = wrappers.get(client);
    if (!wrapper) {
      wrapper = {
        query: ((sqlOrCursor: string | pg.Submittable, parameters?: readonly unknown[]) => {
          if (typeof sqlOrCursor !== "string") return client.query(sqlOrCursor);
          const startedAt = Date.now();
          return client
            .query(sqlOrCursor, parameters as unknown[])
            .catch((error: unknown) => queryFailed(client, startedAt, error));
        }) as unknown as PostgresPoolClient["query"],
        release: (discard?: boolean) => client.release(discard === true || broken.has(client)),
      } as PostgresPoolClient;
      wrappers.set(client, wrapper);
    }
    return wrapper;
  };

  return {
    connect: () => pool.connect().then(wrap, connectionFailed),
    end: () => pool.end(),
    options: pool.options,
  };
}
