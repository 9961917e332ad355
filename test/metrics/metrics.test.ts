/**
 * /metrics on its own listener (real HTTP) after real work on real databases: a build
 * through the in-process host agent (fake driver), a power action, rate-limit
 * refusals, a build taken over from a dead worker; and what a scrape says while
 * PostgreSQL refuses connections. The real-QEMU scrape is in test/e2e/metrics.e2e.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Worker } from "../../src/engine/worker.js";
import { FakeDriver } from "../../src/hosts/fake/driver.js";
import { listenMetrics, type MetricsListener } from "../../src/metrics/listen.js";
import { EXAMPLE_CATALOG, startTestApi, withTenants, type TestApi } from "../support/api.js";
import { until } from "../support/eventually.js";
import { takeDatabaseAway } from "../support/outages.js";
import { parseMetrics, sample } from "../support/metrics.js";
import { DIALECTS } from "../support/stores.js";

const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");
const BUILD = "/core/v1/organizations/_/virtual_machines/build_from_spec";

let api: TestApi | undefined;
let listener: MetricsListener | undefined;
let dataDir: string | undefined;
const workers: Worker[] = [];

afterEach(async () => {
  for (const worker of workers.splice(0)) await worker.stop();
  await listener?.close();
  await api?.dispose();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  api = listener = dataDir = undefined;
});

async function scrape() {
  const response = await fetch(listener!.url);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseMetrics(await response.text());
}

const fakeCatalog = () => {
  const catalog = structuredClone(EXAMPLE_CATALOG);
  catalog.hosts[0]!.driver = "fake";
  return catalog;
};

describe.each(DIALECTS)("metrics on %s", (dialect) => {
  it("count a build, its VM, a power action, refusals and statements, and the host's use", async () => {
    dataDir = mkdtempSync(join(tmpdir(), "trebuchet-metrics-"));
    api = await startTestApi(dialect, {
      catalog: fakeCatalog(),
      config: {
        metrics: true,
        agent: { dataDir, pollMs: 20 },
        rateLimits: { read: 3, write: 100, build: 100 },
      },
    });
    const { acmeToken, globexToken } = await withTenants(api);
    listener = await listenMetrics(api.server.metrics!, { host: "127.0.0.1", port: 0 });
    const db = api.server.store.db;
    const before = await scrape();
    expect(sample(before, "trebuchet_builds", { state: "complete" })).toBe(0);
    expect(sample(before, "trebuchet_host_memory_capacity_bytes", { host: "local" })).toBe(
      EXAMPLE_CATALOG.hosts[0]!.memory_in_gb * 1024 ** 3,
    );

    const accepted = await api.call("POST", BUILD, {
      token: acmeToken,
      body: { organization: { sub_domain: "acme" }, xml: WEB_XML },
    });
    expect(accepted.statusCode, accepted.body).toBe(201);
    const buildId = accepted.json().build.id as string;
    const build = await until("the build", async () => {
      const row = await db
        .selectFrom("builds")
        .selectAll()
        .where("id", "=", buildId)
        .executeTakeFirstOrThrow();
      return row.state === "complete" || row.state === "failed" ? row : undefined;
    });
    expect(build.state).toBe("complete");
    /** A power action through the API, waited for until its task completed. */
    const powerAction = async (action: "start" | "stop") => {
      const queued = await api!.call("POST", `/core/v1/virtual_machines/_/${action}`, {
        token: acmeToken,
        body: { virtual_machine: { id: build.virtual_machine_id } },
      });
      expect(queued.statusCode, queued.body).toBe(200);
      await until(`the ${action}`, async () => {
        const task = await db
          .selectFrom("tasks")
          .select("status")
          .where("id", "=", queued.json().task.id)
          .executeTakeFirstOrThrow();
        return task.status === "completed" ? true : undefined;
      });
    };
    await powerAction("stop");
    const reads = [];
    for (let i = 0; i < 5; i++)
      reads.push((await api.call("GET", "/core/v1/organizations", { token: globexToken })).statusCode);
    expect(reads).toEqual([200, 200, 200, 429, 429]);

    const after = await scrape();
    expect(
      sample(after, "trebuchet_http_requests_total", { operation: "build_from_spec", status: "201" }),
    ).toBe(1);
    expect(
      sample(after, "trebuchet_http_request_duration_seconds_count", {
        operation: "build_from_spec",
        status: "201",
      }),
    ).toBe(1);
    expect(
      sample(after, "trebuchet_http_requests_total", { operation: "list_organizations", status: "429" }),
    ).toBe(2);
    expect(sample(after, "trebuchet_rate_limit_refusals_total", { bucket: "read" })).toBe(2);
    expect(sample(after, "trebuchet_builds", { state: "complete" })).toBe(1);
    expect(sample(after, "trebuchet_builds", { state: "pending" })).toBe(0);
    expect(sample(after, "trebuchet_build_queue_depth", {})).toBe(0);
    expect(sample(after, "trebuchet_build_duration_seconds_count", { outcome: "complete" })).toBe(1);
    expect(sample(after, "trebuchet_tasks_finished_total", { action: "stop", outcome: "completed" })).toBe(1);
    expect(sample(after, "trebuchet_virtual_machines", { state: "stopped" })).toBe(1);
    expect(sample(after, "trebuchet_virtual_machines", { state: "started" })).toBe(0);
    expect(sample(after, "trebuchet_host_memory_used_bytes", { host: "local" })).toBeGreaterThan(0);
    expect(sample(after, "trebuchet_host_disk_used_bytes", { host: "local" })).toBeGreaterThan(0);
    expect(sample(after, "trebuchet_host_qemu_processes", { host: "local" })).toBe(0);
    expect(sample(after, "trebuchet_lease_takeovers_total", { kind: "build" })).toBe(0);
    expect(
      sample(after, "trebuchet_database_statement_duration_seconds_count", { outcome: "ok" }),
    ).toBeGreaterThan(
      sample(before, "trebuchet_database_statement_duration_seconds_count", { outcome: "ok" }),
    );
    expect(sample(after, "trebuchet_metrics_database_up", {})).toBe(1);
    // The process's own figures come with them.
    expect(sample(after, "process_resident_memory_bytes", {})).toBeGreaterThan(0);

    // Started again, its process counts.
    await powerAction("start");
    expect(sample(await scrape(), "trebuchet_host_qemu_processes", { host: "local" })).toBe(1);
  });

  it("show the queue's age, and count a build taken over from a dead worker as a takeover and a retry", async () => {
    api = await startTestApi(dialect, { catalog: fakeCatalog(), config: { metrics: true } });
    const { acmeToken } = await withTenants(api);
    listener = await listenMetrics(api.server.metrics!, { host: "127.0.0.1", port: 0 });
    const db = api.server.store.db;
    const accepted = await api.call("POST", BUILD, {
      token: acmeToken,
      body: { organization: { sub_domain: "acme" }, xml: WEB_XML },
    });
    expect(accepted.statusCode, accepted.body).toBe(201);
    const buildId = accepted.json().build.id as string;
    // Accepted two minutes ago, and nobody has claimed it.
    await db
      .updateTable("builds")
      .set((eb) => ({ created_at: eb("created_at", "-", 120) }))
      .where("id", "=", buildId)
      .execute();
    const waiting = await scrape();
    expect(sample(waiting, "trebuchet_build_queue_depth", {})).toBe(1);
    expect(sample(waiting, "trebuchet_builds", { state: "pending" })).toBe(1);
    expect(sample(waiting, "trebuchet_build_queue_oldest_age_seconds", {})).toBeGreaterThanOrEqual(120);
    expect(sample(waiting, "trebuchet_build_queue_oldest_age_seconds", {})).toBeLessThan(180);

    // A worker claimed it and died: its lease ran out long ago.
    await db
      .updateTable("builds")
      .set({
        state: "building",
        lease_owner: "local:dead/claim",
        lease_expires_at: Math.floor(Date.now() / 1000) - 600,
        attempts: 1,
      })
      .where("id", "=", buildId)
      .execute();
    const worker = new Worker({
      db,
      driver: new FakeDriver("local"),
      hostName: "local",
      templatesDir: "/t",
      pollMs: 10,
      events: api.server.metrics!,
    });
    workers.push(worker);
    await worker.start();
    await until("the build", async () => {
      const row = await db
        .selectFrom("builds")
        .select("state")
        .where("id", "=", buildId)
        .executeTakeFirstOrThrow();
      return row.state === "complete" ? true : undefined;
    });
    const done = await scrape();
    expect(sample(done, "trebuchet_lease_takeovers_total", { kind: "build" })).toBe(1);
    expect(sample(done, "trebuchet_retries_total", { kind: "build_attempt" })).toBe(1);
    expect(sample(done, "trebuchet_build_duration_seconds_count", { outcome: "complete" })).toBe(1);
    expect(
      sample(done, "trebuchet_build_duration_seconds_sum", { outcome: "complete" }),
    ).toBeGreaterThanOrEqual(120);
    expect(sample(done, "trebuchet_build_queue_depth", {})).toBe(0);
  });
});

describe("the metrics' documentation", () => {
  it("names every metric Trebuchet registers", async () => {
    dataDir = mkdtempSync(join(tmpdir(), "trebuchet-metrics-"));
    api = await startTestApi("sqlite", {
      catalog: fakeCatalog(),
      config: { metrics: true, agent: { dataDir } },
    });
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const names = api.server.metrics!.registry.getMetricsAsArray().map((metric) => metric.name);
    const ours = names.filter((name) => name.startsWith("trebuchet_"));
    expect(ours.length).toBeGreaterThan(15);
    expect(ours.filter((name) => !readme.includes(`\`${name}\``))).toEqual([]);
  });
});

describe("metrics while PostgreSQL refuses connections", () => {
  it("still answer, without the recorded figures, saying the database is down", async () => {
    api = await startTestApi("postgres", { config: { metrics: true } });
    listener = await listenMetrics(api.server.metrics!, { host: "127.0.0.1", port: 0 });
    expect(sample(await scrape(), "trebuchet_metrics_database_up", {})).toBe(1);
    const outage = await takeDatabaseAway(api.store);
    try {
      const during = await scrape();
      expect(sample(during, "trebuchet_metrics_database_up", {})).toBe(0);
      expect(during.some((s) => s.name === "trebuchet_builds")).toBe(false);
      expect(sample(during, "process_resident_memory_bytes", {})).toBeGreaterThan(0);
    } finally {
      await outage.end();
    }
    expect(sample(await scrape(), "trebuchet_metrics_database_up", {})).toBe(1);
  });

  it("answer only GET /metrics, in the error envelope otherwise", async () => {
    api = await startTestApi("sqlite", { config: { metrics: true } });
    listener = await listenMetrics(api.server.metrics!, { host: "127.0.0.1", port: 0 });
    const other = await fetch(listener.url.replace("/metrics", "/core/v1/organizations"));
    expect(other.status).toBe(404);
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe("route_not_found");
    const post = await fetch(listener.url, { method: "POST", body: "x" });
    expect(post.status).toBe(404);
    expect(((await post.json()) as { error: { code: string } }).error.code).toBe("route_not_found");
  });
});
