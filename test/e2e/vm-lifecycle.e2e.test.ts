/**
 * END TO END, real QEMU (TCG): the example spec becomes a running VM that answers ping
 * and SSH at its addresses; power actions really change the guest; deletion leaves
 * nothing behind; a build that must fail says why and gives its addresses back.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tapName } from "../../src/hosts/qemu/args.js";
import type { RunningServer } from "../../src/server.js";
import { runCliAsync } from "../support/cli.js";
import {
  demoTemplate,
  inNamespace,
  ping,
  qemuProcesses,
  removeNamespace,
  ROOT,
  ssh,
  uniqueNamespace,
  startE2eServer,
  type E2eServer,
} from "../support/e2e.js";
import { until } from "../support/eventually.js";

const WEB_XML = readFileSync(join(ROOT, "examples/web.xml"), "utf8");
const BUILD = "/core/v1/organizations/_/virtual_machines/build_from_spec";

let server: RunningServer;
let token: string;
let dataDir: string;
let e2e: E2eServer | undefined;
let url: string;
const namespace = uniqueNamespace();

async function call(method: string, path: string, body?: unknown) {
  const response = await server.app.inject({
    method: method as "GET",
    url: path,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    ...(body ? { payload: JSON.stringify(body) } : {}),
  });
  return { status: response.statusCode, body: response.json() as any };
}

const finishedBuild = (id: string) =>
  until(`build ${id}`, async () => {
    const { body } = await call("GET", `/core/v1/virtual_machines/builds/${id}`);
    const build = body.virtual_machine_build;
    return build.state === "complete" || build.state === "failed" ? build : undefined;
  });

const finishedTask = (id: string) =>
  until(`task ${id}`, async () => {
    const { body } = await call("GET", `/core/v1/tasks/${id}`);
    return body.task.status === "completed" || body.task.status === "failed" ? body.task : undefined;
  });

async function vmView(id: string) {
  return (await call("GET", `/core/v1/virtual_machines/${id}`)).body.virtual_machine;
}

beforeAll(async () => {
  await demoTemplate();
  e2e = await startE2eServer({
    namespace,
    timeouts: { ready: 300_000, shutdown: 30_000 },
    hostMemoryInGb: 4,
  });
  ({ server, token, dataDir } = e2e);
  url = await server.app.listen({ host: "127.0.0.1", port: 0 });
}, 600_000);

afterAll(async () => {
  await (e2e ? e2e.stop() : removeNamespace(namespace));
}, 60_000);

describe("a VM built from examples/web.xml (real QEMU)", () => {
  let vmId: string;
  let addresses: string[];

  it("builds: the build and its task move through their states to complete / completed", async () => {
    const accepted = await call("POST", BUILD, { organization: { sub_domain: "acme" }, xml: WEB_XML });
    expect(accepted.status).toBe(201);
    const states = new Set<string>();
    const build = await until("the build", async () => {
      const { body } = await call(
        "GET",
        `/core/v1/virtual_machines/builds/${accepted.body.virtual_machine_build.id}`,
      );
      states.add(body.virtual_machine_build.state);
      const b = body.virtual_machine_build;
      return b.state === "complete" || b.state === "failed" ? b : undefined;
    });
    expect(build.failure_reason).toBeNull();
    expect(build.state).toBe("complete");
    expect([...states].filter((s) => s !== "pending" && s !== "complete")).toEqual(
      expect.arrayContaining(["building"]),
    );
    const task = (await call("GET", `/core/v1/tasks/${accepted.body.task.id}`)).body.task;
    expect(task).toMatchObject({ status: "completed", progress: 100 });
    expect(task.started_at).toBeGreaterThan(0);
    expect(task.finished_at).toBeGreaterThanOrEqual(task.started_at);
    vmId = build.virtual_machine.id;
    const vm = await vmView(vmId);
    expect(vm.state).toBe("started");
    addresses = vm.ip_addresses.map((ip: any) => ip.address);
    expect(addresses).toEqual(["192.0.2.10", "198.51.100.10", "2001:db8:100::10"]);
    expect(qemuProcesses(vmId)).toHaveLength(1);
  }, 600_000);

  it("the server with its host agent reports ready, the agent's reconcile included", async () => {
    const response = await server.app.inject({ method: "GET", url: "/readyz" });
    expect(response.statusCode, response.body).toBe(200);
    const checks = (response.json() as { checks: { name: string; ok: boolean }[] }).checks;
    expect(checks.find((check) => check.name === "host_agent")).toMatchObject({ ok: true });
  });

  it("answers ping on its IPv4 and IPv6 addresses from the namespace", async () => {
    for (const address of addresses) {
      const result = await ping(namespace, address);
      expect(result.code, `${address}: ${result.stdout}${result.stderr}`).toBe(0);
    }
  });

  it("accepts SSH with the organization's key, with the spec's hostname, interfaces and disks", async () => {
    const result = await ssh(
      namespace,
      "192.0.2.10",
      "hostname; ls /sys/class/net; ls /sys/block; cat /etc/motd; ip -o addr show dev eth1",
    );
    expect(result.code, result.stderr).toBe(0);
    const [hostname, ...rest] = result.stdout.trim().split("\n");
    expect(hostname).toBe("web-01");
    expect(rest).toEqual(expect.arrayContaining(["eth0", "eth1", "vda", "vdb"]));
    expect(result.stdout).toContain("Built by Trebuchet");
    expect(result.stdout).toContain("198.51.100.10/24");
  });

  it("lists its interfaces and disks through the API", async () => {
    const nics = (await call("GET", `/core/v1/virtual_machines/${vmId}/network_interfaces`)).body
      .virtual_machine_network_interfaces;
    expect(nics.map((n: any) => n.ip_addresses.map((ip: any) => ip.address))).toEqual([
      ["192.0.2.10", "2001:db8:100::10"],
      ["198.51.100.10"],
    ]);
    const disks = (await call("GET", `/core/v1/virtual_machines/${vmId}/disks`)).body.disks;
    expect(disks.map((d: any) => [d.disk.name, d.disk.size_in_gb, d.boot, d.state])).toEqual([
      ["System Disk", 2, true, "attached"],
      ["Data", 1, false, "attached"],
    ]);
    const console = (await call("GET", `/core/v1/virtual_machines/${vmId}/console`)).body.console;
    expect(console).toContain(`TREBUCHET-READY ${vmId}`);
  });

  it("stop powers it off; start boots it again", async () => {
    const stop = await call("POST", `/core/v1/virtual_machines/_/stop?virtual_machine[id]=${vmId}`);
    expect(stop.body.task).toMatchObject({ name: "Stop virtual machine", status: "pending" });
    expect((await finishedTask(stop.body.task.id)).status).toBe("completed");
    expect((await vmView(vmId)).state).toBe("stopped");
    expect(qemuProcesses(vmId)).toEqual([]);
    expect((await ping(namespace, "192.0.2.10")).code).not.toBe(0);

    const start = await call("POST", "/core/v1/virtual_machines/virtual_machine/start", {
      virtual_machine: { id: vmId },
    });
    expect((await finishedTask(start.body.task.id)).status).toBe("completed");
    expect((await vmView(vmId)).state).toBe("started");
    expect((await ssh(namespace, "192.0.2.10", "hostname")).stdout.trim()).toBe("web-01");
  }, 600_000);

  it("reset reboots the guest (a new boot ID)", async () => {
    const before = (await ssh(namespace, "192.0.2.10", "cat /proc/sys/kernel/random/boot_id")).stdout.trim();
    expect(before).toMatch(/^[0-9a-f-]{36}$/);
    const reset = await call("POST", `/core/v1/virtual_machines/_/reset?virtual_machine[id]=${vmId}`);
    expect((await finishedTask(reset.body.task.id)).status).toBe("completed");
    const after = (await ssh(namespace, "192.0.2.10", "cat /proc/sys/kernel/random/boot_id")).stdout.trim();
    expect(after).toMatch(/^[0-9a-f-]{36}$/);
    expect(after).not.toBe(before);
  }, 600_000);

  it("shutdown asks the guest to power off through ACPI", async () => {
    const shutdown = await call("POST", `/core/v1/virtual_machines/_/shutdown?virtual_machine[id]=${vmId}`);
    expect((await finishedTask(shutdown.body.task.id)).status).toBe("completed");
    expect((await vmView(vmId)).state).toBe("stopped");
    expect(qemuProcesses(vmId)).toEqual([]);
    const console = readFileSync(join(dataDir, "vms", vmId, "console.log"), "utf8");
    expect(console).toContain("power button: shutting down");
  }, 600_000);

  it("delete keeps the VM in the trash powered off; restore brings it back; purge leaves no disk, tap or process and gives the addresses back", async () => {
    const start = await call("POST", `/core/v1/virtual_machines/_/start?virtual_machine[id]=${vmId}`);
    await finishedTask(start.body.task.id);
    const nics = await server.store.db
      .selectFrom("network_interfaces")
      .select("id")
      .where("virtual_machine_id", "=", vmId)
      .execute();
    expect(nics).toHaveLength(2);
    const tapsShown = () =>
      Promise.all(nics.map((nic) => inNamespace(namespace, "ip", ["link", "show", tapName(nic.id)])));
    const held = () =>
      server.store.db
        .selectFrom("ip_addresses")
        .select("address")
        .where("allocation_id", "=", vmId)
        .execute();
    const addresses = (await held()).map((a) => a.address).sort();
    expect(addresses.length).toBeGreaterThan(0);
    for (const shown of await tapsShown()) expect(shown.code, shown.stderr).toBe(0);

    const deleted = await call("DELETE", `/core/v1/virtual_machines/_?virtual_machine[id]=${vmId}`);
    expect(deleted.status).toBe(200);
    expect(deleted.body.trash_object).toMatchObject({ object_id: vmId, object_type: "VirtualMachine" });
    expect(deleted.body.trash_object.keep_until - Math.floor(Date.now() / 1000)).toBeGreaterThan(86_300);
    const task = await until("the delete task", async () => {
      const row = await server.store.db
        .selectFrom("tasks")
        .selectAll()
        .where("object_id", "=", vmId)
        .where("action", "=", "delete")
        .executeTakeFirst();
      return row && (row.status === "completed" || row.status === "failed") ? row : undefined;
    });
    expect(task.status).toBe("completed");
    // In the trash: powered off, its disks, taps and addresses kept.
    expect(qemuProcesses(vmId)).toEqual([]);
    expect(existsSync(join(dataDir, "vms", vmId))).toBe(true);
    for (const shown of await tapsShown()) expect(shown.code, shown.stderr).toBe(0);
    expect((await held()).map((a) => a.address).sort()).toEqual(addresses);
    expect(
      (await call("GET", `/core/v1/virtual_machines/_?virtual_machine[id]=${vmId}`)).body.error.code,
    ).toBe("object_in_trash");

    // Restored: back, powered off, and it boots again from its own disk.
    const restored = await call("POST", `/core/v1/trash_objects/_/restore?trash_object[object_id]=${vmId}`);
    expect(restored.status, JSON.stringify(restored.body)).toBe(200);
    const back = await call("GET", `/core/v1/virtual_machines/_?virtual_machine[id]=${vmId}`);
    expect(back.body.virtual_machine.state).toBe("stopped");
    const again = await call("POST", `/core/v1/virtual_machines/_/start?virtual_machine[id]=${vmId}`);
    expect((await finishedTask(again.body.task.id)).status).toBe("completed");
    expect(qemuProcesses(vmId)).toHaveLength(1);

    // Deleted again and purged: nothing of it is left on the host.
    const second = await call("DELETE", `/core/v1/virtual_machines/_?virtual_machine[id]=${vmId}`);
    expect(second.status).toBe(200);
    const purge = await call(
      "DELETE",
      `/core/v1/trash_objects/_?trash_object[id]=${second.body.trash_object.id}`,
    );
    expect(purge.status, JSON.stringify(purge.body)).toBe(200);
    expect((await finishedTask(purge.body.task.id)).status).toBe("completed");
    expect(qemuProcesses(vmId)).toEqual([]);
    expect(existsSync(join(dataDir, "vms", vmId))).toBe(false);
    for (const shown of await tapsShown()) {
      expect(shown.code, "a tap outlived its VM").not.toBe(0);
      expect(shown.stderr).toMatch(/does not exist/);
    }
    expect(await held()).toEqual([]);
    expect(
      (await call("GET", `/core/v1/virtual_machines/_?virtual_machine[id]=${vmId}`)).body.error.code,
    ).toBe("virtual_machine_not_found");
  }, 600_000);
});

describe("the user CLI (real QEMU, real socket)", () => {
  it("trebuchet build --wait follows a build live and prints how to connect", async () => {
    const result = await runCliAsync(["build", "-", "--org", "acme", "--wait"], {
      input: WEB_XML.replace("web-01", "cli-01"),
      env: { TREBUCHET_URL: url, TREBUCHET_TOKEN: token },
    });
    expect(result.status, result.stderr + result.stdout).toBe(0);
    expect(result.stderr).toMatch(/build building task running/);
    expect(result.stdout).toMatch(/complete in [0-9.]+ s/);
    expect(result.stdout).toMatch(/hostname {3}cli-01 \(cli-01\.acme\.e2e\.test\)/);
    expect(result.stdout).toContain("ssh root@192.0.2.");
    const vmId = /VM +(vm_[A-Za-z0-9]+)/.exec(result.stdout)![1]!;
    const shown = await runCliAsync(["vm", "show", vmId, "--output", "json"], {
      env: { TREBUCHET_URL: url, TREBUCHET_TOKEN: token },
    });
    expect(JSON.parse(shown.stdout).virtual_machine.state).toBe("started");
    const deleted = await runCliAsync(["vm", "delete", vmId, "--purge"], {
      env: { TREBUCHET_URL: url, TREBUCHET_TOKEN: token },
    });
    expect(deleted.stdout, deleted.stderr).toMatch(/purged: task task_\w+ completed/);
    await until("the purge", async () =>
      qemuProcesses(vmId).length === 0 && !existsSync(join(dataDir, "vms", vmId)) ? true : undefined,
    );
  }, 600_000);
});

describe("builds that must fail (real QEMU)", () => {
  it("a template option the guest rejects fails the build with the guest's reason, and releases its addresses", async () => {
    const before = await server.store.db.selectFrom("ip_addresses").select("id").execute();
    const xml = WEB_XML.replace(
      '<Option key="motd">Built by Trebuchet</Option>',
      '<Option key="fail_boot">true</Option>',
    ).replace("web-01", "doomed");
    const accepted = await call("POST", BUILD, { organization: { sub_domain: "acme" }, xml });
    expect(accepted.status).toBe(201);
    const build = await finishedBuild(accepted.body.virtual_machine_build.id);
    expect(build.state).toBe("failed");
    expect(build.failure_reason).toMatch(/fail_boot=true/);
    const task = (await call("GET", `/core/v1/tasks/${accepted.body.task.id}`)).body.task;
    expect(task).toMatchObject({ status: "failed", error: build.failure_reason });
    const after = await server.store.db.selectFrom("ip_addresses").select("id").execute();
    expect(after.length).toBe(before.length);
    const vm = await server.store.db
      .selectFrom("virtual_machines")
      .selectAll()
      .where("hostname", "=", "doomed")
      .executeTakeFirstOrThrow();
    expect(vm.state).toBe("failed");
    expect(existsSync(join(dataDir, "vms", vm.id))).toBe(false);
    expect(qemuProcesses(vm.id)).toEqual([]);
  }, 600_000);

  it("a build no host has room for fails and says so", async () => {
    // The host has 4 GB; two 2 GB VMs fit, the third does not.
    const xml = (name: string) => WEB_XML.replace("small-1", "medium-2").replace("web-01", name);
    const ids = [];
    for (const name of ["room-1", "room-2", "room-3"]) {
      const accepted = await call("POST", BUILD, { organization: { sub_domain: "acme" }, xml: xml(name) });
      expect(accepted.status).toBe(201);
      ids.push(accepted.body.virtual_machine_build.id);
    }
    const builds = await Promise.all(ids.map(finishedBuild));
    expect(builds.map((b) => b.state).sort(), JSON.stringify(builds.map((b) => b.failure_reason))).toEqual([
      "complete",
      "complete",
      "failed",
    ]);
    const failed = builds.find((b) => b.state === "failed");
    expect(failed.failure_reason).toMatch(/no hypervisor host in data center lab-1 has room for 2 GB/);
  }, 600_000);
});
