/** END TO END: the host driver conformance suite against the QEMU driver, with real guests. */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { QemuDriver } from "../../src/hosts/qemu/driver.js";
import { namespaceOwner, processesIn } from "../../src/hosts/qemu/network.js";
import { demoTemplate, removeNamespace, uniqueNamespace } from "../support/e2e.js";
import { driverConformance } from "./conformance.js";

driverConformance(
  "qemu",
  async () => {
    const files = await demoTemplate();
    const namespace = uniqueNamespace();
    const vmsDir = mkdtempSync(join(tmpdir(), "trebuchet-driver-"));
    return {
      driver: new QemuDriver({
        name: "conformance",
        vmsDir,
        cacheDir: `${vmsDir}-cache`,
        disksDir: `${vmsDir}-disks`,
        namespace,
        installation: "inst_conformance",
      }),
      vm: (id) => ({
        id,
        hostname: "conformance",
        memoryInMb: 256,
        cpuCores: 1,
        template: { kind: "kernel", image: files.image, kernel: files.kernel, initrd: files.initrd },
        disks: [{ id: "disk_system", sizeInGb: 1, system: true }],
        interfaces: [
          {
            id: "vmnic_conformance0001",
            mac: "52:00:00:00:00:01",
            segment: "netw_conformance0001",
            gatewayCidrs: ["203.0.113.1/24"],
            addresses: [{ address: "203.0.113.10", prefix: 24, version: 4, gateway: "203.0.113.1" }],
          },
        ],
        dnsServers: [],
        authorizedKeys: [],
        options: [],
      }),
      cleanup: async () => {
        await removeNamespace(namespace);
        rmSync(vmsDir, { recursive: true, force: true });
        rmSync(`${vmsDir}-cache`, { recursive: true, force: true });
      },
    };
  },
  120_000,
);

describe("the QEMU driver's host state belongs to one installation", () => {
  const made: { namespace: string; dir: string }[] = [];
  const driverOf = (installation: string, at?: { namespace: string; dir: string }) => {
    const place = at ?? {
      namespace: uniqueNamespace(),
      dir: mkdtempSync(join(tmpdir(), "trebuchet-owner-")),
    };
    made.push(place);
    return {
      place,
      driver: new QemuDriver({
        name: "owner",
        vmsDir: join(place.dir, "vms"),
        cacheDir: join(place.dir, "cache"),
        disksDir: join(place.dir, "disks"),
        namespace: place.namespace,
        installation,
      }),
    };
  };
  afterAll(async () => {
    for (const { namespace, dir } of made) {
      await removeNamespace(namespace);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("removes its namespace when no VM is left, and leaves another installation's", async () => {
    const { driver, place } = driverOf("inst_ownerA");
    await driver.prepare();
    expect(await namespaceOwner(place.namespace)).toEqual({ exists: true, installation: "inst_ownerA" });
    const other = driverOf("inst_ownerB", {
      namespace: place.namespace,
      dir: mkdtempSync(join(tmpdir(), "tb-")),
    });
    await expect(other.driver.prepare()).rejects.toThrow(
      /belongs to another Trebuchet installation \(inst_ownerA/,
    );
    const foreign = await other.driver.cleanup(new Set());
    expect(foreign.namespaceRemoved).toBeNull();
    expect(foreign.notes.join("\n")).toMatch(/belongs to another Trebuchet installation/);
    expect((await namespaceOwner(place.namespace)).exists).toBe(true);

    const mine = await driver.cleanup(new Set());
    expect(mine.namespaceRemoved).toBe(place.namespace);
    expect(await namespaceOwner(place.namespace)).toEqual({ exists: false });
  });

  it("takes back an abandoned namespace of another installation only when nothing lives in it", async () => {
    const { place } = driverOf("inst_gone");
    const gone = new QemuDriver({
      name: "gone",
      vmsDir: join(place.dir, "vms-gone"),
      cacheDir: join(place.dir, "cache"),
      disksDir: join(place.dir, "disks"),
      namespace: place.namespace,
      installation: "inst_gone",
    });
    await gone.prepare();
    const { driver } = driverOf("inst_here", {
      namespace: place.namespace,
      dir: mkdtempSync(join(tmpdir(), "tb-")),
    });
    const sleeper = spawn("ip", ["netns", "exec", place.namespace, "sleep", "60"], { stdio: "ignore" });
    try {
      await waitFor(async () => (await processesIn(place.namespace)).length > 0);
      await expect(driver.cleanup(new Set(), { abandoned: true })).rejects.toThrow(
        /is not abandoned: 1 process\(es\) live in it/,
      );
    } finally {
      sleeper.kill();
    }
    await waitFor(async () => (await processesIn(place.namespace)).length === 0);
    expect((await driver.cleanup(new Set(), { abandoned: true })).namespaceRemoved).toBe(place.namespace);
    await driver.prepare();
    expect(await namespaceOwner(place.namespace)).toEqual({ exists: true, installation: "inst_here" });
  });

  it("refuses a VM directory another installation's agent marked", async () => {
    const { driver, place } = driverOf("inst_dirA");
    await driver.prepare();
    const other = driverOf("inst_dirB", { namespace: uniqueNamespace(), dir: place.dir });
    await expect(other.driver.prepare()).rejects.toThrow(
      `${join(place.dir, "vms")} holds the VMs of another Trebuchet installation (inst_dirA; this one is inst_dirB)`,
    );
    await expect(other.driver.cleanup(new Set())).rejects.toThrow(/holds the VMs of another/);
  });
});

async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100 && !(await condition()); i++) await new Promise((r) => setTimeout(r, 50));
  expect(await condition()).toBe(true);
}
