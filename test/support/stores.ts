/**
 * Real databases for tests: a fresh SQLite file, or a fresh PostgreSQL database
 * created on the server TREBUCHET_TEST_DATABASE_URL points at (scripts/test starts one).
 * PostgreSQL is never skipped: without the URL, its tests fail and say why.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import {
  openStore,
  randomAlphanumeric,
  type DialectName,
  type Store,
  type StoreOptions,
} from "../../src/store/index.js";

export const DIALECTS: DialectName[] = ["sqlite", "postgres"];

function postgresUrl(): string {
  const url = process.env.TREBUCHET_TEST_DATABASE_URL;
  if (!url) {
    throw new Error(
      "TREBUCHET_TEST_DATABASE_URL is not set: run the suite with ./scripts/test, which starts PostgreSQL and sets it",
    );
  }
  return url;
}

export interface TestStore extends Store {
  /** Options that open this same database again (another "process"). */
  options: StoreOptions;
  /** Closes the store and deletes its database. */
  dispose(): Promise<void>;
}

export async function openTestStore(
  dialect: DialectName,
  extra: Partial<StoreOptions> = {},
): Promise<TestStore> {
  if (dialect === "sqlite") {
    const dataDir = mkdtempSync(join(tmpdir(), "trebuchet-test-"));
    const options = { dataDir, ...extra };
    const store = await openStore(options);
    return {
      ...store,
      options,
      dispose: async () => {
        await store.close();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  }
  const base = postgresUrl();
  const name = `trebuchet_t_${randomAlphanumeric(10).toLowerCase()}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  const options = { databaseUrl: url.toString(), ...extra };
  const store = await openStore(options);
  return {
    ...store,
    options,
    dispose: async () => {
      await store.close();
      await dropDatabase(base, name);
    },
  };
}

/**
 * A plain DROP DATABASE stops autovacuum workers itself; WITH (FORCE) cannot
 * (they belong to no role the test role may signal), but it ends connections a
 * pool has not closed yet. So: plain first, force when the database is in use,
 * and again until the other sessions are gone.
 */
async function dropDatabase(base: string, name: string): Promise<void> {
  const cleanup = new pg.Client({ connectionString: base });
  await cleanup.connect();
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        await cleanup.query(`drop database if exists ${name}`);
        return;
      } catch (error) {
        if (sqlState(error) !== OBJECT_IN_USE || attempt === 50) throw error;
      }
      try {
        await cleanup.query(`drop database if exists ${name} with (force)`);
        return;
      } catch (error) {
        if (sqlState(error) !== INSUFFICIENT_PRIVILEGE) throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await cleanup.end();
  }
}

const OBJECT_IN_USE = "55006";
const INSUFFICIENT_PRIVILEGE = "42501";

function sqlState(error: unknown): unknown {
  return typeof error === "object" && error !== null && "code" in error ? error.code : undefined;
}
