import { CompiledQuery, type Compilable, type Kysely } from "kysely";
import type { SnapshotReader } from "./snapshot-reader.js";

/** SQLite stores' read connections (see snapshot-reader.ts), by store. */
const readers = new WeakMap<object, SnapshotReader>();

export function useReaderConnection<DB>(db: Kysely<DB>, reader: SnapshotReader): void {
  readers.set(db, reader);
}

/** A request has arrived: see SnapshotReader. Nothing to do on PostgreSQL. */
export function shareReadsUntilTurnEnds<DB>(db: Kysely<DB>): void {
  readers.get(db)?.shareUntilTurnEnds();
}

/**
 * Runs prepared reads that belong together in one snapshot (see SnapshotReader.together).
 * `read` must call them synchronously; on PostgreSQL it just runs.
 */
export function readTogether<DB, T>(db: Kysely<DB>, read: () => T): T {
  const reader = readers.get(db);
  return reader ? reader.together(read) : read();
}

/**
 * A query built and compiled once, then run with new parameter values: Kysely's
 * builder costs more than a small indexed SQLite lookup, so hot read paths (the
 * token, the task, the organization of every request) skip it. The query is
 * compiled with sentinel values and each call swaps the real values in. On SQLite,
 * reads run on the reader connection.
 */
export function prepare<DB, Args extends string[], Row>(
  db: Kysely<DB>,
  build: (db: Kysely<DB>, ...args: Args) => Compilable<Row>,
  arity: Args["length"],
): (...args: Args) => Promise<Row[]> {
  const { sql, bind } = compileWithSentinels(db, build, arity);
  const reader = readers.get(db);
  if (reader && /^\s*select\b/i.test(sql)) {
    const select = reader.select<Row>(sql);
    return (...args: Args) => Promise.resolve(select(bind(args)));
  }
  return async (...args: Args) => {
    const result = await db.executeQuery<Row>(CompiledQuery.raw(sql, bind(args)) as CompiledQuery<Row>);
    return result.rows;
  };
}

/**
 * Compiles a query with a sentinel in place of each argument; `bind` puts the real
 * values where the sentinels were among the parameters.
 */
export function compileWithSentinels<DB, Args extends unknown[], Row>(
  db: Kysely<DB>,
  build: (db: Kysely<DB>, ...args: Args) => Compilable<Row>,
  arity: Args["length"],
): { sql: string; bind: (args: Args) => unknown[] } {
  const sentinels = Array.from({ length: arity }, (_, i) => `\u0000prepared-parameter-${i}\u0000`) as Args;
  const compiled = build(db, ...sentinels).compile();
  const slots = compiled.parameters.map((p) => sentinels.indexOf(p));
  if (sentinels.some((_, i) => !slots.includes(i)))
    throw new Error("every argument must appear as a query parameter");
  const fixed = compiled.parameters;
  return {
    sql: compiled.sql,
    bind: (args) => fixed.map((p, i) => (slots[i]! >= 0 ? args[slots[i]!] : p)),
  };
}
