import { mkdirSync } from "node:fs";
import { join } from "node:path";
import SQLite from "better-sqlite3";
import { Kysely, PostgresDialect, SqliteDialect, type KyselyConfig, type SqliteDatabase } from "kysely";
import type pg from "pg";
import type { DialectName } from "./dialect.js";
import { GroupCommit } from "./group-commit.js";
import type { DirectRunner } from "./statements.js";
import { migrateToLatest } from "./migrate.js";
import { resilientPool } from "./postgres-pool.js";
import { useReaderConnection } from "./prepared.js";
import { SnapshotReader } from "./snapshot-reader.js";
import type { Database } from "./schema.js";

export interface StoreOptions {
  /** A `postgres://` URL selects PostgreSQL; without it the store is SQLite in `dataDir`. */
  databaseUrl?: string;
  /** Directory of the embedded SQLite database (created when missing). */
  dataDir?: string;
  /** Longest a statement may run, and longest to wait for a row lock on PostgreSQL (ms). */
  timeoutMs?: number;
  /**
   * SQLite: longest to wait for another process's lock on the file before the database
   * counts as unavailable (ms), so requests answer 503 in about a second rather than
   * after a statement's timeout. (A stopped PostgreSQL refuses connections at once; its
   * pool waits up to `timeoutMs` for a free connection under load.)
   */
  unavailableAfterMs?: number;
  /** Connections in the PostgreSQL pool. */
  poolSize?: number;
  /** Run migrations on open (the default). */
  migrate?: boolean;
  /** Told how long each statement run through Kysely took (metrics). */
  statements?: StatementObserver;
}

export interface StatementObserver {
  statement(seconds: number, failed: boolean): void;
}

/** Kysely's log option, when statements are observed. */
function statementLog(observer: StatementObserver | undefined): KyselyConfig["log"] {
  if (!observer) return undefined;
  return (event) => observer.statement(event.queryDurationMillis / 1000, event.level === "error");
}

export interface Store {
  db: Kysely<Database>;
  /** Commits the writes of one event-loop turn together (see GroupCommit). */
  groupCommit: GroupCommit;
  /** Which database this is, for operators' messages; queries never need it (see dialect.ts). */
  dialect: DialectName;
  /** Where the data lives, for messages: a file path or the URL without its password. */
  location: string;
  close(): Promise<void>;
}

export const SQLITE_FILE = "trebuchet.db";
const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_UNAVAILABLE_AFTER_MS = 1000;

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/** bigint columns hold Unix seconds and counts, all far below 2^53: read them as numbers. */
function pgTypes(driver: typeof pg) {
  return {
    getTypeParser: ((oid: number, format?: "text" | "binary") =>
      oid === INT8_OID || oid === NUMERIC_OID
        ? (value: string) => Number(value)
        : driver.types.getTypeParser(oid, format ?? "text")) as typeof pg.types.getTypeParser,
  };
}

export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(unparseable database URL)";
  }
}

/**
 * Kysely prepares every statement anew; better-sqlite3's statements are reusable, and
 * preparing is a large share of a small query's cost. Keep the most recent ones.
 * `beforeEach` runs before every statement the writer connection runs.
 */
function withStatementCache(sqlite: SQLite.Database, beforeEach: () => void, size = 512): SqliteDatabase {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => sqlite.close(),
    // Kysely's driver runs each statement right after preparing it, in the same call.
    prepare(sql: string) {
      beforeEach();
      let statement = cache.get(sql);
      if (statement) {
        cache.delete(sql);
      } else {
        statement = sqlite.prepare(sql);
        if (cache.size >= size) cache.delete(cache.keys().next().value!);
      }
      cache.set(sql, statement);
      return statement;
    },
  };
}

/** Opens the database the options select and brings its schema up to date. */
export async function openStore(options: StoreOptions): Promise<Store> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const waitMs = Math.min(timeoutMs, options.unavailableAfterMs ?? DEFAULT_UNAVAILABLE_AFTER_MS);
  let store: Store;
  if (options.databaseUrl) {
    if (!/^postgres(ql)?:\/\//.test(options.databaseUrl)) {
      throw new Error(`DATABASE_URL must be a postgres:// URL, got ${redactUrl(options.databaseUrl)}`);
    }
    // Loaded only when used: the embedded default never pays for the PostgreSQL driver.
    const driver = (await import("pg")).default;
    const pool = new driver.Pool({
      connectionString: options.databaseUrl,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: timeoutMs,
      idleTimeoutMillis: 30_000,
      statement_timeout: timeoutMs,
      lock_timeout: timeoutMs,
      query_timeout: timeoutMs + 1000,
      types: pgTypes(driver),
    });
    const db = new Kysely<Database>({
      dialect: new PostgresDialect({ pool: resilientPool(pool, driver, timeoutMs + 1000) }),
      log: statementLog(options.statements),
    });
    store = {
      db,
      groupCommit: new GroupCommit(db),
      dialect: "postgres",
      location: redactUrl(options.databaseUrl),
      close: () => db.destroy(),
    };
  } else {
    const dataDir = options.dataDir ?? ".data";
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const file = join(dataDir, SQLITE_FILE);
    const sqlite = new SQLite(file, { timeout: waitMs });
    sqlite.pragma("journal_mode = WAL");
    sqlite.pragma("synchronous = NORMAL");
    sqlite.pragma("foreign_keys = ON");
    // Savepoints (one per build in a group commit) and statements save the pages they
    // change in a sub-journal: in memory that is a copy, in a temporary file a write.
    sqlite.pragma("temp_store = MEMORY");
    const readerConnection = new SQLite(file, { timeout: waitMs });
    readerConnection.pragma("query_only = ON");
    const reader = new SnapshotReader(readerConnection);
    // Before this process writes, reads leave their shared snapshot, so they see the write.
    const statements = withStatementCache(sqlite, reader.release);
    const db = new Kysely<Database>({
      dialect: new SqliteDialect({ database: statements }),
      log: statementLog(options.statements),
    });
    useReaderConnection(db, reader);
    const direct: DirectRunner = (sql, parameters) => {
      const statement = statements.prepare(sql);
      if (statement.reader) return statement.all(parameters) as unknown[];
      statement.run(parameters);
      return [];
    };
    store = {
      db,
      groupCommit: new GroupCommit(db, direct),
      dialect: "sqlite",
      location: file,
      close: async () => {
        await db.destroy();
        reader.release();
        readerConnection.close();
      },
    };
  }
  if (options.migrate !== false) {
    try {
      await migrateToLatest(store.db);
    } catch (error) {
      await store.close();
      throw error;
    }
  }
  return store;
}
