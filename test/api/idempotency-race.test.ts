/**
 * Idempotency under concurrency: 50 identical build requests with one Idempotency-Key,
 * sent at once to one API process and split across two. Exactly one build is made, and
 * every request answers 201 with it: never a validation error caused by that build.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type RunningServer } from "../../src/server.js";
import { startTestApi, withTenants, type TestApi } from "../support/api.js";
import { DIALECTS } from "../support/stores.js";

const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");
const BUILD = "/core/v1/organizations/_/virtual_machines/build_from_spec";

describe.each(DIALECTS)("idempotency races on %s", (dialect) => {
  let api: TestApi;
  let other: RunningServer;
  let token: string;

  beforeAll(async () => {
    api = await startTestApi(dialect);
    token = (await withTenants(api)).acmeToken;
    // A second API process on the same database.
    other = await createServer({ store: api.store.options, baseDomain: api.baseDomain, role: "api" });
  });

  afterAll(async () => {
    await other.stop();
    await api.dispose();
  });

  async function race(hostname: string, servers: RunningServer[]) {
    const body = JSON.stringify({
      organization: { sub_domain: "acme" },
      xml: WEB_XML.replace("web-01", hostname),
    });
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        servers[i % servers.length]!.app.inject({
          method: "POST",
          url: BUILD,
          headers: {
            authorization: `Bearer ${token}`,
            "content-type": "application/json",
            "idempotency-key": `race-${hostname}`,
          },
          payload: body,
        }),
      ),
    );
    const vms = await api.server.store.db
      .selectFrom("virtual_machines")
      .select("id")
      .where("hostname", "=", hostname)
      .execute();
    return { responses, vms };
  }

  for (const [name, servers] of [
    ["one API process", () => [api.server]],
    ["two API processes", () => [api.server, other]],
  ] as const) {
    it(`50 at once to ${name}: one build, fifty 201s naming it, 49 replays`, async () => {
      const { responses, vms } = await race(`race-${name.split(" ")[0]}`, servers());
      expect(responses.map((r) => r.statusCode)).toEqual(Array(50).fill(201));
      expect(vms).toHaveLength(1);
      const builds = new Set(responses.map((r) => (r.json() as { build: { id: string } }).build.id));
      expect(builds.size).toBe(1);
      expect(responses.filter((r) => r.headers["idempotent-replayed"] === "true")).toHaveLength(49);
    });
  }
});
