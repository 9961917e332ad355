import { PostgresAdapter } from "kysely";

/** A database handle or a transaction: anything Kysely runs queries through. */
interface Executor {
  getExecutor(): { readonly adapter: unknown };
}

export type DialectName = "sqlite" | "postgres";

/**
 * The dialect of a database handle or of a transaction on it. Callers outside the store
 * never need it: the store's compiled statements and row locks ask for it themselves.
 */
export function dialectOf(executor: Executor): DialectName {
  return executor.getExecutor().adapter instanceof PostgresAdapter ? "postgres" : "sqlite";
}

/**
 * `select ... for update [skip locked]` on PostgreSQL; SQLite has one writer at a time,
 * so a write transaction already holds everything it reads and the query stays as it is.
 */
export function lockedForUpdate<Q extends { forUpdate(): Q; skipLocked(): Q }>(
  executor: Executor,
  query: Q,
  options: { skipLocked?: boolean } = {},
): Q {
  if (dialectOf(executor) !== "postgres") return query;
  const locked = query.forUpdate();
  return options.skipLocked ? locked.skipLocked() : locked;
}
