/**
 * Contract tests: every endpoint answers with the official schema's shapes, on SQLite
 * and PostgreSQL, through the real app (inject: no socket). The validation is strict:
 * every property the schema lists must be present (test/support/openapi.ts).
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPERATIONS } from "../../src/api/operations.js";
import { createApiToken } from "../../src/catalog/accounts.js";
import { ERRORS } from "../../src/errors.js";
import { deleteDueBackupPolicies } from "../../src/lifecycle/index.js";
import { newId } from "../../src/store/index.js";
import { startTestApi, withTenants, type TestApi } from "../support/api.js";
import { schemaErrorDescriptions, schemaErrors, schemaScopes } from "../support/openapi.js";
import { DIALECTS } from "../support/stores.js";

const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");

/** Operations of our own, beyond the schema. */
const EXTENSIONS = ["validate_spec", "get_virtual_machine_console", "get_virtual_machine_build_events"];

/** JSON pointers (`*` for any element) of the empty arrays in a body: their items were not validated. */
function emptyArrays(value: unknown, at = ""): string[] {
  if (Array.isArray(value))
    return value.length === 0 ? [at] : [...new Set(value.flatMap((v) => emptyArrays(v, `${at}/*`)))];
  if (value && typeof value === "object")
    return Object.entries(value).flatMap(([k, v]) => emptyArrays(v, `${at}/${k}`));
  return [];
}

describe("the strict response validation", () => {
  it("requires every property the schema lists, at every depth", () => {
    const errors = schemaErrors("GET", "/virtual_machines/virtual_machine", 200, {
      virtual_machine: {},
      annotations: [],
    });
    expect(errors).toContain("/virtual_machine must have required property 'id'");
    expect(errors).toContain("/virtual_machine must have required property 'zone'");
    expect(errors).toContain("/virtual_machine must have required property 'gpus'");
    expect(errors).not.toContain("/virtual_machine must have required property 'hypervisor'");
    expect(
      schemaErrors("POST", "/virtual_machines/virtual_machine/start", 200, { task: { id: "task_1" } }),
    ).toEqual(["/task must have required property 'name'", "/task must have required property 'status'"]);
    expect(
      schemaErrors("GET", "/organizations/organization/available_networks", 200, {
        networks: [{ id: "netw_1", name: "n", permalink: null, default: true, data_center: { id: "dc_1" } }],
        virtual_networks: [],
      }),
    ).toEqual([
      "/networks/0/data_center must have required property 'name'",
      "/networks/0/data_center must have required property 'permalink'",
    ]);
  });

  it("accepts null for a nullable property, and not for another", () => {
    const task = { id: "task_1", name: "Start virtual machine", status: "pending", created_at: 1 };
    const times = { started_at: null, finished_at: null };
    expect(schemaErrors("GET", "/tasks/task", 200, { task: { ...task, ...times, progress: 0 } })).toBeNull();
    expect(schemaErrors("GET", "/tasks/task", 200, { task: { ...task, ...times, progress: null } })).toEqual([
      "/task/progress must be integer",
    ]);
  });
});

describe("the operation table follows the schema", () => {
  const ours = OPERATIONS.filter((op) => !EXTENSIONS.includes(op.name));
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
  let otherToken: string;
  let ids: Record<string, string>;
  /** Every operation whose success body was checked against the schema here. */
  const validated = new Set<string>();
  const validate = (method: string, schemaPath: string, status: number, body: unknown) => {
    validated.add(`${method} ${schemaPath}`);
    return schemaErrors(method, schemaPath, status, body);
  };

  beforeAll(async () => {
    api = await startTestApi(dialect);
    const tenants = await withTenants(api);
    token = tenants.acmeToken;
    otherToken = tenants.globexToken;
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
    // A virtual network and a group, so that their lists have items to validate.
    const now = Math.floor(Date.now() / 1000);
    const vnet = newId("virtualNetwork");
    await db
      .insertInto("virtual_networks")
      .values({
        id: vnet,
        name: "backend",
        organization_id: tenants.acme,
        data_center_id: dc.id,
        created_at: now,
      })
      .execute();
    const group = newId("virtualMachineGroup");
    await db
      .insertInto("virtual_machine_groups")
      .values({
        id: group,
        organization_id: tenants.acme,
        name: "web",
        segregate: 1,
        auto_segregate: 0,
        created_at: now,
      })
      .execute();
    // The VM is in the group, so that its `group` is an object to validate.
    await db.updateTable("virtual_machines").set({ group_id: group }).where("id", "=", vm.id).execute();
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
      vnet,
      group,
      acme: tenants.acme,
    };
  });
  afterAll(async () => api?.dispose());

  const cases: [string, string, () => string, number?][] = [
    ["GET", "/organizations", () => "/core/v1/organizations"],
    ["GET", "/organizations/organization", () => "/core/v1/organizations/_?organization[sub_domain]=acme"],
    [
      "GET",
      "/organizations/organization/policy_limits",
      () => "/core/v1/organizations/_/policy_limits?organization[sub_domain]=acme",
    ],
    [
      "GET",
      "/organizations/organization/policy",
      () => "/core/v1/organizations/_/policy?organization[sub_domain]=acme",
    ],
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
      "/virtual_networks/virtual_network",
      () => `/core/v1/virtual_networks/_?virtual_network[id]=${ids.vnet}`,
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
    expect(validate(method, schemaPath, 200, response.json())).toBeNull();
    // Every list has items, so that the items were validated too; Trebuchet has no GPUs,
    // and nothing but its limits keeps an active organization from creating resources.
    const alwaysEmpty = ["/virtual_machine/gpus", "/reasons_for_disallowing_resource_creation"];
    expect(emptyArrays(response.json()).filter((at) => !alwaysEmpty.includes(at))).toEqual([]);
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
      validate("POST", "/organizations/organization/virtual_machines/build_from_spec", 201, body),
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
    // Set in beforeAll, so that the schema case validated a group object rather than null.
    expect(vm.group).toEqual({
      id: ids.group,
      name: "web",
      segregate: true,
      auto_segregate: false,
      created_at: expect.any(Number),
    });
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
    expect(validate("POST", "/organizations/organization/ip_addresses", 200, response.json())).toBeNull();
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
    expect(validate("POST", "/organizations/organization/ssh_keys", 201, added.json())).toBeNull();
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
    expect(validate("DELETE", "/ssh_keys/ssh_key", 200, deleted.json())).toBeNull();
    const gone = await api.call("DELETE", `/core/v1/ssh_keys/${added.json().ssh_key.id}`, { token });
    expect(gone.json().error.code).toBe("ssh_key_not_found");
  });

  it("answers the current user for a user's token, and permission_denied for a bare organization token", async () => {
    const response = await api.call("GET", "/core/v1/users/current", { token });
    expect(response.json().error.code).toBe("permission_denied");
    const userToken = await createApiToken(api.server.store.db, {
      subDomain: "acme",
      name: "ops",
      role: "admin",
      scopes: [],
      allowedNetworks: [],
      userEmail: "ops@acme.test",
    });
    const current = await api.call("GET", "/core/v1/users/current", { token: userToken.token });
    expect(current.statusCode, current.body).toBe(200);
    const body = current.json();
    expect(validate("GET", "/users/current", 200, body)).toBeNull();
    const user = await api.server.store.db
      .selectFrom("users")
      .selectAll()
      .where("email_address", "=", "ops@acme.test")
      .executeTakeFirstOrThrow();
    // The test user has no name and Trebuchet stores no avatars: null, not invented.
    expect(body.user).toMatchObject({ id: user.id, first_name: null, last_name: null, avatar_url: null });
    expect(body.organizations).toEqual([{ id: ids.acme, name: "acme", sub_domain: "acme" }]);
    expect(body.api_token_id).toBe(userToken.id);
  });

  /** A VM whose build has completed (no engine runs here): what power actions and deletion need. */
  async function builtVirtualMachine(hostname: string): Promise<string> {
    const built = await api.call("POST", "/core/v1/organizations/_/virtual_machines/build_from_spec", {
      token,
      body: { organization: { sub_domain: "acme" }, xml: WEB_XML.replace("web-01", hostname) },
    });
    expect(built.statusCode, built.body).toBe(201);
    const db = api.server.store.db;
    const build = await db
      .selectFrom("builds")
      .selectAll()
      .where("id", "=", built.json().virtual_machine_build.id)
      .executeTakeFirstOrThrow();
    await db.updateTable("builds").set({ state: "complete" }).where("id", "=", build.id).execute();
    await db
      .updateTable("virtual_machines")
      .set({ state: "started" })
      .where("id", "=", build.virtual_machine_id!)
      .execute();
    // As a completed build leaves them.
    await db
      .updateTable("disks")
      .set({ state: "attached" })
      .where("virtual_machine_id", "=", build.virtual_machine_id!)
      .execute();
    return build.virtual_machine_id!;
  }

  it("build (JSON arguments) answers 201 with the schema's shape", async () => {
    const response = await api.call("POST", "/core/v1/organizations/_/virtual_machines/build", {
      token,
      body: {
        organization: { sub_domain: "acme" },
        data_center: { permalink: "lab-1" },
        package: { permalink: "small-1" },
        disk_template: { permalink: "templates/trebuchet-demo" },
        network: { permalink: "lab-1-public" },
        hostname: "JSON-01",
        annotations: [{ key: "via", value: "json" }],
      },
    });
    expect(response.statusCode, response.body).toBe(201);
    const body = response.json();
    expect(validate("POST", "/organizations/organization/virtual_machines/build", 201, body)).toBeNull();
    expect(body.task).toEqual({
      id: expect.stringMatching(/^task_/),
      name: "Build virtual machine",
      status: "pending",
    });
    expect(body.virtual_machine_build).toEqual({ id: expect.stringMatching(/^vmbuild_/), state: "pending" });
    expect(body.build).toEqual(body.virtual_machine_build);
    expect(body.hostname).toBe("json-01");
    expect(body.annotations).toEqual([{ key: "via", value: "json" }]);
  });

  it.each([
    ["start", "Start virtual machine"],
    ["stop", "Stop virtual machine"],
    ["shutdown", "Shutdown virtual machine"],
    ["reset", "Reset virtual machine"],
  ])("the %s power action answers the schema's task", async (action, name) => {
    const vm = await builtVirtualMachine(`power-${action}`);
    // go-katapult's form: the lookup in the query string, an empty body.
    const url = `/core/v1/virtual_machines/_/${action}?virtual_machine[id]=${vm}`;
    const response = await api.call("POST", url, { token });
    expect(response.statusCode, response.body).toBe(200);
    const body = response.json();
    expect(validate("POST", `/virtual_machines/virtual_machine/${action}`, 200, body)).toBeNull();
    expect(body).toEqual({ task: { id: expect.stringMatching(/^task_/), name, status: "pending" } });
    // The schema's form: the lookup in a JSON body.
    const again = await api.call("POST", `/core/v1/virtual_machines/virtual_machine/${action}`, {
      token,
      body: { virtual_machine: { id: vm } },
    });
    expect(again.statusCode, again.body).toBe(200);
    expect(validate("POST", `/virtual_machines/virtual_machine/${action}`, 200, again.json())).toBeNull();
  });

  it("DELETE answers the trash object and the full virtual machine, in the schema's shape", async () => {
    const vm = await builtVirtualMachine("doomed-01");
    const before = await api.call("GET", `/core/v1/virtual_machines/_?virtual_machine[id]=${vm}`, { token });
    const response = await api.call("DELETE", `/core/v1/virtual_machines/_?virtual_machine[id]=${vm}`, {
      token,
    });
    expect(response.statusCode, response.body).toBe(200);
    const body = response.json();
    expect(validate("DELETE", "/virtual_machines/virtual_machine", 200, body)).toBeNull();
    expect(body.trash_object).toEqual({
      id: expect.stringMatching(/^trsh_/),
      keep_until: expect.any(Number),
      object_id: vm,
      object_type: "VirtualMachine",
    });
    expect(body.virtual_machine).toEqual(before.json().virtual_machine);
    expect(emptyArrays(body)).toEqual(["/virtual_machine/gpus"]);
  });

  /** Calls an operation with the lookups in a JSON body (the schema's form), checking its 200 body. */
  async function ok(method: string, schemaPath: string, body: Record<string, unknown>, query = "") {
    const url = `/core/v1${schemaPath}${query}`;
    const response = await api.call(method, url, method === "GET" ? { token } : { token, body });
    expect(response.statusCode, `${method} ${schemaPath}: ${response.body}`).toBe(200);
    expect(validate(method, schemaPath, 200, response.json())).toBeNull();
    return response.json();
  }

  async function newAddress(): Promise<string> {
    const created = await ok("POST", "/organizations/organization/ip_addresses", {
      organization: { sub_domain: "acme" },
      network: { id: ids.network },
      version: "ipv4",
    });
    return created.ip_address.id as string;
  }

  const pendingActions = async (vmId: string, action: string) =>
    (
      await api.server.store.db
        .selectFrom("tasks")
        .select("id")
        .where("object_id", "=", vmId)
        .where("action", "=", action as never)
        .where("status", "=", "pending")
        .execute()
    ).length;

  it("IP addresses: update, allocate onto a VM and its interface, unallocate, release; refusals in Katapult's words", async () => {
    const vm = await builtVirtualMachine("addresses-01");
    const ip = await newAddress();
    const updated = await ok("PATCH", "/ip_addresses/ip_address", {
      ip_address: { id: ip },
      reverse_dns: "mail.example.org",
      label: "mail",
      vip: true,
    });
    expect(updated.ip_address).toMatchObject({ reverse_dns: "mail.example.org", label: "mail", vip: true });
    const badDns = await api.call("PATCH", "/core/v1/ip_addresses/ip_address", {
      token,
      body: { ip_address: { id: ip }, reverse_dns: "not a name!" },
    });
    expect(badDns.json().error.code).toBe("validation_error");

    const allocated = await ok("POST", "/virtual_machines/virtual_machine/allocate_ip", {
      virtual_machine: { id: vm },
      ip_address: { id: ip },
    });
    expect(allocated.ip_address).toMatchObject({ allocation_id: vm, allocation_type: "VirtualMachine" });
    // A running VM's host is told: one reconfiguration queued.
    expect(await pendingActions(vm, "reconfigure")).toBe(1);
    const again = await api.call("POST", "/core/v1/virtual_machines/virtual_machine/allocate_ip", {
      token,
      body: { virtual_machine: { id: vm }, ip_address: { id: ip } },
    });
    expect(again.statusCode).toBe(422);
    expect(again.json().error.code).toBe("ip_already_allocated");
    const read = await ok("GET", "/ip_addresses/ip_address", {}, `?ip_address[id]=${ip}`);
    expect(read.allocation).toMatchObject({ type: "VirtualMachine", value: { id: vm }, id: vm });

    const nics = await ok(
      "GET",
      "/virtual_machines/virtual_machine/network_interfaces",
      {},
      `?virtual_machine[id]=${vm}`,
    );
    const publicNic = nics.virtual_machine_network_interfaces.find(
      (n: { network: { id: string } | null }) => n.network?.id === ids.network,
    );
    expect(publicNic.name).toBe("Lab 1 public on addresses-01");
    expect(publicNic.ip_addresses.map((a: { id: string }) => a.id)).toContain(ip);
    const nic = await ok(
      "GET",
      "/virtual_machine_network_interfaces/virtual_machine_network_interface",
      {},
      `?virtual_machine_network_interface[id]=${publicNic.id}`,
    );
    expect(nic.virtual_machine_network_interface).toMatchObject({
      id: publicNic.id,
      virtual_machine: { id: vm },
      state: "attached",
      mac_address: expect.stringMatching(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/),
    });
    const byNetwork = await ok(
      "GET",
      "/virtual_machines/virtual_machine/networks/network/interface",
      {},
      `?virtual_machine[id]=${vm}&network[id]=${ids.network}`,
    );
    expect(byNetwork.virtual_machine_network_interface.id).toBe(publicNic.id);

    await ok("POST", "/ip_addresses/ip_address/unallocate", { ip_address: { id: ip } });
    const twice = await api.call("POST", "/core/v1/ip_addresses/ip_address/unallocate", {
      token,
      body: { ip_address: { id: ip } },
    });
    expect(twice.statusCode).toBe(422);
    expect(twice.json().error.code).toBe("no_allocation");
    // Coalesced: the reconfiguration that has not started yet will read this change too.
    expect(await pendingActions(vm, "reconfigure")).toBe(1);

    const available = await ok(
      "GET",
      "/virtual_machine_network_interfaces/virtual_machine_network_interface/available_ips/address_version",
      {},
      `?virtual_machine_network_interface[id]=${publicNic.id}&address_version=ipv4`,
    );
    expect(available.ip_addresses.map((a: { id: string }) => a.id)).toContain(ip);
    const onNic = await ok(
      "POST",
      "/virtual_machine_network_interfaces/virtual_machine_network_interface/allocate_ip",
      {
        virtual_machine_network_interface: { id: publicNic.id },
        ip_address: { id: ip },
      },
    );
    expect(onNic.virtual_machine_network_interface.ip_addresses.map((a: { id: string }) => a.id)).toContain(
      ip,
    );
    const fresh = await ok(
      "POST",
      "/virtual_machine_network_interfaces/virtual_machine_network_interface/allocate_new_ip",
      { virtual_machine_network_interface: { id: publicNic.id }, address_version: "ipv6" },
    );
    expect(fresh.ip_address).toMatchObject({
      allocation_id: vm,
      address: expect.stringContaining("2001:db8:100::"),
    });

    // Another tenant sees none of it.
    for (const [method, path, body] of [
      ["POST", "/ip_addresses/ip_address/unallocate", { ip_address: { id: ip } }],
      ["DELETE", "/ip_addresses/ip_address", { ip_address: { id: ip } }],
      ["PATCH", "/ip_addresses/ip_address", { ip_address: { id: ip }, label: "x" }],
    ] as const) {
      const response = await api.call(method, `/core/v1${path}`, { token: otherToken, body });
      expect(response.json().error.code).toBe("ip_address_not_found");
    }
    const foreignNic = await api.call(
      "GET",
      `/core/v1/virtual_machine_network_interfaces/_?virtual_machine_network_interface[id]=${publicNic.id}`,
      { token: otherToken },
    );
    expect(foreignNic.json().error.code).toBe("virtual_machine_network_interface_not_found");

    // Released while allocated: gone from the VM and from the organization.
    await ok("DELETE", "/ip_addresses/ip_address", { ip_address: { id: ip } });
    const gone = await api.call("GET", `/core/v1/ip_addresses/_?ip_address[id]=${ip}`, { token });
    expect(gone.json().error.code).toBe("ip_address_not_found");
    const after = await ok("GET", "/virtual_machines/virtual_machine", {}, `?virtual_machine[id]=${vm}`);
    expect(after.virtual_machine.ip_addresses.map((a: { id: string }) => a.id)).not.toContain(ip);
  });

  it("PATCH changes a VM's name, hostname, description, group and tags", async () => {
    const vm = await builtVirtualMachine("patch-01");
    const patched = await ok("PATCH", "/virtual_machines/virtual_machine", {
      virtual_machine: { id: vm },
      properties: {
        name: "Renamed",
        hostname: "Patched-01",
        description: "changed",
        group: { id: ids.group },
        tag_names: ["web", "app", "web"],
      },
      annotations: [{ key: "owner", value: "ops" }],
    });
    expect(patched.virtual_machine).toMatchObject({
      name: "Renamed",
      hostname: "patched-01",
      fqdn: "patched-01.acme.trebuchet.test",
      description: "changed",
      group: { id: ids.group },
      tag_names: ["web", "app"],
    });
    expect(patched.annotations).toEqual([{ key: "owner", value: "ops" }]);
    // Addresses named after the old hostname follow it.
    for (const ip of patched.virtual_machine.ip_addresses)
      expect(ip.reverse_dns).toBe("patched-01.acme.trebuchet.test");
    expect(await pendingActions(vm, "reconfigure")).toBe(1);
    const cleared = await ok("PATCH", "/virtual_machines/virtual_machine", {
      virtual_machine: { id: vm },
      properties: { tag_names: [], group: null },
    });
    expect(cleared.virtual_machine).toMatchObject({ tag_names: [], group: null, name: "Renamed" });
    const other = await builtVirtualMachine("patch-02");
    const taken = await api.call("PATCH", "/core/v1/virtual_machines/virtual_machine", {
      token,
      body: { virtual_machine: { id: other }, properties: { hostname: "patched-01" } },
    });
    expect(taken.statusCode).toBe(422);
    expect(taken.json().error.code).toBe("validation_error");
    const bad = await api.call("PATCH", "/core/v1/virtual_machines/virtual_machine", {
      token,
      body: { virtual_machine: { id: other }, properties: { hostname: "no_underscores" } },
    });
    expect(bad.json().error.code).toBe("validation_error");
    const missing = await api.call("PATCH", "/core/v1/virtual_machines/virtual_machine", {
      token,
      body: { virtual_machine: { id: other } },
    });
    expect(missing.json().error.code).toBe("missing_required_argument");
  });

  it("the trash: list, read by id or object_id, restore, purge one, purge all", async () => {
    const vm = await builtVirtualMachine("trash-01");
    const deleted = await ok("DELETE", "/virtual_machines/virtual_machine", { virtual_machine: { id: vm } });
    const trashId = deleted.trash_object.id as string;
    // keep_until is the server's setting (one day by default) after the deletion.
    expect(deleted.trash_object.keep_until - Math.floor(Date.now() / 1000)).toBeGreaterThan(24 * 3600 - 60);
    const listed = await ok(
      "GET",
      "/organizations/organization/trash_objects",
      {},
      "?organization[sub_domain]=acme",
    );
    expect(listed.trash_objects.map((t: { id: string }) => t.id)).toContain(trashId);
    const byObject = await ok("GET", "/trash_objects/trash_object", {}, `?trash_object[object_id]=${vm}`);
    expect(byObject.trash_object).toEqual(deleted.trash_object);
    const foreign = await api.call("GET", `/core/v1/trash_objects/_?trash_object[id]=${trashId}`, {
      token: otherToken,
    });
    expect(foreign.json().error.code).toBe("trash_object_not_found");

    const restored = await ok("POST", "/trash_objects/trash_object/restore", {
      trash_object: { id: trashId },
    });
    expect(restored.trash_object.id).toBe(trashId);
    const back = await ok("GET", "/virtual_machines/virtual_machine", {}, `?virtual_machine[id]=${vm}`);
    expect(back.virtual_machine.ip_addresses.length).toBeGreaterThan(0);
    const none = await api.call("GET", `/core/v1/trash_objects/_?trash_object[id]=${trashId}`, { token });
    expect(none.json().error.code).toBe("trash_object_not_found");

    const again = await ok("DELETE", "/virtual_machines/virtual_machine", { virtual_machine: { id: vm } });
    const purge = await ok("DELETE", "/trash_objects/trash_object", {
      trash_object: { id: again.trash_object.id },
    });
    expect(purge.task).toMatchObject({ name: "Purge items from trash", status: "pending", progress: 0 });
    // Asked twice: the same purge.
    const twice = await ok("DELETE", "/trash_objects/trash_object", { trash_object: { object_id: vm } });
    expect(twice.task.id).toBe(purge.task.id);
    // While its purge waits, the object cannot be restored.
    const late = await api.call("POST", "/core/v1/trash_objects/trash_object/restore", {
      token,
      body: { trash_object: { id: again.trash_object.id } },
    });
    expect(late.json().error.code).toBe("task_queueing_error");

    const all = await ok("POST", "/organizations/organization/trash_objects/purge_all", {
      organization: { sub_domain: "acme" },
    });
    expect(all.task).toMatchObject({ name: "Purge items from trash", status: "running" });
    const empty = await api.call("POST", "/core/v1/organizations/_/trash_objects/purge_all", {
      token: otherToken,
      body: { organization: { sub_domain: "globex" } },
    });
    expect(empty.json().task).toMatchObject({ status: "completed", progress: 100 });
  });

  it("reads a disk whole: data center, profile, its VM, what it was installed from", async () => {
    const disks = await ok(
      "GET",
      "/virtual_machines/virtual_machine/disks",
      {},
      `?virtual_machine[id]=${ids.vm}`,
    );
    const system = disks.disks[0].disk.id as string;
    const read = await ok("GET", "/disks/disk", {}, `?disk[id]=${system}`);
    expect(read.disk).toMatchObject({
      id: system,
      bus_type: "virtio",
      virtual_machine_disk: { virtual_machine: { id: ids.vm }, boot: true },
      installation: { disk_template_version: { disk_template: { permalink: "templates/trebuchet-demo" } } },
    });
    const foreign = await api.call("GET", `/core/v1/disks/_?disk[id]=${system}`, { token: otherToken });
    expect(foreign.json().error.code).toBe("disk_not_found");
  });

  it("standalone disks: create, rename, assign, attach, detach, unassign, delete; refusals in Katapult's words", async () => {
    const db = api.server.store.db;
    const created = await api.call("POST", "/core/v1/organizations/organization/disks", {
      token,
      body: {
        organization: { sub_domain: "acme" },
        properties: { name: "scratch", size_in_gb: 5, data_center: { permalink: "lab-1" } },
        annotations: [{ key: "purpose", value: "scratch" }],
      },
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(validate("POST", "/organizations/organization/disks", 201, created.json())).toBeNull();
    const diskId = created.json().disk.id as string;
    expect(created.json()).toMatchObject({
      disk: { state: "not_built", size_in_gb: 5, virtual_machine_disk: null, installation: null },
      task: { name: "Build disk", status: "pending" },
      annotations: [{ key: "purpose", value: "scratch" }],
    });
    const vm = await builtVirtualMachine("disks-01");
    // Not built yet (no worker here): it cannot be given to a VM.
    const early = await api.call("POST", "/core/v1/disks/disk/assign", {
      token,
      body: { disk: { id: diskId }, virtual_machine: { id: vm } },
    });
    expect(early.json().error.code).toBe("unable_to_assign");
    // What its build on the host records; and the VM's placement on that host.
    await db
      .updateTable("disks")
      .set({ state: "ready", path: "/srv/disks/x.qcow2" })
      .where("id", "=", diskId)
      .execute();
    const { host_id } = await db
      .selectFrom("disks")
      .select("host_id")
      .where("id", "=", diskId)
      .executeTakeFirstOrThrow();
    expect(host_id).not.toBeNull();
    await db.updateTable("virtual_machines").set({ host_id }).where("id", "=", vm).execute();

    const renamed = await ok("PATCH", "/disks/disk", {
      disk: { id: diskId },
      properties: { name: "renamed" },
    });
    expect(renamed.disk).toMatchObject({ name: "renamed", state: "built" });
    const detachUnassigned = await api.call("POST", "/core/v1/disks/disk/detach", {
      token,
      body: { disk: { id: diskId } },
    });
    expect(detachUnassigned.statusCode).toBe(422);
    expect(detachUnassigned.json().error.code).toBe("unassigned_disk");
    await ok("POST", "/disks/disk/unassign", { disk: { id: diskId } });
    const assigned = await ok("POST", "/disks/disk/assign", {
      disk: { id: diskId },
      virtual_machine: { id: vm },
    });
    expect(assigned.disk.virtual_machine_disk).toMatchObject({
      virtual_machine: { id: vm },
      state: "detached",
    });
    const attached = await ok("POST", "/disks/disk/attach", { disk: { id: diskId } });
    expect(attached.disk.virtual_machine_disk.state).toBe("attached");
    expect(attached.task.status).toBe("pending");
    const stillOn = await api.call("DELETE", "/core/v1/disks/disk", {
      token,
      body: { disk: { id: diskId } },
    });
    expect(stillOn.json().error.code).toBe("validation_error");
    // Detached while its VM runs: through the VM's reconfiguration, the one the attach queued.
    const detached = await ok("POST", "/disks/disk/detach", { disk: { id: diskId } });
    expect(detached.disk.virtual_machine_disk.state).toBe("detached");
    expect(detached.task.id).toBe(attached.task.id);
    await ok("POST", "/disks/disk/unassign", { disk: { id: diskId } });
    const foreign = await api.call("GET", `/core/v1/disks/_?disk[id]=${diskId}`, { token: otherToken });
    expect(foreign.json().error.code).toBe("disk_not_found");
    const deleted = await ok("DELETE", "/disks/disk", { disk: { id: diskId } });
    expect(deleted.trash_object).toMatchObject({ object_id: diskId, object_type: "Disk" });
    const inTrash = await api.call("GET", `/core/v1/disks/_?disk[id]=${diskId}`, { token });
    expect(inTrash.statusCode).toBe(406);
    expect(inTrash.json().error.code).toBe("object_in_trash");
    // A VM's own system disk stays with it.
    const system = await db
      .selectFrom("disks")
      .select("id")
      .where("virtual_machine_id", "=", vm)
      .where("position", "=", 1)
      .executeTakeFirstOrThrow();
    const own = await api.call("POST", "/core/v1/disks/disk/unassign", {
      token,
      body: { disk: { id: system.id } },
    });
    expect(own.json().error.code).toBe("unable_to_unassign");
    // A shared disk is the operator's.
    const shared = newId("disk");
    await db
      .insertInto("disks")
      .values({
        id: shared,
        organization_id: ids.acme!,
        data_center_id: ids.dc!,
        name: "shared",
        size_in_gb: 1,
        storage_speed: "ssd",
        io_profile_id: null,
        file_system_type: null,
        virtual_machine_id: null,
        position: null,
        shared: 1,
        host_id: null,
        path: "/srv/shared.qcow2",
        state: "ready",
        created_at: Math.floor(Date.now() / 1000),
      })
      .execute();
    const sharedDelete = await api.call("DELETE", "/core/v1/disks/disk", {
      token,
      body: { disk: { id: shared } },
    });
    expect(sharedDelete.json().error.code).toBe("validation_error");
    const tooBig = await api.call("POST", "/core/v1/organizations/organization/disks", {
      token,
      body: {
        organization: { sub_domain: "acme" },
        properties: { name: "huge", size_in_gb: 100_000, data_center: { permalink: "lab-1" } },
      },
    });
    expect(tooBig.json().error.code).toBe("validation_error");
  });

  it("VM groups and tags: create, read, update, delete; names unique in the organization", async () => {
    const group = await ok("POST", "/organizations/organization/virtual_machine_groups", {
      organization: { sub_domain: "acme" },
      properties: { name: "web tier", segregate: true },
    });
    const groupId = group.virtual_machine_group.id as string;
    expect(group.virtual_machine_group).toMatchObject({
      name: "web tier",
      segregate: true,
      auto_segregate: false,
    });
    const twin = await api.call("POST", "/core/v1/organizations/organization/virtual_machine_groups", {
      token,
      body: { organization: { sub_domain: "acme" }, properties: { name: "web tier" } },
    });
    expect(twin.json().error.code).toBe("validation_error");
    await ok(
      "GET",
      "/virtual_machine_groups/virtual_machine_group",
      {},
      `?virtual_machine_group[id]=${groupId}`,
    );
    const renamed = await ok("PATCH", "/virtual_machine_groups/virtual_machine_group", {
      virtual_machine_group: { id: groupId },
      properties: { name: "front", auto_segregate: true },
    });
    expect(renamed.virtual_machine_group).toMatchObject({
      name: "front",
      auto_segregate: true,
      segregate: true,
    });
    // A group with a VM in it stays.
    const vm = await builtVirtualMachine("grouped-01");
    await ok("PATCH", "/virtual_machines/virtual_machine", {
      virtual_machine: { id: vm },
      properties: { group: { id: groupId } },
    });
    const busy = await api.call("DELETE", "/core/v1/virtual_machine_groups/virtual_machine_group", {
      token,
      body: { virtual_machine_group: { id: groupId } },
    });
    expect(busy.statusCode).toBe(409);
    expect(busy.json().error.code).toBe("deletion_restricted");
    await ok("PATCH", "/virtual_machines/virtual_machine", {
      virtual_machine: { id: vm },
      properties: { group: null },
    });
    await ok("DELETE", "/virtual_machine_groups/virtual_machine_group", {
      virtual_machine_group: { id: groupId },
    });
    const gone = await api.call(
      "GET",
      `/core/v1/virtual_machine_groups/_?virtual_machine_group[id]=${groupId}`,
      {
        token,
      },
    );
    expect(gone.json().error.code).toBe("virtual_machine_group_not_found");

    const tag = await ok("POST", "/organizations/organization/tags", {
      organization: { sub_domain: "acme" },
      properties: { name: "prod", color: "pastel_green" },
    });
    const tagId = tag.tag.id as string;
    expect(tag.tag).toMatchObject({ name: "prod", color: "pastel_green" });
    const badColor = await api.call("POST", "/core/v1/organizations/organization/tags", {
      token,
      body: { organization: { sub_domain: "acme" }, properties: { name: "x", color: "plaid" } },
    });
    expect(badColor.json().error.code).toBe("invalid_argument");
    await ok("GET", "/tags/tag", {}, `?tag[id]=${tagId}`);
    const recoloured = await ok("PATCH", "/tags/tag", { tag: { id: tagId }, properties: { color: "red" } });
    expect(recoloured.tag).toMatchObject({ name: "prod", color: "red" });
    await ok("PATCH", "/virtual_machines/virtual_machine", {
      virtual_machine: { id: vm },
      properties: { tag_names: ["prod"] },
    });
    const foreign = await api.call("GET", `/core/v1/tags/_?tag[id]=${tagId}`, { token: otherToken });
    expect(foreign.json().error.code).toBe("tag_not_found");
    await ok("DELETE", "/tags/tag", { tag: { id: tagId } });
    const untagged = await ok("GET", "/virtual_machines/virtual_machine", {}, `?virtual_machine[id]=${vm}`);
    expect(untagged.virtual_machine.tag_names).toEqual([]);
  });

  it("changes a VM's package or flexible resources, and grows a disk; from the next start, as a task", async () => {
    const db = api.server.store.db;
    const vm = await builtVirtualMachine("resize-01");
    const host = await db.selectFrom("hosts").selectAll().executeTakeFirstOrThrow();
    await db.updateTable("virtual_machines").set({ host_id: host.id }).where("id", "=", vm).execute();
    const changed = await ok("PUT", "/virtual_machines/virtual_machine/package", {
      virtual_machine: { id: vm },
      virtual_machine_package: { permalink: "medium-2" },
    });
    expect(changed.task).toMatchObject({ name: "Apply configuration to virtual machine", status: "pending" });
    const read = await ok("GET", "/virtual_machines/virtual_machine", {}, `?virtual_machine[id]=${vm}`);
    expect(read.virtual_machine).toMatchObject({
      memory_in_gb: 2,
      cpu_cores: 2,
      package: { permalink: "medium-2" },
    });
    // The system disk grew to the package's storage (web.xml asks for less).
    const system = await db
      .selectFrom("disks")
      .selectAll()
      .where("virtual_machine_id", "=", vm)
      .where("position", "=", 1)
      .executeTakeFirstOrThrow();
    expect(system.size_in_gb).toBeGreaterThanOrEqual(4);
    const flexible = await ok("PUT", "/virtual_machines/virtual_machine/flexible_resources", {
      virtual_machine: { id: vm },
      resources: { memory_in_gb: 3, cpu_cores: 1 },
    });
    // Coalesced with the change queued before it.
    expect(flexible.task.id).toBe(changed.task.id);
    const again = await ok("GET", "/virtual_machines/virtual_machine", {}, `?virtual_machine[id]=${vm}`);
    expect(again.virtual_machine).toMatchObject({ memory_in_gb: 3, cpu_cores: 1, package: null });
    // More memory than its host has is refused.
    const tooMuch = await api.call("PUT", "/core/v1/virtual_machines/virtual_machine/flexible_resources", {
      token,
      body: { virtual_machine: { id: vm }, resources: { memory_in_gb: host.memory_in_gb + 1, cpu_cores: 1 } },
    });
    expect(tooMuch.statusCode).toBe(406);
    expect(tooMuch.json().error.code).toBe("task_queueing_error");
    const unknown = await api.call("PUT", "/core/v1/virtual_machines/virtual_machine/package", {
      token,
      body: { virtual_machine: { id: vm }, virtual_machine_package: { permalink: "nope" } },
    });
    expect(unknown.json().error.code).toBe("package_not_found");

    const grown = await ok("PUT", "/disks/disk/resize", {
      disk: { id: system.id },
      size_in_gb: system.size_in_gb + 3,
    });
    expect(grown.disk.size_in_gb).toBe(system.size_in_gb + 3);
    expect(grown.task.id).toBe(changed.task.id);
    const shrink = await api.call("PUT", "/core/v1/disks/disk/resize", {
      token,
      body: { disk: { id: system.id }, size_in_gb: 1 },
    });
    expect(shrink.json().error.code).toBe("validation_error");
  });

  it("network interfaces: add, attach, change speed, detach, delete; refusals in Katapult's words", async () => {
    const db = api.server.store.db;
    const vm = await builtVirtualMachine("nics-01");
    const added = await ok("POST", "/virtual_machines/virtual_machine/network_interfaces", {
      virtual_machine: { id: vm },
      virtual_network: { id: ids.vnet },
      speed_profile: { permalink: "10mbps" },
    });
    const nic = added.virtual_machine_network_interface;
    expect(nic).toMatchObject({
      state: "detached",
      virtual_network: { id: ids.vnet },
      network: null,
      speed_profile: { permalink: "10mbps" },
      mac_address: expect.stringMatching(/^52(:[0-9a-f]{2}){5}$/),
    });
    const listed = await ok(
      "GET",
      "/virtual_machines/virtual_machine/network_interfaces",
      {},
      `?virtual_machine[id]=${vm}`,
    );
    expect(listed.virtual_machine_network_interfaces.map((n: { id: string }) => n.id)).toContain(nic.id);

    const refused = async (
      method: string,
      path: string,
      body: Record<string, unknown>,
      code: string,
      status: number,
    ) => {
      const response = await api.call(method, `/core/v1${path}`, { token, body });
      expect(response.json().error?.code, response.body).toBe(code);
      expect(response.statusCode).toBe(status);
    };
    const nicPath = "/virtual_machine_network_interfaces/virtual_machine_network_interface";
    const lookup = { virtual_machine_network_interface: { id: nic.id } };
    await refused(
      "POST",
      "/virtual_machines/virtual_machine/network_interfaces",
      { virtual_machine: { id: vm }, speed_profile: { permalink: "10mbps" } },
      "validation_error",
      422,
    );
    await refused(
      "POST",
      "/virtual_machines/virtual_machine/network_interfaces",
      { virtual_machine: { id: vm }, network: { id: ids.network }, speed_profile: { permalink: "nope" } },
      "network_speed_profile_not_found",
      404,
    );
    await refused(
      "POST",
      "/virtual_machines/virtual_machine/network_interfaces",
      { virtual_machine: { id: vm }, network: { permalink: "nope" }, speed_profile: { permalink: "10mbps" } },
      "network_not_found",
      404,
    );
    await refused(
      "POST",
      `${nicPath}/detach`,
      lookup,
      "virtual_machine_network_interface_already_detached",
      422,
    );

    const attached = await ok("POST", `${nicPath}/attach`, lookup);
    expect(attached.virtual_machine_network_interface.state).toBe("attached");
    expect(attached.task).toMatchObject({
      name: "Apply configuration to virtual machine",
      status: "pending",
    });
    await refused(
      "POST",
      `${nicPath}/attach`,
      lookup,
      "virtual_machine_network_interface_already_attached",
      422,
    );
    await refused("DELETE", nicPath, lookup, "deletion_restricted", 409);

    const sped = await ok("PATCH", `${nicPath}/update_speed_profile`, {
      ...lookup,
      speed_profile: { permalink: "1mbps" },
    });
    // Joins the reconfiguration the attachment queued.
    expect(sped.task.id).toBe(attached.task.id);
    await refused(
      "PATCH",
      `${nicPath}/update_speed_profile`,
      { ...lookup, speed_profile: { permalink: "1mbps" } },
      "speed_profile_already_assigned",
      422,
    );
    const row = await db
      .selectFrom("network_interfaces")
      .selectAll()
      .where("id", "=", nic.id)
      .executeTakeFirstOrThrow();
    const profile = await db
      .selectFrom("network_speed_profiles")
      .selectAll()
      .where("id", "=", row.speed_profile_id!)
      .executeTakeFirstOrThrow();
    expect(profile.permalink).toBe("1mbps");

    // Another tenant reaches none of it.
    for (const [method, path] of [
      ["POST", `${nicPath}/detach`],
      ["PATCH", `${nicPath}/update_speed_profile`],
      ["DELETE", nicPath],
    ] as const) {
      const response = await api.call(method, `/core/v1${path}`, {
        token: otherToken,
        body: { ...lookup, speed_profile: { permalink: "10mbps" } },
      });
      expect(response.json().error.code).toBe("virtual_machine_network_interface_not_found");
    }
    const foreignAdd = await api.call(
      "POST",
      "/core/v1/virtual_machines/virtual_machine/network_interfaces",
      {
        token: otherToken,
        body: {
          virtual_machine: { id: vm },
          network: { id: ids.network },
          speed_profile: { permalink: "10mbps" },
        },
      },
    );
    expect(foreignAdd.json().error.code).toBe("virtual_machine_not_found");

    const detached = await ok("POST", `${nicPath}/detach`, lookup);
    expect(detached.virtual_machine_network_interface.state).toBe("detached");
    // An address on the interface stays the organization's when the interface goes.
    const ip = await newAddress();
    await db
      .updateTable("ip_addresses")
      .set({ allocation_type: "VirtualMachine", allocation_id: vm, network_interface_id: nic.id })
      .where("id", "=", ip)
      .execute();
    const deleted = await ok("DELETE", nicPath, lookup);
    expect(deleted.virtual_machine_network_interface.id).toBe(nic.id);
    const gone = await api.call("GET", `/core/v1${nicPath}?virtual_machine_network_interface[id]=${nic.id}`, {
      token,
    });
    expect(gone.json().error.code).toBe("virtual_machine_network_interface_not_found");
    const kept = await db
      .selectFrom("ip_addresses")
      .selectAll()
      .where("id", "=", ip)
      .executeTakeFirstOrThrow();
    expect(kept).toMatchObject({
      organization_id: ids.acme,
      allocation_id: null,
      network_interface_id: null,
    });

    // A VM still being built takes no attachment.
    const building = await api.call("POST", "/core/v1/organizations/_/virtual_machines/build_from_spec", {
      token,
      body: { organization: { sub_domain: "acme" }, xml: WEB_XML.replace("web-01", "nics-02") },
    });
    const buildingVm = (
      await db
        .selectFrom("builds")
        .select("virtual_machine_id")
        .where("id", "=", building.json().virtual_machine_build.id)
        .executeTakeFirstOrThrow()
    ).virtual_machine_id!;
    const spare = await ok("POST", "/virtual_machines/virtual_machine/network_interfaces", {
      virtual_machine: { id: buildingVm },
      network: { id: ids.network },
      speed_profile: { permalink: "1gbps" },
    });
    await refused(
      "POST",
      `${nicPath}/attach`,
      { virtual_machine_network_interface: { id: spare.virtual_machine_network_interface.id } },
      "task_queueing_error",
      406,
    );
  });

  it("changes a disk's IO profile: through its VM's reconfiguration, or a task of its own", async () => {
    const db = api.server.store.db;
    const vm = await builtVirtualMachine("io-01");
    const system = await db
      .selectFrom("disks")
      .selectAll()
      .where("virtual_machine_id", "=", vm)
      .where("position", "=", 1)
      .executeTakeFirstOrThrow();
    const changed = await ok("PUT", "/disks/disk/io_profile", {
      disk: { id: system.id },
      io_profile: { permalink: "throttled" },
    });
    expect(changed.disk.io_profile).toMatchObject({ permalink: "throttled", speed_in_mb: 10, iops: 200 });
    expect(changed.task).toMatchObject({ name: "Apply configuration to virtual machine", status: "pending" });
    const created = await api.call("POST", "/core/v1/organizations/organization/disks", {
      token,
      body: {
        organization: { sub_domain: "acme" },
        properties: { name: "spare", size_in_gb: 1, data_center: { permalink: "lab-1" } },
      },
    });
    const spare = created.json().disk.id as string;
    const own = await ok("PUT", "/disks/disk/io_profile", {
      disk: { id: spare },
      io_profile: { permalink: "throttled" },
    });
    expect(own.task).toMatchObject({ name: "Change disk IO profile", status: "pending" });
    const task = await db
      .selectFrom("tasks")
      .selectAll()
      .where("id", "=", own.task.id)
      .executeTakeFirstOrThrow();
    expect(task).toMatchObject({ object_id: spare, action: "disk_io_profile" });
    const unknown = await api.call("PUT", "/core/v1/disks/disk/io_profile", {
      token,
      body: { disk: { id: spare }, io_profile: { permalink: "nope" } },
    });
    expect(unknown.json().error.code).toBe("disk_io_profile_not_found");
    const missing = await api.call("PUT", "/core/v1/disks/disk/io_profile", {
      token,
      body: { disk: { id: spare } },
    });
    expect(missing.json().error.code).toBe("missing_required_argument");
    const foreign = await api.call("PUT", "/core/v1/disks/disk/io_profile", {
      token: otherToken,
      body: { disk: { id: spare }, io_profile: { permalink: "standard" } },
    });
    expect(foreign.json().error.code).toBe("disk_not_found");
  });

  it("disk backup policies: create on a VM and a disk, list, read, update, schedule deletion, delete", async () => {
    const db = api.server.store.db;
    const vm = await builtVirtualMachine("backups-01");
    const system = await db
      .selectFrom("disks")
      .selectAll()
      .where("virtual_machine_id", "=", vm)
      .where("position", "=", 1)
      .executeTakeFirstOrThrow();
    const before = Math.floor(Date.now() / 1000);
    const onVm = await ok("POST", "/virtual_machines/virtual_machine/disk_backup_policies", {
      virtual_machine: { id: vm },
      properties: { retention: 7, schedule: { interval: "daily", time: 3, minute: 30 } },
    });
    expect(onVm.disk_backup_policy).toMatchObject({
      retention: 7,
      total_size: 0,
      target: { target: { id: vm } },
      schedule: { interval: "daily", frequency: 1, time: 3, minute: 30 },
      auto_move_to_trash_at: null,
    });
    const next = onVm.disk_backup_policy.schedule.next_invocation_at as number;
    expect(next).toBeGreaterThan(before);
    expect(next - before).toBeLessThanOrEqual(24 * 3600);
    expect(new Date(next * 1000).toISOString()).toMatch(/T03:30:00/);
    const onDisk = await ok("POST", "/disks/disk/disk_backup_policies", {
      disk: { id: system.id },
      properties: { retention: 2, schedule: { interval: "hourly", minute: 5 } },
    });
    expect(onDisk.disk_backup_policy.target.target).toMatchObject({ id: system.id });

    const vmOnly = await ok(
      "GET",
      "/virtual_machines/virtual_machine/disk_backup_policies",
      {},
      `?virtual_machine[id]=${vm}`,
    );
    expect(vmOnly.disk_backup_policies.map((p: { id: string }) => p.id)).toEqual([
      onVm.disk_backup_policy.id,
    ]);
    const withDisks = await ok(
      "GET",
      "/virtual_machines/virtual_machine/disk_backup_policies",
      {},
      `?virtual_machine[id]=${vm}&include_disks=true`,
    );
    expect(withDisks.disk_backup_policies.map((p: { id: string }) => p.id).sort()).toEqual(
      [onVm.disk_backup_policy.id, onDisk.disk_backup_policy.id].sort(),
    );
    const ofDisk = await ok("GET", "/disks/disk/disk_backup_policies", {}, `?disk[id]=${system.id}`);
    expect(ofDisk.disk_backup_policies).toHaveLength(1);
    const ofOrg = await ok(
      "GET",
      "/organizations/organization/disk_backup_policies",
      {},
      "?organization[sub_domain]=acme",
    );
    expect(ofOrg.disk_backup_policies.map((p: { id: string }) => p.id)).toEqual(
      expect.arrayContaining([onVm.disk_backup_policy.id, onDisk.disk_backup_policy.id]),
    );
    const foreignList = await api.call(
      "GET",
      "/core/v1/organizations/_/disk_backup_policies?organization[sub_domain]=globex",
      { token: otherToken },
    );
    expect(foreignList.json().disk_backup_policies.map((p: { id: string }) => p.id)).not.toContain(
      onVm.disk_backup_policy.id,
    );

    const policy = { disk_backup_policy: { id: onVm.disk_backup_policy.id } };
    const read = await ok(
      "GET",
      "/disk_backup_policies/disk_backup_policy",
      {},
      `?disk_backup_policy[id]=${onVm.disk_backup_policy.id}`,
    );
    expect(read.disk_backup_policy.id).toBe(onVm.disk_backup_policy.id);
    const patched = await ok("PATCH", "/disk_backup_policies/disk_backup_policy", {
      ...policy,
      properties: { retention: 14, schedule: { interval: "weekly" } },
    });
    // The schedule's other parts stay as they were.
    expect(patched.disk_backup_policy).toMatchObject({
      retention: 14,
      schedule: { interval: "weekly", time: 3, minute: 30 },
    });
    const bad = await api.call("PATCH", "/core/v1/disk_backup_policies/disk_backup_policy", {
      token,
      body: { ...policy, properties: { schedule: { interval: "yearly" } } },
    });
    expect(bad.json().error.code).toBe("invalid_argument");
    const outOfRange = await api.call(
      "POST",
      "/core/v1/virtual_machines/virtual_machine/disk_backup_policies",
      {
        token,
        body: { virtual_machine: { id: vm }, properties: { retention: 0, schedule: { interval: "daily" } } },
      },
    );
    expect(outOfRange.json().error.code).toBe("validation_error");
    const foreign = await api.call(
      "GET",
      `/core/v1/disk_backup_policies/_?disk_backup_policy[id]=${onVm.disk_backup_policy.id}`,
      { token: otherToken },
    );
    expect(foreign.json().error.code).toBe("disk_backup_policy_not_found");

    const due = before + 3600;
    const scheduled = await ok("DELETE", "/disk_backup_policies/disk_backup_policy/schedule", {
      ...policy,
      timestamp: due,
    });
    expect(scheduled.disk_backup_policy.auto_move_to_trash_at).toBe(due);
    // Housekeeping deletes it when its time comes, and not before.
    expect(await deleteDueBackupPolicies(db, due - 1)).toBe(0);
    expect(await deleteDueBackupPolicies(db, due)).toBe(1);
    const after = await api.call(
      "GET",
      `/core/v1/disk_backup_policies/_?disk_backup_policy[id]=${onVm.disk_backup_policy.id}`,
      { token },
    );
    expect(after.json().error.code).toBe("disk_backup_policy_not_found");
    const deleted = await ok("DELETE", "/disk_backup_policies/disk_backup_policy", {
      disk_backup_policy: { id: onDisk.disk_backup_policy.id },
    });
    expect(deleted.disk_backup_policy.id).toBe(onDisk.disk_backup_policy.id);
    expect(
      await db
        .selectFrom("disk_backup_policies")
        .select("id")
        .where("id", "=", onDisk.disk_backup_policy.id)
        .execute(),
    ).toEqual([]);
  });

  it("validates the success body of every operation of the schema that Trebuchet serves", () => {
    const served = OPERATIONS.filter((op) => !EXTENSIONS.includes(op.name)).map(
      (op) => `${op.method} ${op.path}`,
    );
    expect(served.filter((op) => !validated.has(op))).toEqual([]);
  });
});
