/** Secrets at rest and in logs, tenant isolation, address races and hostile bodies, on both databases. */
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { Writable } from "node:stream";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { routePath } from "../../src/api/operation.js";
import { OPERATIONS } from "../../src/api/operations.js";
import { applyCatalog } from "../../src/catalog/apply.js";
import { createApiToken } from "../../src/catalog/accounts.js";
import { NO_LIMITS } from "../../src/lifecycle/index.js";
import { newId } from "../../src/store/index.js";
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

function spec(inner: string, hostname?: string): string {
  return `<VirtualMachineSpec><DataCenter by="permalink">lab-1</DataCenter><Resources><Package by="permalink">small-1</Package></Resources><DiskTemplate><DiskTemplate by="permalink">templates/trebuchet-demo</DiskTemplate></DiskTemplate>${inner}${hostname ? `<Hostname><Hostname>${hostname}</Hostname></Hostname>` : ""}</VirtualMachineSpec>`;
}

describe("secrets", () => {
  it("stores only token hashes, and never logs a token", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const api = await startTestApi("sqlite", { config: { logger: { level: "trace", stream: sink } } });
    try {
      await api.organization("acme");
      const { token } = await createApiToken(api.server.store.db, {
        subDomain: "acme",
        name: "t",
        role: "admin",
        scopes: [],
        allowedNetworks: [],
      });
      await api.call("GET", "/core/v1/data_centers", { token });
      await api.call("GET", `/core/v1/data_centers?token=x`, { token: token.slice(0, -1) + "Z" });
      await api.call("POST", BUILD, { token, rawBody: "{bad" });
      expect(lines.length).toBeGreaterThan(3);
      expect(lines.join("\n")).not.toContain(token);
      expect(lines.join("\n")).not.toContain(token.slice(4, 30));
      const dump = JSON.stringify(await api.server.store.db.selectFrom("api_tokens").selectAll().execute());
      expect(dump).not.toContain(token);
      expect(dump).not.toContain(token.slice(4));
    } finally {
      await api.dispose();
    }
  });
});

describe.each(DIALECTS)("tenant isolation on %s", (dialect) => {
  let api: TestApi;
  let tenants: Awaited<ReturnType<typeof withTenants>>;
  const globexObjects: Record<string, string> = {};

  beforeAll(async () => {
    api = await startTestApi(dialect);
    tenants = await withTenants(api);
    const db = api.server.store.db;
    const now = Math.floor(Date.now() / 1000);
    const dc = await db.selectFrom("data_centers").selectAll().executeTakeFirstOrThrow();
    // Globex owns one of everything that can be named in a spec or looked up by ID.
    globexObjects.vnet = newId("virtualNetwork");
    await db
      .insertInto("virtual_networks")
      .values({
        id: globexObjects.vnet,
        name: "secret",
        organization_id: tenants.globex,
        data_center_id: dc.id,
        created_at: now,
      })
      .execute();
    globexObjects.group = newId("virtualMachineGroup");
    await db
      .insertInto("virtual_machine_groups")
      .values({
        id: globexObjects.group,
        organization_id: tenants.globex,
        name: "secret",
        segregate: 0,
        auto_segregate: 0,
        created_at: now,
      })
      .execute();
    globexObjects.disk = newId("disk");
    await db
      .insertInto("disks")
      .values({
        id: globexObjects.disk,
        organization_id: tenants.globex,
        data_center_id: dc.id,
        name: "secret",
        size_in_gb: 1,
        storage_speed: "ssd",
        io_profile_id: null,
        file_system_type: null,
        virtual_machine_id: null,
        position: null,
        shared: 1,
        host_id: null,
        path: null,
        state: "ready",
        created_at: now,
      })
      .execute();
    const ip = await api.call("POST", "/core/v1/organizations/_/ip_addresses", {
      token: tenants.globexToken,
      body: {
        organization: { sub_domain: "globex" },
        network: { permalink: "lab-1-public" },
        version: "ipv4",
      },
    });
    globexObjects.ip = ip.json().ip_address.id;
    globexObjects.ipAddress = ip.json().ip_address.address;
    const key = await api.call("POST", "/core/v1/organizations/_/ssh_keys", {
      token: tenants.globexToken,
      body: {
        organization: { sub_domain: "globex" },
        ssh_key: {
          name: "secret",
          key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZ3gdbFhkCDUB8w0d5tp+wrW8AQZNvs0cY3vMyB7GIy secret@globex",
        },
      },
    });
    globexObjects.sshKey = key.json().ssh_key.id;
    const build = await api.call("POST", BUILD, {
      token: tenants.globexToken,
      body: { organization: { sub_domain: "globex" }, xml: WEB_XML },
    });
    globexObjects.build = build.json().virtual_machine_build.id;
    globexObjects.task = build.json().task.id;
    globexObjects.vm = (
      await db
        .selectFrom("virtual_machines")
        .select("id")
        .where("organization_id", "=", tenants.globex)
        .executeTakeFirstOrThrow()
    ).id;
    globexObjects.user = (await db.selectFrom("users").select("id").executeTakeFirstOrThrow()).id;
  });
  afterAll(async () => api?.dispose());

  /** Acme's answer for Globex's object must equal its answer for an ID that does not exist. */
  async function sameAsMissing(
    kind: string,
    make: (id: string) => { method: string; url: string; body?: unknown },
    missing: string,
  ) {
    const foreign = make(globexObjects[kind]!);
    const absent = make(missing);
    const a = await api.call(foreign.method, foreign.url, { token: tenants.acmeToken, body: foreign.body });
    const b = await api.call(absent.method, absent.url, { token: tenants.acmeToken, body: absent.body });
    expect(a.statusCode).toBe(b.statusCode);
    expect(a.body.replaceAll(globexObjects[kind]!, "ID")).toBe(b.body.replaceAll(missing, "ID"));
    expect(a.statusCode).toBeGreaterThanOrEqual(400);
  }

  const inSpec = (inner: (id: string) => string) => (id: string) => ({
    method: "POST",
    url: BUILD,
    body: { organization: { sub_domain: "acme" }, xml: spec(inner(id), "isolation") },
  });

  it.each([
    [
      "vnet",
      inSpec(
        (id) =>
          `<NetworkInterfaces><NetworkInterface><VirtualNetwork>${id}</VirtualNetwork></NetworkInterface></NetworkInterfaces>`,
      ),
      "vnet_AAAAAAAAAAAAAAAA",
    ],
    [
      "ip",
      inSpec(
        (id) =>
          `<NetworkInterfaces><NetworkInterface><Network by="permalink">lab-1-public</Network><IPAddressAllocation type="existing"><IPAddress>${id}</IPAddress></IPAddressAllocation></NetworkInterface></NetworkInterfaces>`,
      ),
      "ip_AAAAAAAAAAAAAAAA",
    ],
    ["group", inSpec((id) => `<Group>${id}</Group>`), "vmgrp_AAAAAAAAAAAAAAAA"],
    ["disk", inSpec((id) => `<SharedDisks><Disk>${id}</Disk></SharedDisks>`), "disk_AAAAAAAAAAAAAAAA"],
    [
      "user",
      inSpec((id) => `<AuthorizedKeys><Users><User>${id}</User></Users></AuthorizedKeys>`),
      "user_AAAAAAAAAAAAAAAA",
    ],
  ] as const)(
    "a spec naming another tenant's %s reads like one naming nothing",
    async (kind, make, missing) => {
      if (kind === "user") {
        // The user belongs to acme; globex's user for this case is one with no acme membership.
        const { createUser } = await import("../../src/catalog/accounts.js");
        globexObjects.user = (
          await createUser(api.server.store.db, {
            email: "spy@globex.test",
            memberships: [{ subDomain: "globex", role: "admin" }],
          })
        ).id;
      }
      await sameAsMissing(kind, make, missing);
    },
  );

  it("a spec naming another tenant's IP by address reads like an unknown address", async () => {
    const foreign = await api.call("POST", BUILD, {
      token: tenants.acmeToken,
      body: {
        organization: { sub_domain: "acme" },
        xml: spec(
          `<NetworkInterfaces><NetworkInterface><Network by="permalink">lab-1-public</Network><IPAddressAllocation type="existing"><IPAddress by="address">${globexObjects.ipAddress}</IPAddress></IPAddressAllocation></NetworkInterface></NetworkInterfaces>`,
          "iso2",
        ),
      },
    });
    const absent = await api.call("POST", BUILD, {
      token: tenants.acmeToken,
      body: {
        organization: { sub_domain: "acme" },
        xml: spec(
          `<NetworkInterfaces><NetworkInterface><Network by="permalink">lab-1-public</Network><IPAddressAllocation type="existing"><IPAddress by="address">192.0.2.249</IPAddress></IPAddressAllocation></NetworkInterface></NetworkInterfaces>`,
          "iso2",
        ),
      },
    });
    expect(foreign.body.replaceAll(globexObjects.ipAddress!, "ADDR")).toBe(
      absent.body.replaceAll("192.0.2.249", "ADDR"),
    );
  });

  it.each([
    [
      "vm",
      (id: string) => ({ method: "GET", url: `/core/v1/virtual_machines/_?virtual_machine[id]=${id}` }),
      "vm_AAAAAAAAAAAAAAAA",
    ],
    [
      "build",
      (id: string) => ({ method: "GET", url: `/core/v1/virtual_machines/builds/${id}` }),
      "vmbuild_AAAAAAAAAAAAAAAA",
    ],
    ["task", (id: string) => ({ method: "GET", url: `/core/v1/tasks/${id}` }), "task_AAAAAAAAAAAAAAAA"],
    ["ip", (id: string) => ({ method: "GET", url: `/core/v1/ip_addresses/${id}` }), "ip_AAAAAAAAAAAAAAAA"],
    [
      "sshKey",
      (id: string) => ({ method: "DELETE", url: `/core/v1/ssh_keys/${id}` }),
      "sshkey_AAAAAAAAAAAAAAAA",
    ],
    [
      "vnet",
      (id: string) => ({ method: "GET", url: `/core/v1/virtual_networks/${id}` }),
      "vnet_AAAAAAAAAAAAAAAA",
    ],
  ] as const)(
    "looking up another tenant's %s by ID reads like a missing one",
    async (kind, make, missing) => {
      await sameAsMissing(kind, make, missing);
    },
  );

  it("lists show only the caller's objects", async () => {
    const vms = await api.call(
      "GET",
      "/core/v1/organizations/_/virtual_machines?organization[sub_domain]=acme",
      { token: tenants.acmeToken },
    );
    expect(vms.json().virtual_machines.map((v: any) => v.id)).not.toContain(globexObjects.vm);
    const ips = await api.call("GET", "/core/v1/organizations/_/ip_addresses?organization[sub_domain]=acme", {
      token: tenants.acmeToken,
    });
    expect(ips.json().ip_addresses.map((i: any) => i.id)).not.toContain(globexObjects.ip);
    const keys = await api.call("GET", "/core/v1/organizations/_/ssh_keys?organization[sub_domain]=acme", {
      token: tenants.acmeToken,
    });
    expect(keys.json().ssh_keys.map((k: any) => k.id)).not.toContain(globexObjects.sshKey);
    const networks = await api.call(
      "GET",
      "/core/v1/organizations/_/available_networks?organization[sub_domain]=acme",
      { token: tenants.acmeToken },
    );
    expect(networks.json().virtual_networks).toEqual([]);
  });
});

describe.each(DIALECTS)("address races on %s", (dialect) => {
  it("200 concurrent builds for the last 50 addresses: exactly 50 accepted, no address twice", async () => {
    const catalog = withScarceNetwork(EXAMPLE_CATALOG, 101, 150);
    const api = await startTestApi(dialect, {
      catalog,
      // The race is for the network's addresses, not the organization's limits.
      config: { rateLimits: { read: 10_000, write: 10_000, build: 10_000 }, organizationLimits: NO_LIMITS },
    });
    try {
      await applyCatalog(api.server.store.db, catalog);
      await api.organization("acme");
      const token = await api.token("acme");
      const xml = spec(
        `<NetworkInterfaces><NetworkInterface><Network by="permalink">scarce</Network><IPAddressAllocation type="new"><Version>4</Version></IPAddressAllocation></NetworkInterface></NetworkInterfaces>`,
      );
      const responses = await Promise.all(
        Array.from({ length: 200 }, () =>
          api.call("POST", BUILD, { token, body: { organization: { sub_domain: "acme" }, xml } }),
        ),
      );
      const statuses = responses.map((r) => r.statusCode);
      expect(statuses.filter((s) => s === 201)).toHaveLength(50);
      expect(statuses.filter((s) => s === 422)).toHaveLength(150);
      for (const r of responses.filter((r) => r.statusCode === 422))
        expect(r.json().error.detail.errors[0]).toMatch(/no free IPv4 address/);
      const rows = await api.server.store.db
        .selectFrom("ip_addresses")
        .innerJoin("networks", "networks.id", "ip_addresses.network_id")
        .select(["ip_addresses.address", "ip_addresses.allocation_id"])
        .where("networks.permalink", "=", "scarce")
        .execute();
      expect(rows).toHaveLength(50);
      expect(new Set(rows.map((r) => r.address)).size).toBe(50);
      expect(new Set(rows.map((r) => r.allocation_id)).size).toBe(50);
      const builds = Number(
        (await sql<{ n: number }>`select count(*) as n from builds`.execute(api.server.store.db)).rows[0]!.n,
      );
      expect(builds).toBe(50);
    } finally {
      await api.dispose();
    }
  }, 120_000);
});

describe.each(DIALECTS)("hostile bodies on %s", (dialect) => {
  let api: TestApi;
  let token: string;
  beforeAll(async () => {
    api = await startTestApi(dialect, {
      config: { rateLimits: { read: 100_000, write: 100_000, build: 100_000 } },
    });
    await api.organization("acme");
    token = await api.token("acme");
  });
  afterAll(async () => api?.dispose());

  const corpus = [
    `<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><VirtualMachineSpec><Name>&b;</Name></VirtualMachineSpec>`,
    `<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><VirtualMachineSpec><Description>&xxe;</Description></VirtualMachineSpec>`,
    "<a>".repeat(20_000),
    `<VirtualMachineSpec>${"<x/>".repeat(20_000)}</VirtualMachineSpec>`,
    `<VirtualMachineSpec><Name>${"a".repeat(100_000)}</Name></VirtualMachineSpec>`,
    "<VirtualMachineSpec><Name>\ud800</Name></VirtualMachineSpec>",
    "<VirtualMachineSpec><Name>a\u0000b</Name></VirtualMachineSpec>",
    "[".repeat(50_000),
    '{"zone": {"id": [1, 2, {"x": null}]}}',
    "name: &a [*a]",
    `<VirtualMachineSpec><__proto__/><constructor/><valueOf>1</valueOf><Zone toString="x">z</Zone><Tags><hasOwnProperty/></Tags></VirtualMachineSpec>`,
    '{"constructor": 1, "resources": {"valueOf": 2}, "zone": {"toString": "x"}}',
    "hasOwnProperty: x\nauthorized_keys:\n  all_users: toString\n",
    "",
    "   ",
  ];

  it.each(corpus.map((xml, i) => [i, xml]))("corpus entry %i is refused with a 4xx", async (_i, xml) => {
    const response = await api.call("POST", BUILD, {
      token,
      body: { organization: { sub_domain: "acme" }, xml },
    });
    expect(response.statusCode).toBeGreaterThanOrEqual(400);
    expect(response.statusCode).toBeLessThan(500);
    expect(response.json().error.code).toMatch(/invalid_spec_xml|validation_error/);
  });

  it("arbitrary JSON bodies and query strings never produce a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 4 }), fc.string({ maxLength: 60 }), async (body, query) => {
        const response = await api.call("POST", `${BUILD}?${encodeURI(query)}`, {
          token,
          rawBody: JSON.stringify(body),
        });
        expect(response.statusCode, response.body).toBeLessThan(500);
        expect(response.json().error ?? response.json().task).toBeDefined();
      }),
      { numRuns: 150 },
    );
  });

  it("arbitrary raw bytes as a body never produce a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 200 }), async (raw) => {
        const response = await api.call("POST", BUILD, { token, rawBody: raw });
        expect(response.statusCode).toBeLessThan(500);
      }),
      { numRuns: 150 },
    );
  });

  it("arguments named like Object.prototype members never produce a 5xx, on any operation", async () => {
    const failures: string[] = [];
    let handled = 0;
    for (const operation of OPERATIONS) {
      if (operation.name.endsWith("_events")) continue; // a stream: covered in its own tests
      const path = "/core/v1" + routePath(operation.path).replace(/:[a-z_]+/g, "_");
      for (const name of ["__proto__", "constructor", "toString", "valueOf", "hasOwnProperty", "prototype"]) {
        const requests: { url: string; rawBody?: string }[] =
          operation.method === "GET" || operation.method === "DELETE"
            ? [{ url: `${path}?${name}[${name}]=1&organization[sub_domain]=acme&${name}=x` }]
            : [
                `{"${name}": {"id": "x"}}`,
                `{"organization": {"${name}": "acme"}}`,
                `{"organization": {"sub_domain": "acme"}, "${name}": {"${name}": {"${name}": "x"}}}`,
                `{"organization": {"sub_domain": "acme"}, "properties": {"${name}": "x", "name": {"${name}": 1}}}`,
              ].map((rawBody) => ({ url: path, rawBody }));
        for (const { url, rawBody } of requests) {
          const response = await api.call(operation.method, url, { token, ...(rawBody ? { rawBody } : {}) });
          if (response.statusCode >= 500)
            failures.push(`${operation.method} ${url} ${rawBody ?? ""}: ${response.body}`);
          if (response.statusCode !== 404) handled++;
        }
      }
    }
    expect(failures).toEqual([]);
    // Most requests got past routing and lookups to the operations themselves.
    expect(handled).toBeGreaterThan(150);
  });

  it("lookups with prototype-polluting keys are refused cleanly", async () => {
    for (const url of [
      "/core/v1/organizations/_?__proto__[id]=x",
      "/core/v1/organizations/_?organization[__proto__]=x",
      "/core/v1/organizations/_?constructor[prototype][x]=1",
      "/core/v1/organizations/_?organization[id][]=a&organization[id][]=b",
      "/core/v1/organizations/_?" + "a[b][c][d][e][f][g]=1".repeat(3),
    ]) {
      const response = await api.call("GET", url, { token });
      expect(response.statusCode, url).toBeGreaterThanOrEqual(400);
      expect(response.statusCode, url).toBeLessThan(500);
    }
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});
