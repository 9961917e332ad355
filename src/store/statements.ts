import { CompiledQuery, type Compilable, type Insertable, type Kysely } from "kysely";
import { dialectOf, type DialectName } from "./dialect.js";
import { compileWithSentinels } from "./prepared.js";
import type { Database } from "./schema.js";

/**
 * Statements for the hot write path (accepting a build), compiled once per dialect and
 * then run in whatever transaction they are given. Building and compiling a Kysely
 * query costs more than SQLite takes to run a small insert; a build makes about twenty.
 */

/** Runs one statement at once on a connection (better-sqlite3 is synchronous): its rows, if any. */
export type DirectRunner = (sql: string, parameters: readonly unknown[]) => unknown[];

const directRunners = new WeakMap<object, DirectRunner>();

/**
 * Until `stop`, the statements of this module given `trx` run through `runner`, straight
 * on the connection, instead of through Kysely's executor (a chain of promises and
 * wrapper objects per statement). Only for a transaction that holds its connection
 * for as long as it is used, as a group commit's does.
 */
export function runDirectlyIn(trx: Kysely<Database>, runner: DirectRunner): { stop(): void } {
  directRunners.set(trx, runner);
  return { stop: () => directRunners.delete(trx) };
}

/** A statement with no rows to return, run in the transaction given. */
export async function runStatement(executor: Kysely<Database>, statement: string): Promise<void> {
  const direct = directRunners.get(executor);
  if (direct) direct(statement, []);
  else await executor.executeQuery(CompiledQuery.raw(statement));
}

interface CompiledInsert {
  columns: string[];
  sql: string;
}

const inserts: Record<DialectName, Map<string, CompiledInsert>> = { sqlite: new Map(), postgres: new Map() };

/**
 * `insertInto(table).values(row)`, compiled once per table and list of columns: a row
 * whose columns differ from the last one's (another order, another set) is compiled anew,
 * so the statement always names exactly the columns given.
 */
export async function insertRow<T extends keyof Database & string>(
  executor: Kysely<Database>,
  table: T,
  // Insertable holds plain values only (no expressions): each becomes one parameter.
  row: Insertable<Database[T]>,
): Promise<void> {
  const values = row as Record<string, unknown>;
  const cache = inserts[dialectOf(executor)];
  let statement = cache.get(table);
  if (!statement || !hasColumns(values, statement.columns)) {
    const columns = Object.keys(values);
    const compiled = executor.insertInto(table).values(row).compile();
    if (compiled.parameters.length !== columns.length)
      throw new Error(`insertRow(${table}): every column must have a plain value`);
    statement = { columns, sql: compiled.sql };
    cache.set(table, statement);
  }
  const parameters = statement.columns.map((column) => values[column]);
  const direct = directRunners.get(executor);
  if (direct) direct(statement.sql, parameters);
  else await executor.executeQuery(CompiledQuery.raw(statement.sql, parameters));
}

/** Are these the row's defined columns, in this order? */
function hasColumns(row: Record<string, unknown>, columns: readonly string[]): boolean {
  let i = 0;
  for (const key in row) if (columns[i++] !== key) return false;
  return i === columns.length;
}

/**
 * A query (select, update, delete) compiled once per dialect with its arguments as
 * parameters, run in the transaction given: unlike `prepare`, it sees that
 * transaction's own writes.
 */
export function transactionQuery<Args extends unknown[], Row>(
  build: (db: Kysely<Database>, ...args: Args) => Compilable<Row>,
  arity: Args["length"],
): (executor: Kysely<Database>, ...args: Args) => Promise<Row[]> {
  const compiled: Partial<Record<DialectName, ReturnType<typeof compileWithSentinels<Database, Args, Row>>>> =
    {};
  return async (executor, ...args) => {
    const statement = (compiled[dialectOf(executor)] ??= compileWithSentinels(executor, build, arity));
    const direct = directRunners.get(executor);
    if (direct) return direct(statement.sql, statement.bind(args)) as Row[];
    const result = await executor.executeQuery<Row>(CompiledQuery.raw(statement.sql, statement.bind(args)));
    return result.rows;
  };
}
