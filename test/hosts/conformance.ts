/**
 * The host driver conformance suite: what every HostDriver must do, run against the QEMU
 * driver (real VMs) and the engine's test double alike.
 */
import { describe, expect, it } from "vitest";
import type { HostDriver, VmDefinition } from "../../src/hosts/driver.js";

export function driverConformance(
  name: string,
  setup: () => Promise<{
    driver: HostDriver;
    vm: (id: string) => VmDefinition;
    cleanup: () => Promise<void>;
  }>,
  timeoutMs: number,
): void {
  describe(`host driver conformance: ${name}`, () => {
    it(
      "creates, starts, reports ready, resets, shuts down, stops and destroys a VM",
      async () => {
        const { driver, vm, cleanup } = await setup();
        const definition = vm("vm_conformanceAAAAA");
        try {
          await driver.prepare();
          expect(await driver.state(definition.id)).toBe("missing");
          await driver.create(definition);
          expect(await driver.state(definition.id)).toBe("stopped");
          expect(await driver.list()).toContain(definition.id);

          await driver.start(definition.id);
          await driver.start(definition.id); // starting a running VM is a no-op
          expect(await driver.state(definition.id)).toBe("running");
          await driver.waitReady(definition.id, 0, timeoutMs);
          expect(await driver.console(definition.id)).toContain(`TREBUCHET-READY ${definition.id}`);

          const offset = await driver.consoleSize(definition.id);
          await driver.reset(definition.id);
          await driver.waitReady(definition.id, offset, timeoutMs);
          expect(
            (await driver.console(definition.id)).split(`TREBUCHET-READY ${definition.id}`).length - 1,
          ).toBeGreaterThanOrEqual(2);

          expect(await driver.shutdown(definition.id, timeoutMs)).toBe(true);
          expect(await driver.state(definition.id)).toBe("stopped");
          await expect(driver.reset(definition.id)).rejects.toThrow(/not running/);

          const again = await driver.consoleSize(definition.id);
          await driver.start(definition.id);
          await driver.waitReady(definition.id, again, timeoutMs);
          await driver.stop(definition.id);
          await driver.stop(definition.id); // stopping a stopped VM is a no-op
          expect(await driver.state(definition.id)).toBe("stopped");

          await driver.destroy(definition.id);
          await driver.destroy(definition.id); // and destroying a destroyed one
          expect(await driver.state(definition.id)).toBe("missing");
          expect(await driver.list()).not.toContain(definition.id);
        } finally {
          await driver.destroy(definition.id).catch(() => undefined);
          await cleanup();
        }
      },
      timeoutMs * 6,
    );

    it(
      "makes a standalone disk, and a VM reconfigured to have it boots with it",
      async () => {
        const { driver, vm, cleanup } = await setup();
        const definition = vm("vm_conformanceCCCCC");
        const diskId = "disk_conformanceCCCCC";
        try {
          await driver.prepare();
          const path = await driver.createDisk(diskId, 1);
          expect(await driver.createDisk(diskId, 1)).toBe(path); // idempotent
          await driver.create(definition);
          const withDisk = {
            ...definition,
            disks: [...definition.disks, { id: diskId, sizeInGb: 1, system: false, existingPath: path }],
          };
          await driver.reconfigure(withDisk);
          await driver.reconfigure(withDisk); // and so is this
          expect(await driver.state(definition.id)).toBe("stopped");
          await driver.start(definition.id);
          await driver.waitReady(definition.id, 0, timeoutMs);
          expect(await driver.state(definition.id)).toBe("running");
          await driver.destroy(definition.id);
          // The VM is gone; its standalone disk is not, until destroyed itself.
          expect(await driver.createDisk(diskId, 1)).toBe(path);
          await driver.destroyDisk(diskId);
          await driver.destroyDisk(diskId);
        } finally {
          await driver.destroy(definition.id).catch(() => undefined);
          await driver.destroyDisk(diskId).catch(() => undefined);
          await cleanup();
        }
      },
      timeoutMs * 3,
    );

    it(
      "rejects waitReady with the guest's own reason when it refuses to boot",
      async () => {
        const { driver, vm, cleanup } = await setup();
        const definition = { ...vm("vm_conformanceBBBBB"), options: [{ key: "fail_boot", value: "true" }] };
        try {
          await driver.prepare();
          await driver.create(definition);
          await driver.start(definition.id);
          await expect(driver.waitReady(definition.id, 0, timeoutMs)).rejects.toThrow(/fail_boot/);
        } finally {
          await driver.destroy(definition.id).catch(() => undefined);
          await cleanup();
        }
      },
      timeoutMs * 2,
    );

    it(
      "cleans up what no live VM owns, powering it off first, and keeps the live ones",
      async () => {
        const { driver, vm, cleanup } = await setup();
        const kept = vm("vm_conformanceKEEPS");
        const base = vm("vm_conformanceGONES");
        // Its own interface (a tap of its own), on the same network as the kept one.
        const orphan = { ...base, interfaces: base.interfaces.map((nic) => ({ ...nic, id: `${nic.id}x` })) };
        try {
          await driver.prepare();
          await driver.create(kept);
          await driver.create(orphan);
          await driver.start(orphan.id);
          expect(await driver.state(orphan.id)).toBe("running");

          const first = await driver.cleanup(new Set([kept.id]));
          expect(first.vms).toEqual([orphan.id]);
          expect(await driver.state(orphan.id)).toBe("missing");
          expect(await driver.state(kept.id)).toBe("stopped");
          expect(await driver.list()).toEqual([kept.id]);

          // Nothing more to do while the same VM is live; all of it once none is.
          expect((await driver.cleanup(new Set([kept.id]))).vms).toEqual([]);
          expect((await driver.cleanup(new Set())).vms).toEqual([kept.id]);
          expect(await driver.list()).toEqual([]);
        } finally {
          await driver.destroy(orphan.id).catch(() => undefined);
          await driver.destroy(kept.id).catch(() => undefined);
          await cleanup();
        }
      },
      timeoutMs * 2,
    );
  });
}
