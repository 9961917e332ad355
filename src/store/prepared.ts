import type { CompiledQuery, Compilable, Kysely } from "kysely";
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
  const sentinels = Array.from({ length: arity }, (_, i) => `\u0000prepared-parameter-${i}\u0000`) as Args;
  const compiled = build(db, ...sentinels).compile();
  const slots = compiled.parameters.map((p) => sentinels.indexOf(p as string));
  if (sentinels.some((_, i) => !slots.includes(i)))
    throw new Error("every argument must appear as a query parameter");
  const bind = (args: Args) => compiled.parameters.map((p, i) => (slots[i]! >= 0 ? args[slots[i]!] : p));
  const reader = readers.get(db);
  if (reader && /^\s*select\b/i.test(compiled.sql)) {
    const select = reader.select<Row>(compiled.sql);
    return (...args: Args) => Promise.resolve(select(bind(args)));
  }
  return async (...args: Args) => {
    const result = await db.executeQuery<Row>({ ...compiled, parameters: bind(args) } as CompiledQuery<Row>);
    return result.rows;
  };
}
