/** /healthz and /readyz: without credentials, in JSON, with the reason when not ready. Both databases. */
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentCheck, RECONCILE_STALE_MS } from "../../src/api/health.js";
import { startTestApi, type TestApi } from "../support/api.js";
import { takeDatabaseAway } from "../support/outages.js";
import { DIALECTS } from "../support/stores.js";

describe("the host agent's readiness", () => {
  const now = 1_000_000_000;
  it("is ready when it reconciled within three rounds", () => {
    expect(agentCheck({ running: true, lastReconciledAt: now - 40_000 }, now)).toEqual({
      name: "host_agent",
      ok: true,
      detail: "reconciled 40 s ago",
    });
  });
  it("is not ready when it has not reconciled for longer, or never, or waits for its host", () => {
    expect(agentCheck({ running: true, lastReconciledAt: now - RECONCILE_STALE_MS - 1 }, now)).toMatchObject({
      ok: false,
      detail: "the host agent last reconciled its host 90 s ago",
    });
    expect(agentCheck({ running: true, lastReconciledAt: undefined }, now).ok).toBe(false);
    expect(agentCheck({ running: false, lastReconciledAt: undefined }, now)).toMatchObject({
      ok: false,
      detail: "the host agent waits for its host in the catalog",
    });
  });
});

describe.each(DIALECTS)("health endpoints on %s", (dialect) => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi(dialect);
  });
  afterAll(() => api.dispose());

  it("GET /healthz answers 200 without credentials", async () => {
    const response = await api.call("GET", "/healthz");
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: "alive" });
    expect(response.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("GET /readyz answers 200 with each check when the database answers and its schema is current", async () => {
    const response = await api.call("GET", "/readyz");
    expect(response.statusCode, response.body).toBe(200);
    const body = response.json();
    expect(body.status).toBe("ready");
    expect(body.checks.map((c: { name: string; ok: boolean }) => [c.name, c.ok])).toEqual([
      ["database", true],
      ["migrations", true],
      ["draining", true],
    ]);
  });

  it("a migration not applied makes it 503 service_unavailable, naming it", async () => {
    const db = api.server.store.db;
    const name = "0008-organization-limits";
    const [row] = (
      await sql<{
        name: string;
        timestamp: string;
      }>`select * from kysely_migration where name = ${name}`.execute(db)
    ).rows;
    await sql`delete from kysely_migration where name = ${name}`.execute(db);
    try {
      const response = await api.call("GET", "/readyz");
      expect(response.statusCode).toBe(503);
      const error = response.json().error;
      expect(error.code).toBe("service_unavailable");
      expect(error.detail.details).toBe(`not ready: migrations: not applied: ${name}`);
    } finally {
      await sql`insert into kysely_migration (name, timestamp) values (${row!.name}, ${row!.timestamp})`.execute(
        db,
      );
    }
    expect((await api.call("GET", "/readyz")).statusCode).toBe(200);
  });

  it("while draining, /readyz is 503 and /healthz still 200", async () => {
    api.server.api.startDraining();
    const ready = await api.call("GET", "/readyz");
    expect(ready.statusCode).toBe(503);
    expect(ready.json().error.detail.details).toBe("the server is shutting down");
    expect((await api.call("GET", "/healthz")).statusCode).toBe(200);
  });
});

describe("health endpoints when PostgreSQL is away", () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi("postgres");
  });
  afterAll(() => api.dispose());

  it("GET /readyz is 503 naming the database, within its timeout; /healthz stays 200", async () => {
    const outage = await takeDatabaseAway(api.store);
    try {
      const started = Date.now();
      const response = await api.call("GET", "/readyz");
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(response.statusCode).toBe(503);
      expect(response.json().error.detail.details).toMatch(/^not ready: database: /);
      expect((await api.call("GET", "/healthz")).statusCode).toBe(200);
    } finally {
      await outage.end();
    }
    expect((await api.call("GET", "/readyz")).statusCode).toBe(200);
  });
});
