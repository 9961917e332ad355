/**
 * The official Terraform provider's recorded traffic with the real Katapult, replayed
 * against Trebuchet over real HTTP with `replay.mjs` (test/fixtures/terraform-recordings,
 * copied verbatim): every recorded request is re-issued with the IDs this server handed
 * out, polls run until the recorded final state, and each answer must have the recorded
 * status, error code and JSON types. Hosts are the fake driver, so VMs boot in milliseconds.
 */
import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Worker } from "../../src/engine/worker.js";
import { FakeDriver } from "../../src/hosts/fake/driver.js";
import { EXAMPLE_CATALOG, startTestApi, withTenants, type TestApi } from "../support/api.js";
import { DIALECTS } from "../support/stores.js";

const run = promisify(execFile);
const RECORDINGS = fileURLToPath(new URL("../fixtures/terraform-recordings/", import.meta.url));
const RECORDED = readdirSync(RECORDINGS).filter((f) => f.endsWith(".json"));
/** Recordings of operations not served yet (standalone disks): not replayed until they are. */
const NOT_YET_SERVED: string[] = [];
const CASSETTES = RECORDED.filter((f) => !NOT_YET_SERVED.includes(f));

/** The recordings' catalog names, and ours. */
const MAPPINGS = {
  "terraform-acc-test": "acme",
  "uk-lon-01": "lab-1",
  "rock-1": "small-1",
  "rock-3": "small-1",
  "templates/ubuntu-18-04": "templates/trebuchet-demo",
};

describe.each(DIALECTS)("Terraform recordings on %s", (dialect) => {
  let api: TestApi;
  let worker: Worker;
  let token: string;
  let baseUrl: string;

  beforeAll(async () => {
    const catalog = structuredClone(EXAMPLE_CATALOG);
    catalog.hosts = catalog.hosts.map((host) => ({ ...host, driver: "fake" }));
    api = await startTestApi(dialect, { catalog });
    ({ acmeToken: token } = await withTenants(api));
    const driver = new FakeDriver(catalog.hosts[0]!.name);
    driver.bootMs = 5;
    worker = new Worker({
      db: api.server.store.db,
      driver,
      hostName: catalog.hosts[0]!.name,
      templatesDir: "/nonexistent",
      pollMs: 10,
    });
    await worker.start();
    await api.server.app.listen({ host: "127.0.0.1", port: 0 });
    baseUrl = `http://127.0.0.1:${(api.server.app.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await worker?.stop();
    await api?.dispose();
  });

  it("has the five recordings", () => {
    expect(RECORDED).toHaveLength(5);
    expect(RECORDED).toEqual(expect.arrayContaining(NOT_YET_SERVED));
  });

  it.each(CASSETTES)(
    "%s replays: every status, error code and JSON type as recorded",
    async (cassette) => {
      const args = [
        `${RECORDINGS}replay.mjs`,
        "--base-url",
        baseUrl,
        "--token",
        token,
        "--cassette",
        `${RECORDINGS}${cassette}`,
        "--null-ok",
        "--poll-interval",
        "50",
        "--poll-timeout",
        "30",
        ...Object.entries(MAPPINGS).flatMap(([from, to]) => ["--map", `${from}=${to}`]),
      ];
      const result = await run(process.execPath, args, { maxBuffer: 16 * 1024 * 1024 }).then(
        ({ stdout }) => ({ code: 0, stdout }),
        (error: { code: number; stdout: string; stderr: string }) => ({
          code: error.code,
          stdout: `${error.stdout}\n${error.stderr}`,
        }),
      );
      const failures = result.stdout.split("\n").filter((line) => /FAIL/.test(line));
      expect(failures, result.stdout.slice(-4000)).toEqual([]);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^OK: \d+ interaction\(s\) passed, 0 failed/m);
    },
    120_000,
  );
});
