import type { CompiledQuery, Compilable, Kysely } from "kysely";

/**
 * A query built and compiled once, then run with new parameter values: Kysely's
 * builder costs more than a small indexed SQLite lookup, so hot read paths (the
 * token, the task, the organization of every request) skip it. The query is
 * compiled with sentinel values and each call swaps the real values in.
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
  return async (...args: Args) => {
    const parameters = compiled.parameters.map((p, i) => (slots[i]! >= 0 ? args[slots[i]!] : p));
    const result = await db.executeQuery<Row>({ ...compiled, parameters } as CompiledQuery<Row>);
    return result.rows;
  };
}
