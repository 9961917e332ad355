/**
 * End to end, real QEMU: a VM's whole life after its build, as Katapult's clients drive
 * it. Build -> rename, group and tag -> a new address (the guest's agent applies it at
 * once) -> a slower speed profile (traffic to the guest measured before and after) -> an
 * IO profile (QEMU's throttle) -> its system disk grown while it runs (the guest sees it
 * at once) -> a new disk and a new interface attached -> stop -> a bigger package ->
 * start with the new memory, disk and interface -> the interface detached and deleted ->
 * delete -> restore -> delete -> purge: nothing of it left on the host, every address
 * back in the pool.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningServer } from "../../src/server.js";
import { qmp } from "../../src/hosts/qemu/qmp.js";
import { tapName } from "../../src/hosts/qemu/args.js";
import {
  demoTemplate,
  inNamespace,
  qemuProcesses,
  removeNamespace,
  ROOT,
  ssh,
  startE2eServer,
  timedSendToGuest,
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
    // The demo template's agent applied it in the running guest, and the task says so.
    expect((await reconfigured(vmId)).name).toBe(
      "Apply configuration to virtual machine (addresses applied live)",
    );
    expect(await inGuest("ip -o addr show")).toContain(`${newAddress}/24`);
    expect((await ssh(namespace, newAddress, "hostname")).code).toBe(0);

    // A slower speed profile holds traffic to the guest to it (tc on its tap), at once.
    const bytes = 400_000;
    const unlimitedMbit = (bytes * 8) / 1e6 / (await timedSendToGuest(namespace, v4, bytes));
    const slowed = await call("PATCH", "/virtual_machine_network_interfaces/_/update_speed_profile", {
      virtual_machine_network_interface: { id: publicNic.id },
      speed_profile: { permalink: "1mbps" },
    });
    await finishedTask(slowed.task.id);
    const limitedMbit = (bytes * 8) / 1e6 / (await timedSendToGuest(namespace, v4, bytes));
    console.log(
      `traffic to the guest: ${unlimitedMbit.toFixed(1)} Mbit/s unlimited, ${limitedMbit.toFixed(2)} Mbit/s at 1 Mbit/s`,
    );
    expect(limitedMbit).toBeLessThan(1.15);
    expect(limitedMbit).toBeGreaterThan(0.5);
    expect(unlimitedMbit).toBeGreaterThan(3 * limitedMbit);
    const qdisc = await inNamespace(namespace, "tc", ["qdisc", "show", "dev", tapName(publicNic.id)]);
    expect(qdisc.stdout).toMatch(/tbf .*rate 1Mbit/);
    await finishedTask(
      (
        await call("PATCH", "/virtual_machine_network_interfaces/_/update_speed_profile", {
          virtual_machine_network_interface: { id: publicNic.id },
          speed_profile: { permalink: "1gbps" },
        })
      ).task.id,
    );

    // An IO profile: QEMU throttles the running machine's drive at once.
    const qmpSocket = join(dataDir, "vms", vmId, "qmp.sock");
    const drives = await call("GET", `/virtual_machines/${vmId}/disks`);
    const systemDisk = drives.disks.find((d: any) => d.boot).disk;
    const throttled = await call("PUT", "/disks/_/io_profile", {
      disk: { id: systemDisk.id },
      io_profile: { permalink: "throttled" },
    });
    await finishedTask(throttled.task.id);
    const blocks = (await qmp(qmpSocket, "query-block")) as {
      device: string;
      inserted?: { bps: number; iops: number };
    }[];
    expect(blocks.find((b) => b.device === systemDisk.id)?.inserted).toMatchObject({
      bps: 10 * 1024 * 1024,
      iops: 200,
    });

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
    // microvm has no hot-plug: the task says the guest sees the disk from its next start.
    expect((await finishedTask(attached.task.id)).name).toBe(
      "Apply configuration to virtual machine (disks change at next start)",
    );

    // A new interface on the public network: its tap joins the bridge at once, the guest
    // sees the device from its next start (microvm has no hot-plug).
    const nic = (
      await call("POST", `/virtual_machines/${vmId}/network_interfaces`, {
        virtual_machine: { id: vmId },
        network: { permalink: "lab-1-public" },
        speed_profile: { permalink: "1gbps" },
      })
    ).virtual_machine_network_interface;
    const nicAttached = await call("POST", "/virtual_machine_network_interfaces/_/attach", {
      virtual_machine_network_interface: { id: nic.id },
    });
    await finishedTask(nicAttached.task.id);
    expect((await inNamespace(namespace, "ip", ["link", "show", tapName(nic.id)])).code).toBe(0);

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
    expect(await inGuest("cat /sys/class/net/*/address")).toContain(nic.mac_address);
    // Started with its IO profile on the drive's command line.
    const restarted = (await qmp(qmpSocket, "query-block")) as {
      device: string;
      inserted?: { bps: number };
    }[];
    expect(restarted.find((b) => b.device === systemDisk.id)?.inserted?.bps).toBe(10 * 1024 * 1024);

    // The disk detached from the running microvm (no hot-unplug): QEMU closes its drive at
    // once, so the guest's vdc answers I/O errors and no process holds the file.
    const diskDetached = await call("POST", "/disks/_/detach", { disk: { id: disk.disk.id } });
    expect((await finishedTask(diskDetached.task.id)).name).toBe(
      "Apply configuration to virtual machine (disks changed live)",
    );
    const openDrives = (await qmp(qmpSocket, "query-block")) as { device: string }[];
    expect(openDrives.map((b) => b.device)).not.toContain(disk.disk.id);
    // Far from what the guest read when the disk appeared, so no cache answers for it.
    const read = await ssh(namespace, v4, "dd if=/dev/vdc of=/dev/null bs=4096 count=1 skip=200000");
    expect(read.code).not.toBe(0);
    await call("POST", "/disks/_/unassign", { disk: { id: disk.disk.id } });

    // Detached (its tap leaves the bridge at once) and deleted.
    const nicDetached = await call("POST", "/virtual_machine_network_interfaces/_/detach", {
      virtual_machine_network_interface: { id: nic.id },
    });
    await finishedTask(nicDetached.task.id);
    expect((await inNamespace(namespace, "ip", ["link", "show", tapName(nic.id)])).code).not.toBe(0);
    await call("DELETE", "/virtual_machine_network_interfaces/_", {
      virtual_machine_network_interface: { id: nic.id },
    });

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
