/**
 * End to end, real QEMU: a VM's whole life after its build, as Katapult's clients drive
 * it. Build -> rename, group and tag -> a new address -> its system disk grown while it
 * runs (the guest sees it at once) -> a new disk attached -> stop -> a bigger package ->
 * start with the new memory, address and disk -> delete -> restore -> delete -> purge:
 * nothing of it left on the host, every address back in the pool.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningServer } from "../../src/server.js";
import {
  demoTemplate,
  qemuProcesses,
  removeNamespace,
  ROOT,
  ssh,
  startE2eServer,
  uniqueNamespace,
  type E2eServer,
} from "../support/e2e.js";
import { until } from "../support/eventually.js";

const WEB_XML = readFileSync(join(ROOT, "examples/web.xml"), "utf8").replace("web-01", "changes-01");
const GB = 1024 ** 3;

let server: RunningServer;
let token: string;
let dataDir: string;
let e2e: E2eServer | undefined;
const namespace = uniqueNamespace();

async function call(method: string, path: string, body?: unknown) {
  const response = await server.app.inject({
    method: method as "GET",
    url: `/core/v1${path}`,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    ...(body ? { payload: JSON.stringify(body) } : {}),
  });
  const parsed = response.json() as any;
  if (response.statusCode >= 300)
    throw new Error(`${method} ${path}: ${response.statusCode} ${response.body}`);
  return parsed;
}

const finishedTask = async (id: string) => {
  const task = await until(`task ${id}`, async () => {
    const { task } = await call("GET", `/tasks/${id}`);
    return task.status === "completed" || task.status === "failed" ? task : undefined;
  });
  expect(task, JSON.stringify(task)).toMatchObject({ status: "completed" });
  return task;
};

/** The VM's last reconfiguration, finished. */
async function reconfigured(vmId: string) {
  const task = await server.store.db
    .selectFrom("tasks")
    .select("id")
    .where("object_id", "=", vmId)
    .where("action", "=", "reconfigure")
    .orderBy("queue_position", "desc")
    .executeTakeFirstOrThrow();
  return finishedTask(task.id);
}

beforeAll(async () => {
  await demoTemplate();
  e2e = await startE2eServer({
    namespace,
    timeouts: { ready: 300_000, shutdown: 30_000 },
    hostMemoryInGb: 8,
  });
  ({ server, token, dataDir } = e2e);
}, 600_000);

afterAll(async () => {
  await (e2e ? e2e.stop() : removeNamespace(namespace));
}, 60_000);

describe("a VM's life after its build (real QEMU)", () => {
  it("changes, new address, grown and new disks, new package, trash and purge: each reaches the guest or the host", async () => {
    const accepted = await call("POST", "/organizations/_/virtual_machines/build_from_spec", {
      organization: { sub_domain: "acme" },
      xml: WEB_XML,
    });
    const build = await until("the build", async () => {
      const { virtual_machine_build: b } = await call("GET", `/virtual_machines/builds/${accepted.build.id}`);
      return b.state === "complete" || b.state === "failed" ? b : undefined;
    });
    expect(build.state, build.failure_reason).toBe("complete");
    const vmId = build.virtual_machine.id as string;
    const first = (await call("GET", `/virtual_machines/${vmId}`)).virtual_machine;
    const v4 = first.ip_addresses.find((ip: { address: string }) =>
      ip.address.startsWith("192.0.2."),
    ).address;
    const inGuest = async (command: string) => {
      const result = await ssh(namespace, v4, command);
      expect(result.code, `${command}: ${result.stderr}`).toBe(0);
      return result.stdout.trim();
    };

    // Name, group and tags.
    const group = await call("POST", "/organizations/_/virtual_machine_groups", {
      organization: { sub_domain: "acme" },
      properties: { name: "changed" },
    });
    const patched = await call("PATCH", "/virtual_machines/_", {
      virtual_machine: { id: vmId },
      properties: { name: "Changed", group: { id: group.virtual_machine_group.id }, tag_names: ["changed"] },
    });
    expect(patched.virtual_machine).toMatchObject({
      name: "Changed",
      group: { name: "changed" },
      tag_names: ["changed"],
    });

    // A new address on its public interface.
    const nics = await call("GET", `/virtual_machines/${vmId}/network_interfaces`);
    const publicNic = nics.virtual_machine_network_interfaces.find(
      (n: any) => n.network?.name === "Lab 1 public",
    );
    const added = await call("POST", "/virtual_machine_network_interfaces/_/allocate_new_ip", {
      virtual_machine_network_interface: { id: publicNic.id },
      address_version: "ipv4",
    });
    const newAddress = added.ip_address.address as string;
    expect(newAddress).toMatch(/^192\.0\.2\./);
    await reconfigured(vmId);

    // The system disk grows while the VM runs: the guest sees the new size at once.
    const disks = await call("GET", `/virtual_machines/${vmId}/disks`);
    const system = disks.disks.find((d: any) => d.boot).disk;
    expect(Number(await inGuest("cat /sys/block/vda/size")) * 512).toBe(system.size_in_gb * GB);
    await call("PUT", "/disks/_/resize", { disk: { id: system.id }, size_in_gb: system.size_in_gb + 1 });
    await reconfigured(vmId);
    await until("the guest to see its grown disk", async () =>
      Number(await inGuest("cat /sys/block/vda/size")) * 512 === (system.size_in_gb + 1) * GB
        ? true
        : undefined,
    );

    // A new disk, made on the host, assigned and attached.
    const disk = await call("POST", "/organizations/_/disks", {
      organization: { sub_domain: "acme" },
      properties: { name: "extra", size_in_gb: 3, data_center: { permalink: "lab-1" } },
    });
    await finishedTask(disk.task.id);
    expect(existsSync(join(dataDir, "disks", `${disk.disk.id}.qcow2`))).toBe(true);
    await call("POST", "/disks/_/assign", { disk: { id: disk.disk.id }, virtual_machine: { id: vmId } });
    const attached = await call("POST", "/disks/_/attach", { disk: { id: disk.disk.id } });
    await finishedTask(attached.task.id);

    // Stopped, given a bigger package, started: the guest has its new memory, address and disk.
    await finishedTask((await call("POST", `/virtual_machines/${vmId}/stop`)).task.id);
    const packaged = await call("PUT", "/virtual_machines/_/package", {
      virtual_machine: { id: vmId },
      virtual_machine_package: { permalink: "medium-2" },
    });
    await finishedTask(packaged.task.id);
    await finishedTask((await call("POST", `/virtual_machines/${vmId}/start`)).task.id);
    const memTotalKb = Number(/MemTotal:\s+(\d+)/.exec(await inGuest("cat /proc/meminfo"))![1]);
    expect(memTotalKb).toBeGreaterThan(1.5 * 1024 * 1024);
    expect(memTotalKb).toBeLessThan(2 * 1024 * 1024);
    expect(await inGuest("ip -o addr show")).toContain(`${newAddress}/24`);
    // medium-2 stores 4 GB: the system disk grew to it while stopped.
    expect(Number(await inGuest("cat /sys/block/vda/size")) * 512).toBe(4 * GB);
    expect(Number(await inGuest("cat /sys/block/vdc/size")) * 512).toBe(3 * GB);

    // Deleted, restored, deleted again and purged.
    const deleted = await call("DELETE", `/virtual_machines/_?virtual_machine[id]=${vmId}`);
    await until("the delete", async () => (qemuProcesses(vmId).length === 0 ? true : undefined));
    await call("POST", "/trash_objects/_/restore", { trash_object: { id: deleted.trash_object.id } });
    expect((await call("GET", `/virtual_machines/${vmId}`)).virtual_machine.state).toBe("stopped");
    const again = await call("DELETE", `/virtual_machines/_?virtual_machine[id]=${vmId}`);
    const purge = await call("DELETE", "/trash_objects/_", { trash_object: { id: again.trash_object.id } });
    await finishedTask(purge.task.id);
    expect(qemuProcesses(vmId)).toEqual([]);
    expect(existsSync(join(dataDir, "vms", vmId))).toBe(false);
    const held = await server.store.db.selectFrom("ip_addresses").select("address").execute();
    expect(held).toEqual([]);
    // The disk made on its own outlived the VM, detached; purged in turn, nothing is left.
    const kept = await call("GET", `/disks/_?disk[id]=${disk.disk.id}`);
    expect(kept.disk.virtual_machine_disk).toBeNull();
    const trashed = await call("DELETE", "/disks/_", { disk: { id: disk.disk.id } });
    await finishedTask(
      (await call("DELETE", "/trash_objects/_", { trash_object: { id: trashed.trash_object.id } })).task.id,
    );
    expect(readdirSync(join(dataDir, "disks"))).toEqual([]);
  }, 900_000);
});
