/** The store survives its database going away: no process exit, failures recognised by code. */
import { sql } from "kysely";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { isDatabaseUnavailable, UNREACHABLE } from "../../src/store/index.js";
import { takeDatabaseAway } from "../support/outages.js";
import { openTestStore } from "../support/stores.js";

describe("a PostgreSQL session ended while a transaction holds its connection", () => {
  it("fails that transaction with an unavailable error; the process lives and the pool reconnects", async () => {
    const store = await openTestStore("postgres");
    const uncaught: unknown[] = [];
    const record = (error: unknown) => uncaught.push(error);
    process.on("uncaughtException", record);
    try {
      const admin = new pg.Client({ connectionString: process.env.TREBUCHET_TEST_DATABASE_URL });
      await admin.connect();
      const failure = await store.db
        .transaction()
        .execute(async (trx) => {
          const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
          // The connection is checked out and idle between two statements: pg's pool does
          // not listen to it now, and an 'error' nobody listens to ends the process.
          await admin.query("select pg_terminate_backend($1)", [rows[0]!.pid]);
          await new Promise((resolve) => setTimeout(resolve, 300));
          await sql`select 1`.execute(trx);
        })
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      await admin.end();
      expect(uncaught).toEqual([]);
      expect(isDatabaseUnavailable(failure), String(failure)).toBe(true);
      // The broken connection was dropped, not pooled again: the next query works.
      expect((await sql<{ one: number }>`select 1 as one`.execute(store.db)).rows).toEqual([{ one: 1 }]);
    } finally {
      process.off("uncaughtException", record);
      await store.dispose();
    }
  });

  it("refused connections are unavailable errors, by their code", async () => {
    const store = await openTestStore("postgres");
    try {
      const outage = await takeDatabaseAway(store);
      // The pool's idle connection was ended (57P01); a new one is refused (53300).
      const failures = [];
      for (let i = 0; i < 3; i++)
        failures.push(await sql`select 1`.execute(store.db).catch((error: unknown) => error));
      await outage.end();
      expect(failures.map((f) => (f as { code?: string }).code)).toContain("53300");
      for (const failure of failures) expect(isDatabaseUnavailable(failure), String(failure)).toBe(true);
    } finally {
      await store.dispose();
    }
  });
});

describe("isDatabaseUnavailable", () => {
  it("knows outages by code and nothing else", () => {
    const withCode = (code: string) => Object.assign(new Error("whatever"), { code });
    for (const code of [
      UNREACHABLE,
      "57P01",
      "08006",
      "53300",
      "SQLITE_BUSY",
      "SQLITE_BUSY_SNAPSHOT",
      "SQLITE_READONLY_DBMOVED",
      "SQLITE_IOERR_WRITE",
    ])
      expect(isDatabaseUnavailable(withCode(code)), code).toBe(true);
    for (const code of [
      "ECONNREFUSED",
      "EPIPE",
      "23505",
      "42P01",
      "SQLITE_CONSTRAINT_UNIQUE",
      "SQLITE_ERROR",
      "08",
      "FST_ERR_X",
    ])
      expect(isDatabaseUnavailable(withCode(code)), code).toBe(false);
    expect(isDatabaseUnavailable(new Error("Connection terminated unexpectedly"))).toBe(false);
    expect(isDatabaseUnavailable(undefined)).toBe(false);
  });
});
