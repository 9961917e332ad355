/**
 * Which failures mean "the database is unavailable" (an operator's problem, answered 503
 * and waited out by workers) rather than "this statement is wrong" (a bug, answered 500).
 * Recognised by code only: SQLSTATE classes for PostgreSQL's own answers, Node's socket
 * codes, SQLite's result codes, and UNREACHABLE for failures the pg client raises
 * without a code (see postgres-pool.ts).
 */

/** Code given to connection failures the pg client reports without one. */
export const UNREACHABLE = "TREBUCHET_DATABASE_UNREACHABLE";

const CODES = new Set([
  UNREACHABLE,
  // Node's socket errors.
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  // PostgreSQL: too many connections, statement or lock timeout (57014, 55P03), server shutting down.
  "53300",
  "57014",
  "55P03",
  "57P01",
  "57P02",
  "57P03",
  // SQLite: locked, busy, read-only, I/O, full, cannot open.
  "SQLITE_BUSY",
  "SQLITE_LOCKED",
  "SQLITE_READONLY",
  "SQLITE_IOERR",
  "SQLITE_CANTOPEN",
  "SQLITE_FULL",
]);

/** SQLSTATE classes that are all about the connection: 08 (connection exception). */
const CLASSES = ["08"];

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
