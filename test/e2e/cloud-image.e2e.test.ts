/**
 * END TO END, real QEMU: a cloud image. The Debian 12 template (mmdebstrap from Debian
 * packages, cloud-init, OpenSSH) boots by firmware on q35 and configures itself from the
 * NoCloud seed: hostname, addresses, routes, DNS, SSH keys, template options, disk growth.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningServer } from "../../src/server.js";
import {
  cloudTemplate,
  demoTemplate,
  e2eCatalog,
  ping,
  removeNamespace,
  ROOT,
  ssh,
  uniqueNamespace,
  startE2eServer,
  type E2eServer,
} from "../support/e2e.js";
import { until } from "../support/eventually.js";

const CLOUD_XML = readFileSync(join(ROOT, "examples/cloud.xml"), "utf8");
const namespace = uniqueNamespace();
let server: RunningServer;
let token: string;
let dataDir: string;
let e2e: E2eServer | undefined;

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

async function finishedTask(id: string) {
  const task = await until(`task ${id}`, async () => {
    const { task } = await call("GET", `/tasks/${id}`);
    return task.status === "completed" || task.status === "failed" ? task : undefined;
  });
  expect(task, JSON.stringify(task)).toMatchObject({ status: "completed" });
  return task;
}

/** The guest's disks other than the seed, as `name bytes` lines. */
async function guestDisks(address: string): Promise<string[]> {
  const listed = await ssh(
    namespace,
    address,
    "lsblk -bdnpo NAME,SIZE,RO -e 11 | awk '$3 == 0 {print $1, $2}'",
  );
  expect(listed.code, listed.stderr).toBe(0);
  return listed.stdout.trim().split("\n").sort();
}

beforeAll(async () => {
  await Promise.all([demoTemplate(), cloudTemplate()]);
  e2e = await startE2eServer({ namespace, timeouts: { ready: 600_000 } });
  ({ server, token, dataDir } = e2e);
}, 1_200_000);

afterAll(async () => {
  await (e2e ? e2e.stop() : removeNamespace(namespace));
}, 60_000);

describe("a VM from a cloud image (real QEMU, cloud-init)", () => {
  let vm: any;

  it("builds: firmware boot, cloud-init runs, the build completes", async () => {
    const accepted = await call("POST", "/organizations/_/virtual_machines/build_from_spec", {
      organization: { sub_domain: "acme" },
      xml: CLOUD_XML,
    });
    expect(accepted.virtual_machine_build?.id, JSON.stringify(accepted)).toBeTruthy();
    const build = await until("the build", async () => {
      const b = (await call("GET", `/virtual_machines/builds/${accepted.virtual_machine_build.id}`))
        .virtual_machine_build;
      return b.state === "complete" || b.state === "failed" ? b : undefined;
    });
    expect([build.state, build.failure_reason ?? null]).toEqual(["complete", null]);
    vm = (await call("GET", `/virtual_machines/${build.virtual_machine.id}`)).virtual_machine;
    expect(vm.hostname).toBe("cloud-01");
    // The q35 machine of a cloud image, not the microvm of a kernel template.
    const definition = JSON.parse(readFileSync(join(dataDir, "vms", vm.id, "definition.json"), "utf8"));
    expect(definition.template.kind).toBe("cloud");
  }, 1_200_000);

  it("answers ping on its IPv4 and IPv6 addresses, and SSH with the organization's key", async () => {
    for (const address of vm.ip_addresses.map((a: { address: string }) => a.address)) {
      expect((await ping(namespace, address)).code, address).toBe(0);
    }
    const ipv4 = vm.ip_addresses.find((a: { address: string }) => !a.address.includes(":")).address;
    const facts = await ssh(
      namespace,
      ipv4,
      "hostname; cat /etc/trebuchet/options/motd; echo; grep -m1 ^nameserver /etc/resolv.conf; lsblk -bdno SIZE /dev/vda; df -B1 --output=size / | tail -1; cloud-init status",
    );
    expect(facts.code, facts.stderr).toBe(0);
    const [hostname, motd, nameserver, diskBytes, rootBytes, status] = facts.stdout.trim().split("\n");
    expect(hostname).toBe("cloud-01");
    expect(motd).toBe("Built by Trebuchet with cloud-init");
    const catalog = e2eCatalog({ namespace });
    const dns = catalog.networks.find((n) => n.permalink === "lab-1-public")!.dns_servers;
    expect(nameserver).toBe(`nameserver ${dns[0]}`);
    // The 2 GB image was grown to the spec's 4 GB disk by cloud-init (growpart, resize2fs).
    expect(Number(diskBytes)).toBe(4 * 1024 ** 3);
    expect(Number(rootBytes)).toBeGreaterThan(3.5 * 1024 ** 3);
    expect(status).toBe("status: done");
  }, 120_000);

  it("takes a standalone disk into the running machine and gives it back, without a restart (q35 hot-plug)", async () => {
    const ipv4 = vm.ip_addresses.find((a: { address: string }) => !a.address.includes(":")).address;
    const before = await guestDisks(ipv4);
    const bootId = (await ssh(namespace, ipv4, "cat /proc/sys/kernel/random/boot_id")).stdout.trim();
    const disk = await call("POST", "/organizations/_/disks", {
      organization: { sub_domain: "acme" },
      properties: { name: "hot", size_in_gb: 3, data_center: { permalink: "lab-1" } },
    });
    await finishedTask(disk.task.id);
    await call("POST", "/disks/_/assign", { disk: { id: disk.disk.id }, virtual_machine: { id: vm.id } });
    const attached = await call("POST", "/disks/_/attach", { disk: { id: disk.disk.id } });
    expect((await finishedTask(attached.task.id)).name).toBe(
      "Apply configuration to virtual machine (disks changed live)",
    );
    // The guest finds a new 3 GB disk while it keeps running.
    const withDisk = await until(
      "the guest to see the new disk",
      async () => {
        const now = await guestDisks(ipv4);
        return now.length === before.length + 1 ? now : undefined;
      },
      60_000,
    );
    const added = withDisk.filter((line) => !before.includes(line));
    expect(added.map((line) => line.split(" ")[1])).toEqual([String(3 * 1024 ** 3)]);

    // Detached while running: the guest lets go of it, and the VM may give it back.
    const detached = await call("POST", "/disks/_/detach", { disk: { id: disk.disk.id } });
    expect((await finishedTask(detached.task.id)).name).toBe(
      "Apply configuration to virtual machine (disks changed live)",
    );
    expect(await guestDisks(ipv4)).toEqual(before);
    expect((await ssh(namespace, ipv4, "cat /proc/sys/kernel/random/boot_id")).stdout.trim()).toBe(bootId);
    await call("POST", "/disks/_/unassign", { disk: { id: disk.disk.id } });
    const read = await call("GET", `/disks/_?disk[id]=${disk.disk.id}`);
    expect(read.disk.virtual_machine_disk).toBeNull();
  }, 300_000);
});
