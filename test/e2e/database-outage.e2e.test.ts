/**
 * END TO END, a real PostgreSQL stopped and started again under a running server.
 * `trebuchet serve` (API and worker, the catalog's host on the in-memory driver) runs
 * as its own process on a PostgreSQL of the test's own, with builds in flight and a
 * client polling them; PostgreSQL is stopped (`pg_ctl stop -m fast`, as
 * `pg_ctlcluster ... stop -m fast` does) for 10 s and started again. The process must
 * stay up, answer 503 within 1 s throughout, finish every build it accepted, and
 * answer 200 again within a few seconds.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApiToken, createOrganization } from "../../src/catalog/accounts.js";
import { applyCatalog } from "../../src/catalog/apply.js";
import { openStore } from "../../src/store/index.js";
import { EXAMPLE_CATALOG } from "../support/api.js";
import { CLI, ROOT } from "../support/cli.js";
import { freePort } from "../support/e2e.js";
import { startPrivatePostgres, type PrivatePostgres } from "../support/private-postgres.js";

const WEB_XML = readFileSync(join(ROOT, "examples/web.xml"), "utf8");
const OUTAGE_MS = 10_000;
const BUILDS = 6;

let postgres: PrivatePostgres;
let server: ChildProcess;
let serverLog = "";
let exited: { code: number | null; signal: string | null } | undefined;
let port: number;
let token: string;
const dataDir = mkdtempSync(join(tmpdir(), "trebuchet-outage-"));

interface Answer {
  startedAt: number;
  endedAt: number;
  status: number;
  code: string | undefined;
}

async function call(method: string, path: string, body?: unknown): Promise<Answer & { json: any }> {
  const startedAt = Date.now();
  let status = 0;
  let json: any;
  try {
    const response = await fetch(`http://127.0.0.1:${port}/core/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(10_000),
    });
    status = response.status;
    json = await response.json();
  } catch {
    status = -1; // no answer at all (refused, reset, timed out)
  }
  return { startedAt, endedAt: Date.now(), status, code: json?.error?.code, json };
}

beforeAll(async () => {
  postgres = await startPrivatePostgres();
  const store = await openStore({ databaseUrl: postgres.url });
  const catalog = structuredClone(EXAMPLE_CATALOG);
  catalog.hosts = catalog.hosts.map((host) => ({
    ...host,
    driver: "fake",
    memory_in_gb: 64,
    disk_in_gb: 1000,
  }));
  await applyCatalog(store.db, catalog);
  await createOrganization(store.db, { subDomain: "acme", name: "Acme", baseDomain: "outage.test" });
  token = (
    await createApiToken(store.db, {
      subDomain: "acme",
      name: "t",
      role: "admin",
      scopes: [],
      allowedNetworks: [],
    })
  ).token;
  await store.close();
  port = await freePort();
  server = spawn(process.execPath, [CLI, "serve", "--listen", `127.0.0.1:${port}`, "--data", dataDir], {
    env: {
      ...process.env,
      DATABASE_URL: postgres.url,
      TREBUCHET_LOG_LEVEL: "warn",
      TREBUCHET_RATE_LIMITS: "read=100000,write=100000,build=100000",
      // Guests boot slowly enough that builds are in flight when the database goes.
      TREBUCHET_FAKE_BOOT_MS: "3000",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  server.stderr!.on("data", (chunk) => (serverLog += chunk));
  server.on("exit", (code, signal) => (exited = { code, signal }));
  for (let i = 0; ; i++) {
    if ((await call("GET", "/data_centers")).status === 200) break;
    if (i > 100) throw new Error(`the server did not come up:\n${serverLog}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}, 60_000);

afterAll(() => {
  server?.kill("SIGKILL");
  postgres?.destroy();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("a PostgreSQL outage under a running server", () => {
  it("answers 503 within 1 s while the database is stopped, stays up, and finishes every accepted build", async () => {
    const builds: string[] = [];
    for (let i = 0; i < BUILDS; i++) {
      const answer = await call("POST", "/organizations/_/virtual_machines/build_from_spec", {
        organization: { sub_domain: "acme" },
        xml: WEB_XML.replace("web-01", `outage-${i}`),
      });
      expect(answer.status, JSON.stringify(answer.json)).toBe(201);
      builds.push(answer.json.build.id);
    }

    // A client polls every build, all along.
    const answers: Answer[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        answers.push(
          ...(await Promise.all(builds.map((id) => call("GET", `/virtual_machines/builds/${id}`)))),
        );
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();

    await new Promise((resolve) => setTimeout(resolve, 1000));
    const inFlight = await call("GET", `/virtual_machines/builds/${builds[0]}`);
    expect(inFlight.json.virtual_machine_build.state).toBe("building");
    postgres.stop();
    const down = Date.now();
    await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS));
    const backAt = Date.now();
    postgres.start();
    const up = Date.now();

    // Every accepted build completes.
    const deadline = Date.now() + 60_000;
    const states = new Map<string, string>();
    while (Date.now() < deadline) {
      for (const id of builds) {
        const answer = await call("GET", `/virtual_machines/builds/${id}`);
        if (answer.status === 200) states.set(id, answer.json.virtual_machine_build.state);
      }
      if ([...states.values()].filter((s) => s === "complete" || s === "failed").length === BUILDS) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    polling = false;
    await poller;

    expect(exited, serverLog).toBeUndefined();
    expect([...states.values()], serverLog).toEqual(builds.map(() => "complete"));

    const during = answers.filter((a) => a.startedAt >= down && a.endedAt <= backAt);
    expect(during.length).toBeGreaterThan(50);
    for (const answer of during) {
      expect({ status: answer.status, code: answer.code }).toEqual({
        status: 503,
        code: "service_unavailable",
      });
      expect(answer.endedAt - answer.startedAt).toBeLessThan(1000);
    }
    // Polls are answered 200 again within a few seconds of the database's return.
    const firstOk = answers.find((a) => a.startedAt >= up && a.status === 200);
    expect(firstOk).toBeDefined();
    expect(firstOk!.startedAt - up).toBeLessThan(5000);
    expect(answers.filter((a) => a.status !== 200 && a.status !== 503)).toEqual([]);
  }, 120_000);
});
