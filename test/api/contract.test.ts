/**
 * Contract tests: every endpoint answers with the official schema's shapes, on SQLite
 * and PostgreSQL, through the real app (inject: no socket).
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPERATIONS } from "../../src/api/operations.js";
import { ERRORS } from "../../src/errors.js";
import { startTestApi, withTenants, type TestApi } from "../support/api.js";
import { schemaErrorDescriptions, schemaErrors, schemaScopes } from "../support/openapi.js";
import { DIALECTS } from "../support/stores.js";

const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");

describe("the operation table follows the schema", () => {
  // Operations of our own, beyond the schema.
  const extensions = ["validate_spec", "get_virtual_machine_console", "get_virtual_machine_build_events"];
  const ours = OPERATIONS.filter((op) => !extensions.includes(op.name));
  it.each(ours.map((op) => [op.method, op.path, op]))("%s %s has the schema's scopes", (method, path, op) => {
    expect([...op.scopes].sort()).toEqual(schemaScopes(method, path).sort());
  });

  it("uses the schema's description for every error code the schema defines", () => {
    const schema = schemaErrorDescriptions();
    const shared = Object.entries(ERRORS).filter(([code]) => schema.has(code));
    expect(shared.length).toBeGreaterThanOrEqual(20);
    for (const [code, definition] of shared)
      expect({ code, description: definition.description }).toEqual({ code, description: schema.get(code) });
  });
});

describe.each(DIALECTS)("contract on %s", (dialect) => {
  let api: TestApi;
  let token: string;
  let ids: Record<string, string>;

  beforeAll(async () => {
    api = await startTestApi(dialect);
    const tenants = await withTenants(api);
    token = tenants.acmeToken;
    const db = api.server.store.db;
    const built = await api.call("POST", "/core/v1/organizations/_/virtual_machines/build_from_spec", {
      token,
      body: {
        organization: { sub_domain: "acme" },
        xml: WEB_XML,
        annotations: [{ key: "env", value: "test" }],
      },
    });
    expect(built.statusCode).toBe(201);
    const build = built.json();
    const vm = await db.selectFrom("virtual_machines").selectAll().executeTakeFirstOrThrow();
    const ip = await db
      .selectFrom("ip_addresses")
      .selectAll()
      .where("allocation_id", "=", vm.id)
      .executeTakeFirstOrThrow();
    const dc = await db.selectFrom("data_centers").selectAll().executeTakeFirstOrThrow();
    const template = await db.selectFrom("disk_templates").selectAll().executeTakeFirstOrThrow();
    const version = await db.selectFrom("disk_template_versions").selectAll().executeTakeFirstOrThrow();
    const zone = await db.selectFrom("zones").selectAll().executeTakeFirstOrThrow();
    const network = await db
      .selectFrom("networks")
      .selectAll()
      .where("permalink", "=", "lab-1-public")
      .executeTakeFirstOrThrow();
    const pkg = await db.selectFrom("packages").selectAll().executeTakeFirstOrThrow();
    const key = await db.selectFrom("ssh_keys").selectAll().executeTakeFirstOrThrow();
    ids = {
      build: build.virtual_machine_build.id,
      task: build.task.id,
      vm: vm.id,
      fqdn: vm.fqdn,
      ip: ip.id,
      dc: dc.id,
      template: template.id,
      version: version.id,
      zone: zone.id,
      network: network.id,
      package: pkg.id,
      sshKey: key.id,
    };
  });
  afterAll(async () => api?.dispose());

  const cases: [string, string, () => string, number?][] = [
    ["GET", "/organizations", () => "/core/v1/organizations"],
    ["GET", "/organizations/organization", () => "/core/v1/organizations/_?organization[sub_domain]=acme"],
    ["GET", "/data_centers", () => "/core/v1/data_centers"],
    ["GET", "/data_centers/data_center", () => `/core/v1/data_centers/${ids.dc}`],
    [
      "GET",
      "/data_centers/data_center/default_network",
      () => "/core/v1/data_centers/_/default_network?data_center[permalink]=lab-1",
    ],
    ["GET", "/zones", () => "/core/v1/zones"],
    ["GET", "/zones/zone", () => `/core/v1/zones/zone?zone[id]=${ids.zone}`],
    [
      "GET",
      "/virtual_machine_packages",
      () => "/core/v1/virtual_machine_packages?organization[sub_domain]=acme",
    ],
    [
      "GET",
      "/virtual_machine_packages/virtual_machine_package",
      () => "/core/v1/virtual_machine_packages/_?virtual_machine_package[permalink]=small-1",
    ],
    [
      "GET",
      "/organizations/organization/disk_templates",
      () =>
        "/core/v1/organizations/:organization/disk_templates?organization[sub_domain]=acme&include_universal=true",
    ],
    ["GET", "/disk_templates/disk_template", () => `/core/v1/disk_templates/${ids.template}`],
    [
      "GET",
      "/disk_templates/disk_template/versions",
      () => `/core/v1/disk_templates/${ids.template}/versions`,
    ],
    [
      "GET",
      "/disk_template_versions/disk_template_version",
      () => `/core/v1/disk_template_versions/${ids.version}`,
    ],
    [
      "GET",
      "/disk_template_versions/disk_template_version/spec",
      () => `/core/v1/disk_template_versions/_/spec?disk_template_version[id]=${ids.version}`,
    ],
    [
      "GET",
      "/organizations/organization/available_networks",
      () => "/core/v1/organizations/organization/available_networks?organization[sub_domain]=acme",
    ],
    ["GET", "/networks/network", () => "/core/v1/networks/_?network[permalink]=lab-1-public"],
    [
      "GET",
      "/organizations/organization/virtual_networks",
      () => "/core/v1/organizations/_/virtual_networks?organization[sub_domain]=acme",
    ],
    [
      "GET",
      "/organizations/organization/network_speed_profiles",
      () => "/core/v1/organizations/_/network_speed_profiles?organization[sub_domain]=acme",
    ],
    [
      "GET",
      "/organizations/organization/disk_io_profiles",
      () => "/core/v1/organizations/_/disk_io_profiles?organization[sub_domain]=acme",
    ],
    [
      "GET",
      "/organizations/organization/virtual_machine_groups",
      () => "/core/v1/organizations/_/virtual_machine_groups?organization[sub_domain]=acme",
    ],
    [
      "GET",
      "/organizations/organization/tags",
      () => "/core/v1/organizations/_/tags?organization[sub_domain]=acme",
    ],
    [
      "GET",
      "/organizations/organization/disks",
      () => "/core/v1/organizations/_/disks?organization[sub_domain]=acme",
    ],
    [
      "GET",
      "/organizations/organization/ip_addresses",
      () => "/core/v1/organizations/_/ip_addresses?organization[sub_domain]=acme&allocated=true",
    ],
    ["GET", "/ip_addresses/ip_address", () => `/core/v1/ip_addresses/_?ip_address[id]=${ids.ip}`],
    [
      "GET",
      "/organizations/organization/ssh_keys",
      () => "/core/v1/organizations/_/ssh_keys?organization[sub_domain]=acme",
    ],
    [
      "GET",
      "/virtual_machines/builds/virtual_machine_build",
      () =>
        `/core/v1/virtual_machines/builds/virtual_machine_build?virtual_machine_build%5Bid%5D=${ids.build}`,
    ],
    ["GET", "/tasks/task", () => `/core/v1/tasks/${ids.task}`],
    [
      "GET",
      "/virtual_machines/virtual_machine",
      () => `/core/v1/virtual_machines/_?virtual_machine[id]=${ids.vm}`,
    ],
    [
      "GET",
      "/organizations/organization/virtual_machines",
      () => "/core/v1/organizations/_/virtual_machines?organization[sub_domain]=acme&page=1&per_page=100",
    ],
    [
      "GET",
      "/virtual_machines/virtual_machine/network_interfaces",
      () => `/core/v1/virtual_machines/${ids.vm}/network_interfaces`,
    ],
    [
      "GET",
      "/virtual_machines/virtual_machine/disks",
      () => `/core/v1/virtual_machines/_/disks?virtual_machine[id]=${ids.vm}`,
    ],
  ];

  it.each(cases)("%s %s answers with the schema's shape", async (method, schemaPath, url) => {
    const response = await api.call(method, url(), { token });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers["content-type"]).toMatch(/^application\/json/);
    expect(schemaErrors(method, schemaPath, 200, response.json())).toBeNull();
  });

  it("covers every read operation with a schema case", () => {
    const covered = new Set(cases.map(([m, p]) => `${m} ${p}`));
    const reads = OPERATIONS.filter((op) => op.method === "GET").map((op) => `${op.method} ${op.path}`);
    const elsewhere = [
      "GET /users/current",
      "GET /virtual_networks/virtual_network",
      "GET /virtual_machines/virtual_machine/console",
      "GET /virtual_machines/builds/virtual_machine_build/events",
    ];
    expect(reads.filter((r) => !covered.has(r) && !elsewhere.includes(r))).toEqual([]);
  });

  it("build_from_spec answers 201 with the schema's shape and the recorded task", async () => {
    const response = await api.call(
      "POST",
      "/core/v1/organizations/organization/virtual_machines/build_from_spec",
      {
        token,
        body: { organization: { sub_domain: "acme" }, xml: WEB_XML.replace("web-01", "WEB-02") },
      },
    );
    expect(response.statusCode, response.body).toBe(201);
    const body = response.json();
    expect(
      schemaErrors("POST", "/organizations/organization/virtual_machines/build_from_spec", 201, body),
    ).toBeNull();
    expect(body.task).toEqual({
      id: expect.stringMatching(/^task_[A-Za-z0-9]{16}$/),
      name: "Build virtual machine",
      status: "pending",
    });
    expect(body.build).toEqual(body.virtual_machine_build);
    expect(body.virtual_machine_build).toEqual({ id: expect.stringMatching(/^vmbuild_/), state: "pending" });
    expect(body.hostname).toBe("web-02");
    expect(body.annotations).toEqual([]);
  });

  it("stores the normalised spec: resolved IDs, chosen version, lower-cased hostname, continuous_management", async () => {
    const response = await api.call("GET", `/core/v1/virtual_machines/builds/${ids.build}`, { token });
    const build = response.json().virtual_machine_build;
    expect(build.spec_xml).toMatch(/^<\?xml version="1.0"\?>\n<VirtualMachineSpec>\n/);
    expect(build.spec_xml).toContain(`<DataCenter>${ids.dc}</DataCenter>`);
    expect(build.spec_xml).toContain('<Package by="permalink">small-1</Package>');
    expect(build.spec_xml).toContain('<Version by="number">1</Version>');
    expect(build.spec_xml).toContain(`<Network>${ids.network}</Network>`);
    expect(build.spec_xml).toContain('<AuthorizedKeys continuous_management="no">');
    expect(build.spec_xml).toContain('<Users all="yes"/>');
    expect(build.spec_xml.endsWith("</VirtualMachineSpec>\n")).toBe(true);
    expect(build.state).toBe("pending");
    expect(build.virtual_machine).toBeNull();
    expect(response.json().annotations).toEqual([{ key: "env", value: "test" }]);
  });

  it("shows a build's every change on the next read, though its body is kept rendered", async () => {
    const read = async () =>
      (await api.call("GET", `/core/v1/virtual_machines/builds/${ids.build}`, { token })).json();
    const before = await read();
    expect(before.virtual_machine_build.state).toBe("pending");
    const db = api.server.store.db;
    const vmId = ids.vm!;
    const { name } = await db
      .selectFrom("virtual_machines")
      .select("name")
      .where("id", "=", vmId)
      .executeTakeFirstOrThrow();
    const setBuild = (state: "pending" | "failed", failure_reason: string | null) =>
      db.updateTable("builds").set({ state, failure_reason }).where("id", "=", ids.build!).execute();
    try {
      await setBuild("failed", "the host ran out of disk");
      const after = await read();
      expect(after.virtual_machine_build).toMatchObject({
        state: "failed",
        failure_reason: "the host ran out of disk",
        virtual_machine: { id: vmId },
        spec_xml: before.virtual_machine_build.spec_xml,
      });
      await db.updateTable("virtual_machines").set({ name: "Renamed" }).where("id", "=", vmId).execute();
      expect((await read()).virtual_machine_build.virtual_machine.name).toBe("Renamed");
    } finally {
      await setBuild("pending", null);
      await db.updateTable("virtual_machines").set({ name }).where("id", "=", vmId).execute();
    }
    expect(await read()).toEqual(before);
  });

  it("serves the full virtual machine object with its addresses allocated", async () => {
    const response = await api.call(
      "GET",
      `/core/v1/virtual_machines/virtual_machine?virtual_machine[fqdn]=${ids.fqdn}`,
      { token },
    );
    const { virtual_machine: vm, annotations } = response.json();
    expect(vm.hostname).toBe("web-01");
    expect(vm.fqdn).toBe("web-01.acme.trebuchet.test");
    expect(vm.package.permalink).toBe("small-1");
    expect(vm.tag_names).toEqual(["web", "demo"]);
    expect(vm.ip_addresses.map((ip: any) => ip.address)).toEqual([
      "192.0.2.10",
      "198.51.100.10",
      "2001:db8:100::10",
    ]);
    for (const ip of vm.ip_addresses) {
      expect(ip).toMatchObject({
        allocation_type: "VirtualMachine",
        allocation_id: vm.id,
        reverse_dns: vm.fqdn,
      });
    }
    expect(annotations).toEqual([{ key: "env", value: "test" }]);
  });

  it("lists virtual machines filtered by annotations, paginated", async () => {
    const hit = await api.call(
      "GET",
      "/core/v1/organizations/_/virtual_machines?organization[sub_domain]=acme&annotations[][key]=env&annotations[][value]=test",
      { token },
    );
    expect(hit.json().virtual_machines.map((v: any) => v.id)).toEqual([ids.vm]);
    const miss = await api.call(
      "GET",
      "/core/v1/organizations/_/virtual_machines?organization[sub_domain]=acme&annotations[][key]=env&annotations[][value]=prod",
      { token },
    );
    expect(miss.json()).toMatchObject({ virtual_machines: [], pagination: { total: 0 } });
    const page = await api.call(
      "GET",
      "/core/v1/organizations/_/virtual_machines?organization[sub_domain]=acme&per_page=1&page=2",
      { token },
    );
    expect(page.json().pagination).toEqual({
      current_page: 2,
      total_pages: 2,
      total: 2,
      per_page: 1,
      large_set: false,
    });
  });

  it("creates IP addresses (schema shape) and refuses when the pool is dry", async () => {
    const response = await api.call("POST", "/core/v1/organizations/_/ip_addresses", {
      token,
      body: { organization: { sub_domain: "acme" }, network: { id: ids.network }, version: "ipv4" },
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(schemaErrors("POST", "/organizations/organization/ip_addresses", 200, response.json())).toBeNull();
    expect(response.json().ip_address).toMatchObject({ allocation_id: null, vip: false });
    const vip = await api.call("POST", "/core/v1/organizations/_/ip_addresses", {
      token,
      body: {
        organization: { sub_domain: "acme" },
        network: { id: ids.network },
        version: "ipv4",
        vip: true,
      },
    });
    expect(vip.statusCode).toBe(422);
    expect(vip.json().error).toMatchObject({
      code: "validation_error",
      detail: { errors: ["Label can't be blank"] },
    });
  });

  it("adds and deletes SSH keys", async () => {
    const key =
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZ3gdbFhkCDUB8w0d5tp+wrW8AQZNvs0cY3vMyB7GIy added@example.org";
    const added = await api.call("POST", "/core/v1/organizations/_/ssh_keys", {
      token,
      body: { organization: { sub_domain: "acme" }, ssh_key: { name: "added", key } },
    });
    expect(added.statusCode, added.body).toBe(201);
    expect(schemaErrors("POST", "/organizations/organization/ssh_keys", 201, added.json())).toBeNull();
    const again = await api.call("POST", "/core/v1/organizations/_/ssh_keys", {
      token,
      body: { organization: { sub_domain: "acme" }, properties: { name: "again", key } },
    });
    expect(again.json().error.code).toBe("validation_error");
    const bad = await api.call("POST", "/core/v1/organizations/_/ssh_keys", {
      token,
      body: { organization: { sub_domain: "acme" }, properties: { name: "bad", key: "ssh-rsa nope" } },
    });
    expect(bad.json().error.code).toBe("validation_error");
    const deleted = await api.call("DELETE", `/core/v1/ssh_keys/_?ssh_key[id]=${added.json().ssh_key.id}`, {
      token,
    });
    expect(deleted.statusCode).toBe(200);
    expect(schemaErrors("DELETE", "/ssh_keys/ssh_key", 200, deleted.json())).toBeNull();
    const gone = await api.call("DELETE", `/core/v1/ssh_keys/${added.json().ssh_key.id}`, { token });
    expect(gone.json().error.code).toBe("ssh_key_not_found");
  });

  it("answers the current user for a user's token, and permission_denied for a bare organization token", async () => {
    const response = await api.call("GET", "/core/v1/users/current", { token });
    expect(response.json().error.code).toBe("permission_denied");
  });
});
