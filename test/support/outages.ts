/**
 * Real database outages for one test's database, without touching any other test's:
 * PostgreSQL refuses new connections to the database (CONNECTION LIMIT 0 applies to
 * the non-superuser test role) and its sessions are ended (pg_terminate_backend);
 * SQLite's file is locked for writing by another connection, as another process would.
 * For a whole server stopped and started again, see private-postgres.ts.
 */
import SQLite from "better-sqlite3";
import { join } from "node:path";
import pg from "pg";
import { SQLITE_FILE } from "../../src/store/index.js";
import type { TestStore } from "./stores.js";

export interface Outage {
  /** Ends the outage. */
  end(): Promise<void>;
}

export async function takeDatabaseAway(store: TestStore): Promise<Outage> {
  if (store.options.databaseUrl) {
    const url = new URL(store.options.databaseUrl);
    const name = url.pathname.slice(1);
    const admin = new pg.Client({ connectionString: process.env.TREBUCHET_TEST_DATABASE_URL });
    await admin.connect();
    await admin.query(`alter database ${name} connection limit 0`);
    await admin.query(
      "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
      [name],
    );
    return {
      async end() {
        await admin.query(`alter database ${name} connection limit -1`);
        await admin.end();
      },
    };
  }
  const locker = new SQLite(join(store.options.dataDir!, SQLITE_FILE));
  locker.exec("begin immediate");
  return {
    async end() {
      locker.exec("rollback");
      locker.close();
    },
  };
}
