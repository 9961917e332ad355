/** The operator CLI, run as a process against a real data directory; its results checked through the API. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type RunningServer } from "../../src/server.js";
import { eventually } from "../support/eventually.js";
import { ED25519_KEY } from "../support/api.js";
import { runCli } from "../support/cli.js";

const dir = mkdtempSync(join(tmpdir(), "trebuchet-admin-"));
const data = join(dir, "data");
const env = { DATABASE_URL: "" };
const admin = (...args: string[]) => runCli(["admin", ...args, "--data", data], { env });
const json = (...args: string[]) => {
  const result = admin(...args, "--json");
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout);
};

let server: RunningServer;
const call = async (token: string, url: string) => {
  const response = await server.app.inject({
    method: "GET",
    url,
    headers: { authorization: `Bearer ${token}` },
  });
  return { status: response.statusCode, body: response.json() };
};

beforeAll(async () => {
  expect(json("catalog", "apply", "examples/catalog.yaml")).toMatchObject({ created: 20, updated: 0 });
  server = await createServer({ store: { dataDir: data }, baseDomain: "t.test" });
});
afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("trebuchet admin", () => {
  it("applies the catalog idempotently and reports file problems with their paths", () => {
    expect(json("catalog", "apply", "examples/catalog.yaml")).toEqual({
      created: 0,
      updated: 0,
      unchanged: 20,
    });
    const bad = join(dir, "bad.yaml");
    writeFileSync(
      bad,
      "networks:\n  - permalink: Bad Link\n    name: x\n    data_center: lab-1\n    subnets:\n      - cidr: 192.0.2.0/33\nrocket: 1\n",
    );
    const result = admin("catalog", "apply", bad);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("catalog.rocket is not a known key");
    expect(result.stderr).toContain("networks[0].permalink must match");
    expect(result.stderr).toContain("networks[0].subnets[0].cidr is not a CIDR");
  });

  it("creates organizations and tokens that the API accepts; the secret is printed once", async () => {
    expect(json("org", "create", "--sub-domain", "acme", "--name", "Acme")).toMatchObject({
      sub_domain: "acme",
      state: "active",
    });
    const { token, id } = json("token", "create", "--org", "acme");
    expect(token).toMatch(/^trb_[A-Za-z0-9]{40}$/);
    const orgs = await call(token, "/core/v1/organizations");
    expect(orgs.body.organizations.map((o: any) => o.sub_domain)).toEqual(["acme"]);
    expect(json("token", "revoke", id)).toEqual({ revoked: id });
    // The server may trust the token it has just checked for up to its credential cache time.
    const refused = await eventually(
      async () => (await call(token, "/core/v1/organizations")).body.error,
      3000,
    );
    expect(refused.value.code).toBe("invalid_api_token");
    expect(admin("token", "revoke", id).status).toBe(1);
  });

  it("scopes, networks and expiry restrict a token", async () => {
    const scoped = json("token", "create", "--org", "acme", "--scope", "virtual_machines:read").token;
    expect((await call(scoped, "/core/v1/organizations")).body.error.code).toBe("scope_not_granted");
    const fenced = json("token", "create", "--org", "acme", "--allow-network", "192.0.2.0/24").token;
    expect((await call(fenced, "/core/v1/data_centers")).body.error).toMatchObject({
      code: "unauthorized_network_for_api_token",
      detail: { ip_address: "127.0.0.1" },
    });
    const short = json("token", "create", "--org", "acme", "--expires-in", "1s").token;
    await new Promise((r) => setTimeout(r, 2100));
    expect((await call(short, "/core/v1/data_centers")).body.error.code).toBe("invalid_api_token");
    expect(admin("token", "create", "--org", "acme", "--allow-network", "not-a-cidr").status).toBe(1);
    expect(admin("token", "create", "--org", "acme", "--expires-in", "soon").status).toBe(2);
    expect(admin("token", "create", "--org", "nobody").stderr).toMatch(
      /no organization with sub-domain nobody/,
    );
  });

  it("registers the demo and cloud templates, building them only when missing", () => {
    const templates = join(data, "templates");
    for (const file of [
      "trebuchet-demo/vmlinuz",
      "trebuchet-demo/initrd.img",
      "trebuchet-demo/root.qcow2",
      "debian-12-cloud/disk.qcow2",
    ]) {
      mkdirSync(join(templates, dirname(file)), { recursive: true });
      writeFileSync(join(templates, file), "");
    }
    // Present already, so nothing is built: each is (re)registered from examples/catalog.yaml.
    expect(json("template", "build-demo")).toMatchObject({
      directory: join(templates, "trebuchet-demo"),
      catalog: { created: 0, updated: 0, unchanged: 2 },
    });
    expect(json("template", "build-cloud")).toMatchObject({
      image: join(templates, "debian-12-cloud", "disk.qcow2"),
      catalog: { created: 0, updated: 0, unchanged: 2 },
    });
  });

  it("suspends and activates organizations", async () => {
    const token = json("token", "create", "--org", "acme").token;
    const acme = () => call(token, "/core/v1/organizations/_?organization[sub_domain]=acme");
    json("org", "suspend", "acme");
    const suspended = await eventually(async () => (await acme()).body.error, 3000);
    expect(suspended.value.code).toBe("organization_suspended");
    json("org", "activate", "acme");
    expect(
      (await eventually(async () => ((await acme()).status === 200 ? true : undefined), 3000)).value,
    ).toBe(true);
    json("org", "create", "--sub-domain", "later", "--name", "Later", "--not-activated");
    const later = json("token", "create", "--org", "later").token;
    expect(
      (await call(later, "/core/v1/organizations/_?organization[sub_domain]=later")).body.error.code,
    ).toBe("organization_not_activated");
  });

  it("shows and sets an organization's limits, which the API then reports", async () => {
    const shown = json("org", "limits", "acme");
    expect(shown).toMatchObject({ organization: "acme", own: [], usage: { virtual_machines: 0 } });
    expect(shown.limits.virtual_machines).toBe(50);
    const set = json("org", "limits", "acme", "--virtual-machines", "3", "--memory", "unlimited");
    expect(set.limits).toMatchObject({ virtual_machines: 3, virtual_machine_memory: null });
    expect(set.own.sort()).toEqual(["virtual_machine_memory", "virtual_machines"]);
    const token = json("token", "create", "--org", "acme").token;
    const policy = await call(token, "/core/v1/organizations/_/policy?organization[sub_domain]=acme");
    expect(policy.body.policy_type).toBe("override");
    expect(policy.body.limits.virtual_machines).toEqual({ limit: 3, current: 0, unit: null });
    expect(policy.body.limits.virtual_machine_memory.limit).toBe(-1);
    // Back to the default; the human form names each limit, its use and where it comes from.
    const human = admin("org", "limits", "acme", "--virtual-machines", "default");
    expect(human.status, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/virtual_machines\s+0 of 50 \(default\)/);
    expect(human.stdout).toMatch(/virtual_machine_memory\s+0 of unlimited \(its own\)/);
    // The configured defaults are the environment's.
    const configured = runCli(["admin", "org", "limits", "acme", "--data", data, "--json"], {
      env: { ...env, TREBUCHET_ORGANIZATION_LIMITS: "virtual_machines=7" },
    });
    expect(JSON.parse(configured.stdout).limits.virtual_machines).toBe(7);
    const bad = admin("org", "limits", "acme", "--disk-space", "-4");
    expect(bad.status).toBe(2); // a usage error, as commander's others
    expect(bad.stderr).toContain("not a limit: give a whole number or unlimited");
  });

  it("adds users and SSH keys", async () => {
    expect(
      json("user", "create", "--email", "ops@acme.test", "--org", "acme", "--role", "member"),
    ).toMatchObject({ email_address: "ops@acme.test" });
    const keyFile = join(dir, "id.pub");
    writeFileSync(keyFile, ED25519_KEY + "\n");
    expect(
      json(
        "ssh-key",
        "add",
        "--org",
        "acme",
        "--name",
        "ops",
        "--key-file",
        keyFile,
        "--user",
        "ops@acme.test",
      ).fingerprint,
    ).toMatch(/^SHA256:/);
    expect(admin("ssh-key", "add", "--org", "acme", "--name", "again", "--key-file", keyFile).status).toBe(1);
    expect(admin("ssh-key", "add", "--org", "acme", "--name", "bad", "--key", "ssh-rsa AAAA").status).toBe(1);
    const token = json("token", "create", "--org", "acme").token;
    expect(
      (await call(token, "/core/v1/organizations/_/ssh_keys?organization[sub_domain]=acme")).body.ssh_keys,
    ).toHaveLength(1);
  });

  it("mints capabilities tokens limited to their operations", async () => {
    const { token, expiresAt } = json(
      "capability",
      "create",
      "--org",
      "acme",
      "--operation",
      "get_task",
      "--scope",
      "tasks:read",
      "--expires-in",
      "10m",
    );
    expect(expiresAt).toBeGreaterThan(Date.now() / 1000 + 500);
    expect((await call(token, "/core/v1/tasks/task_nothing")).body.error.code).toBe("task_not_found");
    expect((await call(token, "/core/v1/data_centers")).body.error.code).toBe("scope_not_granted");
  });

  it("turns maintenance mode on and off", async () => {
    const token = json("token", "create", "--org", "acme").token;
    json("maintenance", "on");
    await new Promise((r) => setTimeout(r, 1100));
    expect((await call(token, "/core/v1/data_centers")).body.error.code).toBe("service_unavailable");
    json("maintenance", "off");
    await new Promise((r) => setTimeout(r, 1100));
    expect((await call(token, "/core/v1/data_centers")).status).toBe(200);
  });
});
