/**
 * END TO END, real QEMU and PostgreSQL: one API process and three worker processes
 * (`trebuchet serve --role worker`), one per catalog host, each host in a network
 * namespace of its own, cooperating through the database alone. Every build is run
 * exactly once, placement never overfills a host, and deletion reaches the right host.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyCatalog } from "../../src/catalog/apply.js";
import { CLI } from "../support/cli.js";
import {
  demoTemplate,
  e2eCatalog,
  freePort,
  inNamespace,
  qemuProcesses,
  removeNamespace,
  ROOT,
  ssh,
  uniqueNamespace,
  e2eTenant,
  killVmProcesses,
} from "../support/e2e.js";
import { until } from "../support/eventually.js";
import { openTestStore, type TestStore } from "../support/stores.js";

const HOSTS = ["local", "local-2", "local-3"];
/** small-1 VMs take 1 GB: two fit on each host, so six builds need all three. */
const BUILDS = 6;
const WEB_XML = readFileSync(join(ROOT, "examples/web.xml"), "utf8").replace(
  /<NetworkInterface>\s*<Network by="permalink">lab-1-private[\s\S]*?<\/NetworkInterface>/,
  "",
);

const namespaces = new Map(HOSTS.map((host) => [host, uniqueNamespace()]));
const dataDirs = new Map<string, string>();
const processes: ChildProcess[] = [];
let store: TestStore;
let token: string;
let port: number;

function start(args: string[], dataDir: string): ChildProcess {
  const child = spawn(process.execPath, [CLI, "serve", "--data", dataDir, ...args], {
    env: {
      ...process.env,
      DATABASE_URL: store.options.databaseUrl!,
      TREBUCHET_LOG_LEVEL: "warn",
      TREBUCHET_READY_TIMEOUT: "300",
      // Six builds polled every 200 ms for a minute pass the default 1,000 reads a minute.
      TREBUCHET_RATE_LIMITS: "read=100000,write=100000,build=100000",
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  processes.push(child);
  return child;
}

async function call(method: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(`http://127.0.0.1:${port}/core/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(answer)}`);
  return answer;
}

beforeAll(async () => {
  await demoTemplate();
  store = await openTestStore("postgres");
  const catalog = e2eCatalog({ namespace: namespaces.get("local")! });
  const host = catalog.hosts[0]!;
  catalog.hosts = HOSTS.map((name) => ({ ...host, name, namespace: namespaces.get(name)!, memory_in_gb: 2 }));
  await applyCatalog(store.db, catalog);
  token = await e2eTenant(store.db);

  port = await freePort();
  start(["--role", "api", "--listen", `127.0.0.1:${port}`], mkdtempSync(join(tmpdir(), "trebuchet-api-")));
  for (const name of HOSTS) {
    dataDirs.set(name, mkdtempSync(join(tmpdir(), `trebuchet-${name}-`)));
    start(["--role", "worker", "--host", name], dataDirs.get(name)!);
  }
  await until(
    "the API",
    () => fetch(`http://127.0.0.1:${port}/core/v1/data_centers`).then(() => true),
    30_000,
  );
}, 300_000);

afterAll(async () => {
  for (const child of processes) child.kill("SIGTERM");
  await Promise.all(processes.map((child) => new Promise((resolve) => child.once("exit", resolve))));
  await killVmProcesses(store.db);
  await store.dispose();
  for (const namespace of namespaces.values()) await removeNamespace(namespace);
  for (const dir of dataDirs.values()) rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe("worker processes on PostgreSQL (real QEMU)", () => {
  const vms: { id: string; host: string; address: string; hostname: string }[] = [];

  it(`runs ${BUILDS} builds submitted at once exactly once each, spread over the hosts with room`, async () => {
    const accepted = await Promise.all(
      Array.from({ length: BUILDS }, (_, i) =>
        call("POST", "/organizations/_/virtual_machines/build_from_spec", {
          organization: { sub_domain: "acme" },
          xml: WEB_XML.replace("web-01", `spread-${i}`),
        }),
      ),
    );
    const builds = await Promise.all(
      accepted.map((a) =>
        until(`build ${a.virtual_machine_build.id}`, async () => {
          const b = (await call("GET", `/virtual_machines/builds/${a.virtual_machine_build.id}`))
            .virtual_machine_build;
          return b.state === "complete" || b.state === "failed" ? b : undefined;
        }),
      ),
    );
    expect(builds.map((b) => [b.state, b.failure_reason ?? null])).toEqual(
      builds.map(() => ["complete", null]),
    );

    const rows = await store.db
      .selectFrom("builds")
      .innerJoin("virtual_machines", "virtual_machines.id", "builds.virtual_machine_id")
      .innerJoin("hosts", "hosts.id", "virtual_machines.host_id")
      .select(["builds.attempts", "virtual_machines.id", "virtual_machines.hostname", "hosts.name as host"])
      .execute();
    // Exactly once: one attempt each, one QEMU each, on the host the database says, and nowhere else.
    expect(rows.map((r) => r.attempts)).toEqual(rows.map(() => 1));
    for (const row of rows) {
      expect(qemuProcesses(row.id)).toHaveLength(1);
      for (const host of HOSTS) {
        expect(existsSync(join(dataDirs.get(host)!, "vms", row.id)), `${row.id} on ${host}`).toBe(
          host === row.host,
        );
      }
      const vm = (await call("GET", `/virtual_machines/${row.id}`)).virtual_machine;
      vms.push({ id: row.id, host: row.host, address: vm.ip_addresses[0].address, hostname: row.hostname });
    }
    // First fit with 2 GB hosts and 1 GB VMs: two on each host, none overfilled.
    const perHost = HOSTS.map((host) => rows.filter((r) => r.host === host).length);
    expect(perHost).toEqual([2, 2, 2]);
  }, 900_000);

  it("each VM answers SSH inside its own host's namespace, and only there", async () => {
    for (const vm of vms) {
      const own = await ssh(namespaces.get(vm.host)!, vm.address, "hostname");
      expect(own.stdout.trim()).toBe(vm.hostname);
      const elsewhere = HOSTS.find((host) => host !== vm.host)!;
      const stranger = await inNamespace(namespaces.get(elsewhere)!, "ping", [
        "-c",
        "1",
        "-W",
        "1",
        vm.address,
      ]);
      expect(stranger.code).not.toBe(0);
    }
  }, 300_000);

  it("deletion and purging are carried out by the worker of the VM's host", async () => {
    const deleted = await Promise.all(vms.map((vm) => call("DELETE", `/virtual_machines/${vm.id}`)));
    expect(deleted.map((d) => d.trash_object?.object_id)).toEqual(vms.map((vm) => vm.id));
    const purged = await Promise.all(
      deleted.map((d) => call("DELETE", `/trash_objects/_?trash_object[id]=${d.trash_object.id}`)),
    );
    expect(purged.map((p) => p.task?.name)).toEqual(vms.map(() => "Purge items from trash"));
    await until("the hosts to clear", async () =>
      vms.every(
        (vm) => qemuProcesses(vm.id).length === 0 && !existsSync(join(dataDirs.get(vm.host)!, "vms", vm.id)),
      )
        ? true
        : undefined,
    );
    for (const vm of vms) {
      expect(qemuProcesses(vm.id)).toEqual([]);
      expect(readdirSync(join(dataDirs.get(vm.host)!, "vms")).includes(vm.id)).toBe(false);
    }
  }, 300_000);
});
