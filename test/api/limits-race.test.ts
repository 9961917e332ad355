/**
 * Racing for the last of a limit, on both databases, through two API servers on one
 * database (each with its own connections, as two processes have: on SQLite, two
 * connections to the file; on PostgreSQL, two pools): two organizations each send many builds at once with room for only a few,
 * and never end up over their limit; and both race for the last addresses of a network
 * they share, which never gives one address twice.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type RunningServer } from "../../src/server.js";
import {
  EXAMPLE_CATALOG,
  startTestApi,
  withScarceNetwork,
  withTenants,
  type TestApi,
} from "../support/api.js";
import { DIALECTS } from "../support/stores.js";

const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");
const BUILD = "/core/v1/organizations/_/virtual_machines/build_from_spec";
const LIMITS = {
  virtual_machines: 4,
  virtual_machine_memory: 1000,
  disk_space: 10_000,
  unallocated_ip_addresses: 10,
};
const RATES = { read: 100_000, write: 100_000, build: 100_000 };

/** A spec with one IPv4 address on the shared network that has six free addresses. */
function scarceSpec(hostname: string): string {
  return WEB_XML.replace(
    /<NetworkInterfaces>[\s\S]*<\/NetworkInterfaces>/,
    '<NetworkInterfaces><NetworkInterface><Network by="permalink">scarce</Network><IPAddressAllocation type="new"><Version>4</Version></IPAddressAllocation></NetworkInterface></NetworkInterfaces>',
  ).replace("web-01", hostname);
}

describe.each(DIALECTS)("limit races on %s", (dialect) => {
  let api: TestApi;
  let other: RunningServer;
  let tokens: Record<"acme" | "globex", string>;
  let ids: Record<"acme" | "globex", string>;

  beforeAll(async () => {
    const catalog = withScarceNetwork(EXAMPLE_CATALOG, 201, 206);
    const config = { organizationLimits: LIMITS, rateLimits: RATES };
    api = await startTestApi(dialect, { catalog, config });
    const tenants = await withTenants(api);
    tokens = { acme: tenants.acmeToken, globex: tenants.globexToken };
    ids = { acme: tenants.acme, globex: tenants.globex };
    other = await createServer({
      store: api.store.options,
      baseDomain: api.baseDomain,
      role: "api",
      ...config,
    });
  });

  afterAll(async () => {
    await other.stop();
    await api.dispose();
  });

  /** Sends every request at once, alternating between the two API servers. */
  function sendAll(requests: { org: "acme" | "globex"; xml: string }[]) {
    return Promise.all(
      requests.map(({ org, xml }, i) =>
        (i % 2 === 0 ? api.server : other).app.inject({
          method: "POST",
          url: BUILD,
          headers: { authorization: `Bearer ${tokens[org]}`, "content-type": "application/json" },
          payload: JSON.stringify({ organization: { sub_domain: org }, xml }),
        }),
      ),
    );
  }

  const liveVms = (organizationId: string) =>
    api.server.store.db
      .selectFrom("virtual_machines")
      .select("id")
      .where("organization_id", "=", organizationId)
      .where("purged_at", "is", null)
      .execute();

  it("two organizations, 20 builds each at once for 4 places each: exactly 4 each, the rest 403", async () => {
    const requests = Array.from({ length: 40 }, (_, i) => {
      const org = i % 4 < 2 ? ("acme" as const) : ("globex" as const);
      return { org, xml: WEB_XML.replace("web-01", `race-${i}`) };
    });
    const responses = await sendAll(requests);
    for (const org of ["acme", "globex"] as const) {
      const mine = responses.filter((_, i) => requests[i]!.org === org);
      const statuses = mine.map((r) => r.statusCode);
      expect(
        statuses.filter((s) => s === 201),
        `${org}: ${JSON.stringify(statuses)}`,
      ).toHaveLength(4);
      expect(
        statuses.filter((s) => s === 403),
        `${org}: ${JSON.stringify(statuses)}`,
      ).toHaveLength(16);
      for (const refused of mine.filter((r) => r.statusCode === 403)) {
        const error = refused.json().error;
        expect(error.code).toBe("resource_creation_restricted");
        expect(error.detail.limits[0]).toMatchObject({ name: "virtual_machines", limit: 4, current: 4 });
      }
      expect(await liveVms(ids[org])).toHaveLength(4);
    }
  }, 120_000);

  it("both organizations racing for a shared network's last 6 addresses: 6 builds, no address twice", async () => {
    // Room for more VMs, so that only the network's pool is short.
    for (const id of Object.values(ids))
      await api.server.store.db
        .insertInto("organization_limits")
        .values({ organization_id: id, virtual_machines: 100, updated_at: 0 })
        .onConflict((oc) => oc.column("organization_id").doUpdateSet({ virtual_machines: 100 }))
        .execute();
    const requests = Array.from({ length: 24 }, (_, i) => ({
      org: i % 2 === 0 ? ("acme" as const) : ("globex" as const),
      xml: scarceSpec(`scarce-${i}`),
    }));
    const responses = await sendAll(requests);
    const statuses = responses.map((r) => r.statusCode);
    expect(
      statuses.filter((s) => s === 201),
      JSON.stringify(statuses),
    ).toHaveLength(6);
    expect(statuses.filter((s) => s === 422)).toHaveLength(18);
    const rows = await api.server.store.db
      .selectFrom("ip_addresses")
      .innerJoin("networks", "networks.id", "ip_addresses.network_id")
      .select(["ip_addresses.address", "ip_addresses.allocation_id"])
      .where("networks.permalink", "=", "scarce")
      .execute();
    expect(rows).toHaveLength(6);
    expect(new Set(rows.map((r) => r.address)).size).toBe(6);
    expect(new Set(rows.map((r) => r.allocation_id)).size).toBe(6);
  }, 120_000);
});
