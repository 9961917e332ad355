/**
 * A PostgreSQL server of one test's own (initdb into a temporary directory, its own
 * port), so the test can stop and start it like an operator would without touching
 * the server every other test uses. Needs root (the server runs as `postgres`).
 */
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./e2e.js";

function binaries(): string {
  const versions = readdirSync("/usr/lib/postgresql").sort((a, b) => Number(a) - Number(b));
  if (versions.length === 0) throw new Error("PostgreSQL is not installed (scripts/ensure-postgres)");
  return `/usr/lib/postgresql/${versions.at(-1)}/bin`;
}

function asPostgres(command: string, args: string[]): string {
  const quoted = [command, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  return execFileSync("su", ["postgres", "-s", "/bin/sh", "-c", quoted], { encoding: "utf8" });
}

export interface PrivatePostgres {
  /** `postgres://` URL of a database `trebuchet` owned by a non-superuser role. */
  url: string;
  stop(): void;
  start(): void;
  /** Stops it for good and deletes its files. */
  destroy(): void;
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = binaries();
  const dir = mkdtempSync(join(tmpdir(), "trebuchet-pg-"));
  chmodSync(dir, 0o700);
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }));
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }));
  chownSync(dir, uid, gid);
  const data = join(dir, "data");
  const port = await freePort();
  asPostgres(`${bin}/initdb`, ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
  const pgCtl = (...args: string[]) =>
    asPostgres(`${bin}/pg_ctl`, ["-D", data, "-w", "-l", join(dir, "log"), ...args]);
  pgCtl("-o", options, "start");
  const psql = (sql: string) =>
    asPostgres(`${bin}/psql`, ["-h", dir, "-p", String(port), "-U", "postgres", "-qc", sql]);
  psql("create role trebuchet login password 'trebuchet'");
  psql("create database trebuchet owner trebuchet");
  return {
    url: `postgres://trebuchet:trebuchet@127.0.0.1:${port}/trebuchet`,
    stop: () => pgCtl("-m", "fast", "stop"),
    start: () => pgCtl("-o", options, "start"),
    destroy() {
      try {
        pgCtl("-m", "immediate", "stop");
      } catch {
        // Already stopped.
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
