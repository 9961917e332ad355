/**
 * validate_spec is a dry run: it plans and even reserves (addresses, hostname, shared
 * disks, tags) inside a transaction, and that transaction is always rolled back. Here the
 * whole database is compared before and after a series of validate_spec calls, on SQLite
 * and PostgreSQL: the row count of every table the database holds, and the content of
 * every row.
 */
import { readFileSync } from "node:fs";
import { sql, type Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addressKey } from "../../src/catalog/addresses.js";
import { createUser } from "../../src/catalog/accounts.js";
import { newId, type Database, type DialectName } from "../../src/store/index.js";
import {
  EXAMPLE_CATALOG,
  startTestApi,
  withScarceNetwork,
  withTenants,
  type TestApi,
} from "../support/api.js";
import { DIALECTS } from "../support/stores.js";

const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");
const EVERY_ELEMENT_XML = readFileSync(new URL("../../examples/every-element.xml", import.meta.url), "utf8");
const VALIDATE = "/core/v1/organizations/_/virtual_machines/validate_spec";
const BUILD = "/core/v1/organizations/_/virtual_machines/build_from_spec";

/** A spec on the example catalog whose one interface wants an address of the "scarce" network. */
function scarceSpec(hostname: string): string {
  return `<VirtualMachineSpec><DataCenter by="permalink">lab-1</DataCenter><Resources><Package by="permalink">small-1</Package></Resources><DiskTemplate><DiskTemplate by="permalink">templates/trebuchet-demo</DiskTemplate></DiskTemplate><NetworkInterfaces><NetworkInterface><Network by="permalink">scarce</Network><IPAddressAllocation type="new"><Version>4</Version></IPAddressAllocation></NetworkInterface></NetworkInterfaces><Hostname><Hostname>${hostname}</Hostname></Hostname><Tags><Tag>scarce-only</Tag></Tags></VirtualMachineSpec>`;
}

/** Every table of the database, read from the database's own catalog (not from our schema types). */
async function tableNames(db: Kysely<Database>, dialect: DialectName): Promise<string[]> {
  const result =
    dialect === "sqlite"
      ? await sql<{
          name: string;
        }>`select name from sqlite_master where type = 'table' order by name`.execute(db)
      : await sql<{
          name: string;
        }>`select table_name as name from information_schema.tables where table_schema = current_schema() and table_type = 'BASE TABLE' order by table_name`.execute(
          db,
        );
  return result.rows.map((r) => r.name);
}

/**
 * Every row of every table, as canonical text (keys sorted, rows sorted), so two
 * snapshots compare table by table. `omit` leaves columns out, by table.
 */
async function snapshot(
  db: Kysely<Database>,
  dialect: DialectName,
  omit: Record<string, string[]> = {},
): Promise<Record<string, string[]>> {
  const tables: Record<string, string[]> = {};
  for (const table of await tableNames(db, dialect)) {
    const { rows } = await sql<Record<string, unknown>>`select * from ${sql.table(table)}`.execute(db);
    const left = omit[table] ?? [];
    tables[table] = rows
      .map((row) =>
        JSON.stringify(
          Object.keys(row)
            .filter((k) => !left.includes(k))
            .sort()
            .map((k) => [k, row[k]]),
          (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v),
        ),
      )
      .sort();
  }
  return tables;
}

const counts = (tables: Record<string, string[]>) =>
  Object.fromEntries(Object.entries(tables).map(([table, rows]) => [table, rows.length]));

/** The tables the issue names: what a build reserves, creates or records. */
const CONTENT_TABLES = ["ip_addresses", "virtual_machines", "tags", "idempotency_keys"];

/**
 * Every table is compared, the migrator's own (kysely_migration, kysely_migration_lock)
 * too: nothing here can change them, so there is no reason to leave them out. Left out
 * is the bookkeeping of authentication, which runs before any operation and is not
 * validate_spec's doing:
 *
 * - rate_limit_counters: every authenticated request is counted (src/auth/rate-limit.ts,
 *   RateLimiter.hit, before any operation runs), in batches written at most every 100 ms
 *   or when the allowance runs low, into a row per identity, bucket and one-minute
 *   window; windows two minutes old are swept. validate_spec is in the "read" bucket, so
 *   it must be counted, or it could be called without limit. Its rows may gain counts
 *   and, across a minute boundary, a new window; so this table is checked on its own:
 *   only the calling token's "read" rows may change, no other identity's or bucket's,
 *   and by one row at most.
 * - api_tokens.last_used_at / last_used_ip: written by authentication at most once a
 *   minute per token (src/auth/authenticate.ts); a slow run may cross that minute.
 */
const RATE_LIMITS = "rate_limit_counters";
const OMIT = { api_tokens: ["last_used_at", "last_used_ip"] };

function withoutRateLimits(tables: Record<string, string[]>): Record<string, string[]> {
  const { [RATE_LIMITS]: _counters, ...rest } = tables;
  return rest;
}

describe.each(DIALECTS)("validate_spec writes nothing on %s", (dialect) => {
  let api: TestApi;
  let token: string;
  let tokenId: string;
  let db: Kysely<Database>;

  beforeAll(async () => {
    // A network with exactly one address, taken below: a spec that wants one is "exhausted".
    const catalog = withScarceNetwork(EXAMPLE_CATALOG, 101, 101);
    // examples/every-element.xml sets a "timezone" option on the demo template.
    catalog.disk_templates[0]!.versions[0]!.options.push({
      name: "timezone",
      type: "Text",
      label: "Time zone",
      description: null,
      required: false,
      placeholder: null,
      prefill: "UTC",
      pattern: null,
    });
    api = await startTestApi(dialect, { catalog });
    db = api.server.store.db;
    const tenants = await withTenants(api);
    token = tenants.acmeToken;
    const acme = tenants.acme;
    tokenId = (
      await db
        .selectFrom("api_tokens")
        .select("id")
        .where("organization_id", "=", acme)
        .executeTakeFirstOrThrow()
    ).id;
    const now = Math.floor(Date.now() / 1000);
    const dc = await db.selectFrom("data_centers").selectAll().executeTakeFirstOrThrow();

    // What examples/every-element.xml names, so that it validates, and its dry run claims an
    // existing address, attaches a shared disk, and creates tags and backup policies.
    await createUser(db, { email: "ops@example.org", memberships: [{ subDomain: "acme", role: "admin" }] });
    await db
      .insertInto("virtual_networks")
      .values({
        id: "vnet_Zr5Kd2Wq8NcXb1Ty",
        name: "ci",
        organization_id: acme,
        data_center_id: dc.id,
        created_at: now,
      })
      .execute();
    await db
      .insertInto("virtual_machine_groups")
      .values({
        id: newId("virtualMachineGroup"),
        organization_id: acme,
        name: "ci-runners",
        segregate: 0,
        auto_segregate: 0,
        created_at: now,
      })
      .execute();
    await db
      .insertInto("disks")
      .values({
        id: newId("disk"),
        organization_id: acme,
        data_center_id: dc.id,
        name: "shared-assets",
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
    await db
      .insertInto("isos")
      .values({
        id: "iso_Wd6Pq1Zx9Mk3Lr8B",
        name: "installer",
        organization_id: acme,
        operating_system_name: null,
        path: "installer.iso",
        created_at: now,
      })
      .execute();
    const publicNetwork = await db
      .selectFrom("networks")
      .selectAll()
      .where("permalink", "=", "lab-1-public")
      .executeTakeFirstOrThrow();
    const publicV4 = await db
      .selectFrom("subnets")
      .selectAll()
      .where("network_id", "=", publicNetwork.id)
      .where("ip_version", "=", 4)
      .executeTakeFirstOrThrow();
    await db
      .insertInto("ip_addresses")
      .values({
        id: newId("ipAddress"),
        organization_id: acme,
        network_id: publicNetwork.id,
        subnet_id: publicV4.id,
        ip_version: 4,
        address: "192.0.2.200",
        address_key: addressKey("192.0.2.200"),
        reverse_dns: null,
        vip: 0,
        label: null,
        allocation_type: null,
        allocation_id: null,
        created_at: now,
      })
      .execute();

    // Builds already accepted, so that the tables compared hold rows a dry run could touch:
    // one takes the scarce network's only address and records an idempotency key, one
    // creates the tags "web" and "demo" that web.xml names.
    const filler = await api.call("POST", BUILD, {
      token,
      headers: { "idempotency-key": "filler-build" },
      body: { organization: { sub_domain: "acme" }, xml: scarceSpec("filler") },
    });
    expect(filler.statusCode, filler.body).toBe(201);
    const tagged = await api.call("POST", BUILD, {
      token,
      body: { organization: { sub_domain: "acme" }, xml: WEB_XML.replace("web-01", "web-00") },
    });
    expect(tagged.statusCode, tagged.body).toBe(201);
    // Another identity's counters, which validate_spec must not touch either.
    expect((await api.call("GET", "/core/v1/data_centers", { token: tenants.globexToken })).statusCode).toBe(
      200,
    );
  });
  afterAll(async () => api?.dispose());

  const validate = (xml: string, headers: Record<string, string> = {}) =>
    api.call("POST", VALIDATE, { token, headers, body: { organization: { sub_domain: "acme" }, xml } });

  it("leaves every table's rows as they were, whatever the spec", async () => {
    // The first authenticated read of the token settles its last-used time and read counter.
    expect((await api.call("GET", "/core/v1/data_centers", { token })).statusCode).toBe(200);
    const before = await snapshot(db, dialect, OMIT);
    const rateLimitRowsBefore = await db.selectFrom(RATE_LIMITS).selectAll().execute();
    expect(Object.keys(before).length).toBeGreaterThanOrEqual(30);
    for (const table of [...CONTENT_TABLES, "disks", "disk_backup_policies", RATE_LIMITS])
      expect(Object.keys(before)).toContain(table);
    for (const table of CONTENT_TABLES) expect(before[table]!.length, table).toBeGreaterThan(0);

    // The calls first, their answers checked after the database: with a write that is not
    // rolled back, later answers change too (a hostname is taken), and the database says why.
    const answers = {
      // Valid: its addresses are reserved in the dry run; its tags exist already.
      web: await validate(WEB_XML),
      // Valid, every element: the dry run also claims an existing address, attaches a
      // shared disk and creates two tags and backup policies.
      every: await validate(EVERY_ELEMENT_XML),
      // Invalid: a syntax error, and a well-formed spec naming what does not exist.
      broken: await validate("<VirtualMachineSpec><Name>unclosed</VirtualMachineSpec>"),
      unknown: await validate(WEB_XML.replace("small-1", "no-such-package")),
      // Exhausted: the dry run has written the VM and its interface when the address
      // allocation fails.
      exhausted: await validate(scarceSpec("probe")),
      // An Idempotency-Key, twice with two bodies: no response is recorded under it.
      keyed: await validate(WEB_XML, { "idempotency-key": "validate-key" }),
      keyedAgain: await validate(EVERY_ELEMENT_XML, { "idempotency-key": "validate-key" }),
    };

    const after = await snapshot(db, dialect, OMIT);
    // Same tables, and the same number of rows in each (the rate limit counters: below).
    expect(Object.keys(after)).toEqual(Object.keys(before));
    expect(counts(withoutRateLimits(after))).toEqual(counts(withoutRateLimits(before)));
    // The same rows: first in the tables the issue names, then in every table.
    for (const table of CONTENT_TABLES) expect(after[table], table).toEqual(before[table]);
    for (const table of Object.keys(withoutRateLimits(before)))
      expect(after[table], table).toEqual(before[table]);

    // The rate limit counters: only the calling token's "read" rows may differ.
    const others = (rows: typeof rateLimitRowsBefore) =>
      rows
        .filter((r) => !(r.identity_id === tokenId && r.bucket === "read"))
        .map((r) => JSON.stringify([r.identity_id, r.bucket, String(r.window_start), String(r.count)]))
        .sort();
    const rateLimitRowsAfter = await db.selectFrom(RATE_LIMITS).selectAll().execute();
    expect(others(rateLimitRowsBefore).length).toBeGreaterThanOrEqual(2);
    expect(others(rateLimitRowsAfter)).toEqual(others(rateLimitRowsBefore));
    // At most one more row: the token's read window, if a minute has turned meanwhile.
    expect(rateLimitRowsAfter.length - rateLimitRowsBefore.length).toBeGreaterThanOrEqual(0);
    expect(rateLimitRowsAfter.length - rateLimitRowsBefore.length).toBeLessThanOrEqual(1);

    // Each call went as far as intended: the valid ones through the whole dry run.
    for (const [name, answer] of Object.entries(answers)) expect(answer.statusCode, name).toBe(200);
    const { web, every, broken, unknown, exhausted, keyed, keyedAgain } = answers;
    expect(web.json()).toMatchObject({ valid: true, errors: [], plan: { hostname: "web-01" } });
    expect(web.json().plan.interfaces[0].ip_addresses).toHaveLength(2);
    expect(every.json()).toMatchObject({ valid: true, errors: [], plan: { hostname: "ci-runner-07" } });
    expect(every.json().plan.shared_disks).toHaveLength(1);
    expect(every.json().plan.interfaces[0].ip_addresses.map((a: any) => a.address)).toContain("192.0.2.200");
    expect(every.json().plan.tags).toEqual(["ci", "ephemeral"]);
    expect(broken.json()).toMatchObject({ valid: false, plan: null });
    expect(broken.json().errors.length).toBeGreaterThan(0);
    expect(unknown.json()).toMatchObject({ valid: false, plan: null });
    expect(unknown.json().errors.length).toBeGreaterThan(0);
    expect(exhausted.json()).toMatchObject({
      valid: false,
      plan: null,
      errors: [{ code: "unavailable", message: "no free IPv4 address is left on this network" }],
    });
    expect(keyed.json()).toMatchObject({ valid: true });
    expect(keyedAgain.json()).toMatchObject({ valid: true });
    expect(keyedAgain.headers["idempotent-replayed"]).toBeUndefined();
  });

  it("leaves an Idempotency-Key it was sent free for a build", async () => {
    const built = await api.call("POST", BUILD, {
      token,
      headers: { "idempotency-key": "validate-key" },
      body: { organization: { sub_domain: "acme" }, xml: WEB_XML },
    });
    expect(built.statusCode, built.body).toBe(201);
    expect(built.headers["idempotent-replayed"]).toBeUndefined();
    expect(built.json()).toMatchObject({ hostname: "web-01" });
  });
});
