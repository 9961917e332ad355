import { sql, type Kysely } from "kysely";
import { dialectOf } from "../dialect.js";

/**
 * Defaults live in the schema: NOT NULL columns with an obvious starting value get it as
 * their default, so inserts name only what they decide.
 */
const DEFAULTS: readonly { table: string; column: string; value: number }[] = [
  { table: "tasks", column: "progress", value: 0 },
  { table: "builds", column: "attempts", value: 0 },
  { table: "disks", column: "shared", value: 0 },
  { table: "ip_addresses", column: "vip", value: 0 },
];

export async function up(db: Kysely<unknown>): Promise<void> {
  await setDefaults(db, (value) => value);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await setDefaults(db, () => null);
}

async function setDefaults(db: Kysely<unknown>, valueOf: (value: number) => number | null): Promise<void> {
  if (dialectOf(db) === "postgres") {
    for (const { table, column, value } of DEFAULTS) {
      const next = valueOf(value);
      await db.schema
        .alterTable(table)
        .alterColumn(column, (c) => (next === null ? c.dropDefault() : c.setDefault(next)))
        .execute();
    }
    return;
  }
  const tables = new Map<string, { column: string; value: number | null }[]>();
  for (const { table, column, value } of DEFAULTS)
    tables.set(table, [...(tables.get(table) ?? []), { column, value: valueOf(value) }]);
  await withoutForeignKeys(db, async (trx) => {
    for (const [table, columns] of tables)
      await rebuildSqliteTable(trx, table, (definition) =>
        columns.reduce((text, { column, value }) => withColumnDefault(text, column, value), definition),
      );
  });
}

/**
 * SQLite cannot change a column's default in place: the table is rebuilt with the changed
 * definition (sqlite.org/lang_altertable.html, "making other kinds of table schema
 * changes"), its rows copied, its indexes recreated. Foreign keys are off meanwhile and
 * checked afterwards, since other tables point at the one rebuilt.
 */
async function withoutForeignKeys(
  db: Kysely<unknown>,
  change: (trx: Kysely<unknown>) => Promise<void>,
): Promise<void> {
  // The pragma is ignored inside a transaction, so it is set around it.
  await sql`pragma foreign_keys = off`.execute(db);
  try {
    await db.transaction().execute(async (trx) => {
      await change(trx);
      const broken = await sql<{ table: string }>`pragma foreign_key_check`.execute(trx);
      if (broken.rows.length > 0)
        throw new Error(
          `rebuilding left ${broken.rows.length} broken foreign keys (${broken.rows[0]?.table})`,
        );
    });
  } finally {
    await sql`pragma foreign_keys = on`.execute(db);
  }
}

async function rebuildSqliteTable(
  trx: Kysely<unknown>,
  table: string,
  edit: (definition: string) => string,
): Promise<void> {
  const objects = await sql<{ type: string; name: string; sql: string | null }>`
    select type, name, sql from sqlite_master where tbl_name = ${table}`.execute(trx);
  const definition = objects.rows.find((o) => o.type === "table")?.sql;
  if (!definition) throw new Error(`table ${table} not found`);
  const rebuilt = `${table}__rebuilt`;
  const created = edit(definition).replace(/^create table "[^"]+"/i, `create table "${rebuilt}"`);
  if (created === definition) throw new Error(`table ${table}: nothing to change`);
  await sql.raw(created).execute(trx);
  await sql`insert into ${sql.table(rebuilt)} select * from ${sql.table(table)}`.execute(trx);
  await sql`drop table ${sql.table(table)}`.execute(trx);
  await sql`alter table ${sql.table(rebuilt)} rename to ${sql.table(table)}`.execute(trx);
  // Automatic indexes (primary key, unique constraints) have no SQL and come back with the table.
  for (const index of objects.rows.filter((o) => o.type === "index" && o.sql !== null))
    await sql.raw(index.sql as string).execute(trx);
}

/** The column's definition in a `create table` statement, with `default` set (or removed for null). */
export function withColumnDefault(definition: string, column: string, value: number | null): string {
  const pattern = new RegExp(`("${column}" [a-z]+)( default [^ ,)]+)?( not null)`, "gi");
  const matches = definition.match(pattern) ?? [];
  if (matches.length !== 1)
    throw new Error(`column ${column}: expected one definition, found ${matches.length}`);
  return definition.replace(pattern, (_all, head: string, _old, tail: string) =>
    value === null ? `${head}${tail}` : `${head} default ${value}${tail}`,
  );
}
