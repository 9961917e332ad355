/**
 * Organization limits, Katapult's way: GET policy_limits and policy (limit and current
 * use), defaults from the configuration, an operator's own limits per organization, and
 * every build and allocation refused with 403 resource_creation_restricted past a limit;
 * caps on what one spec may ask for. Both databases.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setOrganizationLimits } from "../../src/lifecycle/index.js";
import { startTestApi, withTenants, type TestApi } from "../support/api.js";
import { schemaErrors } from "../support/openapi.js";
import { DIALECTS } from "../support/stores.js";

const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");
const BUILD = "/core/v1/organizations/_/virtual_machines/build_from_spec";

/** The configured defaults of this test's server. */
const DEFAULTS = {
  virtual_machines: 2,
  virtual_machine_memory: 4,
  disk_space: 20,
  unallocated_ip_addresses: 2,
};

interface LimitDetail {
  errors: string[];
  limits: { name: string; limit: number; current: number; requested: number; unit: string | null }[];
}

describe.each(DIALECTS)("organization limits on %s", (dialect) => {
  let api: TestApi;
  let token: string;
  let globexToken: string;
  let ids: { acme: string; globex: string };

  beforeAll(async () => {
    api = await startTestApi(dialect, { config: { organizationLimits: DEFAULTS } });
    const tenants = await withTenants(api);
    token = tenants.acmeToken;
    globexToken = tenants.globexToken;
    ids = { acme: tenants.acme, globex: tenants.globex };
  });

  afterAll(() => api.dispose());

  const build = (hostname: string, as = token, org = "acme", xml = WEB_XML) =>
    api.call("POST", BUILD, {
      token: as,
      body: { organization: { sub_domain: org }, xml: xml.replace("web-01", hostname) },
    });

  const policy = async (as = token, org = "acme") => {
    const response = await api.call(
      "GET",
      `/core/v1/organizations/_/policy?organization[sub_domain]=${org}`,
      {
        token: as,
      },
    );
    expect(response.statusCode, response.body).toBe(200);
    return response.json();
  };

  /** A VM of this test by hostname, and its first network interface. */
  async function firstInterface(hostname: string) {
    const db = api.server.store.db;
    const vm = await db
      .selectFrom("virtual_machines")
      .select("id")
      .where("hostname", "=", hostname)
      .executeTakeFirstOrThrow();
    const nic = await db
      .selectFrom("network_interfaces")
      .select("id")
      .where("virtual_machine_id", "=", vm.id)
      .orderBy("position")
      .executeTakeFirstOrThrow();
    return { vm, nic };
  }

  /** A completed build, as the engine leaves it (no engine runs here): what changes need. */
  async function completed(vmId: string): Promise<void> {
    const db = api.server.store.db;
    const host = await db.selectFrom("hosts").select("id").executeTakeFirstOrThrow();
    await db
      .updateTable("builds")
      .set({ state: "complete" })
      .where("virtual_machine_id", "=", vmId)
      .execute();
    await db
      .updateTable("virtual_machines")
      .set({ state: "stopped", host_id: host.id })
      .where("id", "=", vmId)
      .execute();
    await db
      .updateTable("disks")
      .set({ state: "attached", host_id: host.id })
      .where("virtual_machine_id", "=", vmId)
      .execute();
  }

  it("policy_limits answers the schema's OrganizationPolicy with the configured defaults", async () => {
    const response = await api.call(
      "GET",
      "/core/v1/organizations/_/policy_limits?organization[sub_domain]=acme",
      {
        token,
      },
    );
    expect(response.statusCode, response.body).toBe(200);
    const body = response.json();
    expect(schemaErrors("GET", "/organizations/organization/policy_limits", 200, body)).toBeNull();
    expect(body.policy_limits).toMatchObject({
      maximum_virtual_machines: { value: 2, unlimited: false },
      maximum_virtual_machine_memory: { value: 4, unlimited: false },
      maximum_disk_space: { value: 20, unlimited: false },
      maximum_unallocated_ip_addresses: { value: 2, unlimited: false },
      flexible_virtual_machine_resources: true,
    });
  });

  it("policy answers the schema's PolicyLimits with limit, current use and unit", async () => {
    const body = await policy();
    expect(schemaErrors("GET", "/organizations/organization/policy", 200, body)).toBeNull();
    expect(body.policy_type).toBe("auto");
    expect(body.limits).toMatchObject({
      virtual_machines: { limit: 2, current: 0, unit: null },
      virtual_machine_memory: { limit: 4, current: 0, unit: "GB" },
      disk_space: { limit: 20, current: 0, unit: "GB" },
      unallocated_ip_addresses: { limit: 2, current: 0, unit: null },
      // What Trebuchet does not have, an organization can hold none of.
      load_balancers: { limit: 0, current: 0, unit: null },
    });
    expect(body.reasons_for_disallowing_resource_creation).toEqual([]);
  });

  it("a token without organizations:read cannot read the limits", async () => {
    const narrow = await api.token("acme", { scopes: ["virtual_machines:read"] });
    const response = await api.call("GET", "/core/v1/organizations/_/policy?organization[sub_domain]=acme", {
      token: narrow,
    });
    expect(response.statusCode).toBe(403);
    expect(response.json().error.code).toBe("scope_not_granted");
  });

  it("a build past the VM limit answers 403 resource_creation_restricted with the limit and current use", async () => {
    expect((await build("limit-1")).statusCode).toBe(201);
    expect((await build("limit-2")).statusCode).toBe(201);
    const refused = await build("limit-3");
    expect(refused.statusCode, refused.body).toBe(403);
    const error = refused.json().error as { code: string; detail: LimitDetail };
    expect(error.code).toBe("resource_creation_restricted");
    expect(error.detail.limits).toEqual([
      { name: "virtual_machines", limit: 2, current: 2, requested: 1, unit: null },
    ]);
    expect(error.detail.errors[0]).toContain("virtual_machines: 1 requested, 2 of 2 in use");
    const vms = await api.server.store.db
      .selectFrom("virtual_machines")
      .select("hostname")
      .where("organization_id", "=", ids.acme)
      .execute();
    expect(vms.map((vm) => vm.hostname).sort()).toEqual(["limit-1", "limit-2"]);
    // Nothing of the refused build was kept: no address, no disk.
    const body = await policy();
    expect(body.limits.virtual_machines).toEqual({ limit: 2, current: 2, unit: null });
    expect(body.limits.virtual_machine_memory.current).toBe(2);
    expect(body.limits.disk_space.current).toBe(6);
  });

  it("another organization's use does not count against this one", async () => {
    const body = await policy(globexToken, "globex");
    expect(body.limits.virtual_machines.current).toBe(0);
    expect((await build("other-1", globexToken, "globex")).statusCode).toBe(201);
  });

  it("validate_spec reports the limit without writing anything", async () => {
    const db = api.server.store.db;
    const count = async () => [
      (await db.selectFrom("virtual_machines").select("id").execute()).length,
      (await db.selectFrom("ip_addresses").select("id").execute()).length,
    ];
    const before = await count();
    const response = await api.call("POST", "/core/v1/organizations/_/virtual_machines/validate_spec", {
      token,
      body: { organization: { sub_domain: "acme" }, xml: WEB_XML.replace("web-01", "limit-9") },
    });
    expect(response.statusCode, response.body).toBe(200);
    const body = response.json();
    expect(body.valid).toBe(false);
    expect(JSON.stringify(body.errors)).toContain("virtual_machines: 1 requested, 2 of 2 in use");
    expect(await count()).toEqual(before);
  });

  it("an organization's own limits replace the defaults, and 'default' puts them back", async () => {
    await setOrganizationLimits(api.server.store.db, ids.acme, { virtual_machines: 3 });
    const body = await policy();
    expect(body.policy_type).toBe("override");
    expect(body.limits.virtual_machines.limit).toBe(3);
    // The memory limit (4 GB, 2 used) is the next to bind: web.xml's package has 1 GB.
    expect((await build("limit-3")).statusCode).toBe(201);
    await setOrganizationLimits(api.server.store.db, ids.acme, { virtual_machines: null });
    expect((await policy()).limits.virtual_machines.limit).toBe(-1);
    const memory = await build("limit-4");
    expect(memory.statusCode).toBe(201);
    const past = await build("limit-5");
    expect(past.statusCode).toBe(403);
    expect((past.json().error.detail as LimitDetail).limits).toEqual([
      { name: "virtual_machine_memory", limit: 4, current: 4, requested: 1, unit: "GB" },
    ]);
    await setOrganizationLimits(api.server.store.db, ids.acme, { virtual_machines: "default" });
    expect((await policy()).limits.virtual_machines.limit).toBe(2);
  });

  it("memory: a flexible resources change past the limit is refused, one within it is queued", async () => {
    await setOrganizationLimits(api.server.store.db, ids.acme, { virtual_machine_memory: 6 });
    const vm = await api.server.store.db
      .selectFrom("virtual_machines")
      .select("id")
      .where("hostname", "=", "limit-1")
      .executeTakeFirstOrThrow();
    await completed(vm.id);
    const change = (memory: number) =>
      api.call("PUT", `/core/v1/virtual_machines/_/flexible_resources?virtual_machine[id]=${vm.id}`, {
        token,
        body: { resources: { memory_in_gb: memory, cpu_cores: 1 } },
      });
    const past = await change(4); // 4 used: 1 -> 4 adds 3, past 6
    expect(past.statusCode, past.body).toBe(403);
    expect((past.json().error.detail as LimitDetail).limits[0]).toMatchObject({
      name: "virtual_machine_memory",
      current: 4,
      requested: 3,
    });
    expect((await change(3)).statusCode).toBe(200);
    expect((await policy()).limits.virtual_machine_memory.current).toBe(6);
    // Shrinking adds nothing: never refused.
    expect((await change(1)).statusCode).toBe(200);
  });

  it("disk space: creating and growing disks past the limit is refused", async () => {
    await setOrganizationLimits(api.server.store.db, ids.acme, { disk_space: 16 });
    const used = (await policy()).limits.disk_space.current as number; // four web.xml VMs: 12 GB
    expect(used).toBe(12);
    const create = (size: number) =>
      api.call("POST", "/core/v1/organizations/_/disks", {
        token,
        body: {
          organization: { sub_domain: "acme" },
          properties: { name: `d${size}`, size_in_gb: size, data_center: { permalink: "lab-1" } },
        },
      });
    const refused = await create(5);
    expect(refused.statusCode, refused.body).toBe(403);
    expect(refused.json().error.code).toBe("resource_creation_restricted");
    const made = await create(3);
    expect(made.statusCode, made.body).toBe(201);
    const diskId = made.json().disk.id as string;
    await api.server.store.db.updateTable("disks").set({ state: "ready" }).where("id", "=", diskId).execute();
    const grow = (size: number) =>
      api.call("PUT", `/core/v1/disks/_/resize?disk[id]=${diskId}`, { token, body: { size_in_gb: size } });
    const past = await grow(5);
    expect(past.statusCode, past.body).toBe(403);
    expect((past.json().error.detail as LimitDetail).limits[0]).toMatchObject({
      name: "disk_space",
      limit: 16,
      current: 15,
      requested: 2,
    });
    expect((await grow(4)).statusCode).toBe(200);
    // A shrink's task holds the larger size until it is done (a failed one gives it back).
    const shrink = await api.call("PUT", `/core/v1/disks/_/resize?disk[id]=${diskId}`, {
      token,
      body: { size_in_gb: 2, resize_method: "offline" },
    });
    expect(shrink.statusCode, shrink.body).toBe(200);
    expect((await policy()).limits.disk_space.current).toBe(16);
  });

  it("unallocated addresses: creating one past the limit is refused; those on VMs do not count", async () => {
    const create = () =>
      api.call("POST", "/core/v1/organizations/_/ip_addresses", {
        token,
        body: {
          organization: { sub_domain: "acme" },
          network: { permalink: "lab-1-public" },
          version: "ipv4",
        },
      });
    expect((await create()).statusCode).toBe(200);
    expect((await create()).statusCode).toBe(200);
    const refused = await create();
    expect(refused.statusCode, refused.body).toBe(403);
    expect((refused.json().error.detail as LimitDetail).limits).toEqual([
      { name: "unallocated_ip_addresses", limit: 2, current: 2, requested: 1, unit: null },
    ]);
    const held = await api.server.store.db
      .selectFrom("ip_addresses")
      .select("id")
      .where("organization_id", "=", ids.acme)
      .where("allocation_id", "is", null)
      .execute();
    expect(held).toHaveLength(2);
    // Nor can an address made for a VM be unallocated past it, or an interface deleted with its addresses.
    const { vm, nic } = await firstInterface("limit-1");
    const made = await api.call(
      "POST",
      `/core/v1/virtual_machine_network_interfaces/_/allocate_new_ip?virtual_machine_network_interface[id]=${nic.id}`,
      { token, body: { address_version: "ipv4" } },
    );
    expect(made.statusCode, made.body).toBe(200);
    const ipId = made.json().ip_address.id as string;
    const unallocate = await api.call("POST", `/core/v1/ip_addresses/_/unallocate?ip_address[id]=${ipId}`, {
      token,
    });
    expect(unallocate.statusCode, unallocate.body).toBe(403);
    expect(unallocate.json().error.code).toBe("resource_creation_restricted");
    const still = await api.server.store.db
      .selectFrom("ip_addresses")
      .select("allocation_id")
      .where("id", "=", ipId)
      .executeTakeFirstOrThrow();
    expect(still.allocation_id).toBe(vm.id);
    await api.server.store.db
      .updateTable("network_interfaces")
      .set({ state: "detached" })
      .where("id", "=", nic.id)
      .execute();
    const deleted = await api.call(
      "DELETE",
      `/core/v1/virtual_machine_network_interfaces/_?virtual_machine_network_interface[id]=${nic.id}`,
      { token },
    );
    expect(deleted.statusCode, deleted.body).toBe(403);
    expect(
      await api.server.store.db
        .selectFrom("network_interfaces")
        .select("id")
        .where("id", "=", nic.id)
        .execute(),
    ).toHaveLength(1);
  });

  describe("what one spec may ask for", () => {
    const withAllocations = (count: number) =>
      WEB_XML.replace(
        /<NetworkInterfaces>[\s\S]*<\/NetworkInterfaces>/,
        `<NetworkInterfaces><NetworkInterface><Network by="permalink">lab-1-public</Network>${'<IPAddressAllocation type="new"><Version>6</Version></IPAddressAllocation>'.repeat(count)}</NetworkInterface></NetworkInterfaces>`,
      );

    it("33 addresses: 422 naming the cap, nothing allocated", async () => {
      const before = await api.server.store.db.selectFrom("ip_addresses").select("id").execute();
      const response = await build("caps-1", globexToken, "globex", withAllocations(33));
      expect(response.statusCode, response.body).toBe(422);
      expect(response.body).toContain("at most 32 IP addresses (this one asks for 33)");
      const after = await api.server.store.db.selectFrom("ip_addresses").select("id").execute();
      expect(after).toHaveLength(before.length);
    });

    it("32 addresses build; a 33rd allocated to the VM afterwards is refused", async () => {
      const built = await build("caps-32", globexToken, "globex", withAllocations(32));
      expect(built.statusCode, built.body).toBe(201);
      const { vm, nic } = await firstInterface("caps-32");
      const more = await api.call(
        "POST",
        `/core/v1/virtual_machine_network_interfaces/_/allocate_new_ip?virtual_machine_network_interface[id]=${nic.id}`,
        { token: globexToken, body: { address_version: "ipv6" } },
      );
      expect(more.statusCode, more.body).toBe(422);
      expect(more.body).toContain("already holds 32 addresses");
      const held = await api.server.store.db
        .selectFrom("ip_addresses")
        .select("id")
        .where("allocation_id", "=", vm.id)
        .execute();
      expect(held).toHaveLength(32);
    });

    it("2,000 addresses are refused the same way (the cap is checked before anything is resolved)", async () => {
      const response = await build("caps-2", globexToken, "globex", withAllocations(2000));
      expect(response.statusCode).toBe(422);
      expect(response.body).toContain("this one asks for 2000");
    });

    it("17 disks and 9 interfaces: 422 naming each cap", async () => {
      const disks = WEB_XML.replace(
        /<SystemDisks>[\s\S]*<\/SystemDisks>/,
        `<SystemDisks>${"<Disk><Size>1</Size></Disk>".repeat(17)}</SystemDisks>`,
      );
      const manyDisks = await build("caps-3", globexToken, "globex", disks);
      expect(manyDisks.statusCode).toBe(422);
      expect(manyDisks.body).toContain("at most 16 disks");
      const nics = WEB_XML.replace(
        /<NetworkInterfaces>[\s\S]*<\/NetworkInterfaces>/,
        `<NetworkInterfaces>${'<NetworkInterface><Network by="permalink">lab-1-private</Network></NetworkInterface>'.repeat(9)}</NetworkInterfaces>`,
      );
      const manyNics = await build("caps-4", globexToken, "globex", nics);
      expect(manyNics.statusCode).toBe(422);
      expect(manyNics.body).toContain("at most 8 network interfaces");
    });
  });
});
