import { HostError, type GuestDisk } from "../driver.js";
import { driveOptions, HOTPLUG_PORTS, hotplugPort } from "./args.js";
import type { QmpSession } from "./qmp.js";

/**
 * Disks plugged into and out of a running q35 machine through QMP: the drive is opened
 * with HMP `drive_add` (so it is named and throttled exactly as a `-drive` of the command
 * line), the device goes on a free hot-plug port, and unplugging waits for the guest to
 * let go (`DEVICE_DELETED`), after which QEMU closes the drive itself.
 */

interface PciDevice {
  qdev_id?: string;
  pci_bridge?: { devices?: PciDevice[] };
}

/** What sits on each of the machine's hot-plug ports: the device's ID, or null when free. */
export async function hotplugPorts(session: QmpSession): Promise<Map<string, string | null>> {
  const buses = (await session.execute("query-pci")) as { devices?: PciDevice[] }[];
  const wanted = new Set(Array.from({ length: HOTPLUG_PORTS }, (_, i) => hotplugPort(i)));
  const ports = new Map<string, string | null>();
  for (const bus of buses) {
    for (const device of bus.devices ?? []) {
      if (!device.qdev_id || !wanted.has(device.qdev_id)) continue;
      ports.set(device.qdev_id, device.pci_bridge?.devices?.[0]?.qdev_id ?? null);
    }
  }
  return ports;
}

/** The device ID a disk's drive is attached under. */
export function diskDevice(diskId: string): string {
  return `${diskId}-device`;
}

export async function plugDisk(session: QmpSession, disk: GuestDisk, path: string, port: string) {
  const output = (await session.execute("human-monitor-command", {
    "command-line": `drive_add 0 ${driveOptions(disk, path)}`,
  })) as string;
  // HMP answers its errors as text.
  if (!/^OK\b/.test(output.trim())) throw new HostError(`drive_add ${disk.id}: ${output.trim()}`);
  try {
    await session.execute("device_add", {
      driver: "virtio-blk-pci",
      drive: disk.id,
      id: diskDevice(disk.id),
      bus: port,
    });
  } catch (error) {
    await session.execute("human-monitor-command", { "command-line": `drive_del ${disk.id}` });
    throw error;
  }
}

/** Closes a disk's drive under a device that cannot be unplugged: the guest's I/O to it fails from now on. */
export async function closeDrive(session: QmpSession, diskId: string): Promise<void> {
  const output = (await session.execute("human-monitor-command", {
    "command-line": `drive_del ${diskId}`,
  })) as string;
  if (output.trim() !== "") throw new HostError(`drive_del ${diskId}: ${output.trim()}`);
}

/** Asks the guest to release a disk and waits until it has (the drive then closes with its device). */
export async function unplugDisk(session: QmpSession, diskId: string, timeoutMs: number): Promise<void> {
  const id = diskDevice(diskId);
  await session.execute("device_del", { id });
  try {
    await session.event("DEVICE_DELETED", (data) => data.device === id, timeoutMs);
  } catch {
    throw new HostError(
      `the guest did not release disk ${diskId} within ${Math.round(timeoutMs / 1000)} s; it leaves the machine at its next start`,
    );
  }
}
