/**
 * Which failures mean "the database is unavailable" (an operator's problem, answered 503
 * and waited out by workers) rather than "this statement is wrong" (a bug, answered 500).
 * Recognised by code only: SQLSTATEs for PostgreSQL's own answers, SQLite's result
 * codes, and UNREACHABLE, which the pg pool gives to connection failures (see
 * postgres-pool.ts). Node's socket codes are not here: the pool has already turned the
 * database's into UNREACHABLE, and anything else with them (a QEMU monitor socket) is
 * not the database.
 */

/** Code given to connection failures the pg client reports without one. */
export const UNREACHABLE = "TREBUCHET_DATABASE_UNREACHABLE";

const CODES = new Set([
  UNREACHABLE,
  // PostgreSQL: statement or lock timeout, server shutting down or starting, a standby
  // answering a write after a failover, I/O error (53xxx, out of resources, is a class below).
  "57014",
  "55P03",
  "57P01",
  "57P02",
  "57P03",
  "25006",
  "58030",
  // SQLite: locked, busy, read-only, I/O, full, cannot open.
  "SQLITE_BUSY",
  "SQLITE_LOCKED",
  "SQLITE_READONLY",
  "SQLITE_IOERR",
  "SQLITE_CANTOPEN",
  "SQLITE_FULL",
]);

/** SQLSTATE classes that are all about the server: 08 (connection exception), 53 (insufficient resources). */
const CLASSES = ["08", "53"];

export function isDatabaseUnavailable(error: unknown): boolean {
  if (!error || typeof error !== "object") return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "string") return false;
  if (CODES.has(code) || CLASSES.some((prefix) => code.length === 5 && code.startsWith(prefix))) return true;
  // Extended SQLite codes: SQLITE_BUSY_SNAPSHOT, SQLITE_IOERR_WRITE, SQLITE_READONLY_DBMOVED, ...
  const base = /^(SQLITE_[A-Z]+)_/.exec(code)?.[1];
  return base !== undefined && CODES.has(base);
}

/** A connection failure of the pg client that came without a code, given one. */
export class DatabaseUnreachable extends Error {
  readonly code = UNREACHABLE;
  constructor(cause: unknown) {
    super(`the database is unreachable: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  }
}

/** PostgreSQL gave up on a transaction to break a deadlock, or to keep it serialisable: run it again. */
export function isTransactionConflict(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "40P01" || code === "40001";
}

/** Runs a transaction again (up to 3 times) when PostgreSQL aborted it for a conflict. */
export async function retryingConflicts<T>(transaction: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await transaction();
    } catch (error) {
      if (!isTransactionConflict(error) || attempt >= 3) throw error;
    }
  }
}
