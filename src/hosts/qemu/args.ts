import type { GuestDisk, VmDefinition } from "../driver.js";

export type Accelerator = "kvm" | "tcg";
export type Networking = "tap" | "user";

export interface VmPaths {
  directory: string;
  disk: (diskId: string) => string;
  seedIso: string;
  console: string;
  qmp: string;
  /** The socket of Trebuchet's guest agent (a virtio-serial port), on templates that have one. */
  agent: string;
  pid: string;
}

/** The name of the agent's virtio-serial port, which the demo template's init looks for. */
export const AGENT_PORT = "org.trebuchet.agent";

/** Does the guest run Trebuchet's agent? The demo template (a kernel template) does. */
export function hasAgent(vm: VmDefinition): boolean {
  return vm.template.kind === "kernel";
}

/** QEMU's throttling options for a disk's IO profile (pure); empty when unlimited. */
export function throttling(limits: GuestDisk["limits"]): string {
  const options: string[] = [];
  if (limits?.megabytesPerSecond)
    options.push(`throttling.bps-total=${limits.megabytesPerSecond * 1024 * 1024}`);
  if (limits?.iops) options.push(`throttling.iops-total=${limits.iops}`);
  return options.map((o) => `,${o}`).join("");
}

/**
 * PCIe root ports a q35 machine starts with for disks that may come and go while it runs:
 * standalone disks it starts with take the first, disks attached later the free ones. A
 * port takes a slot of the root bus; none reserves IO space (virtio on PCIe is modern-only).
 */
export const HOTPLUG_PORTS = 4;

/** The ID of a q35 machine's `index`th hot-plug port. */
export function hotplugPort(index: number): string {
  return `hotplug${index}`;
}

/** A disk's drive options for `-drive` and HMP `drive_add` (pure). */
export function driveOptions(disk: GuestDisk, path: string): string {
  return `id=${disk.id},file=${escapeOption(path)},format=qcow2,if=none,cache=writeback${throttling(disk.limits)}`;
}

/** QEMU option values double their commas. */
function escapeOption(value: string): string {
  return value.replaceAll(",", ",,");
}

/**
 * The last 12 characters of an ID: its random part and the fastest-moving digits of its
 * time (IDs begin with their creation time, so IDs made together share their beginnings).
 */
function idTail(id: string): string {
  return id.slice(Math.max(id.indexOf("_") + 1, id.length - 12));
}

/** A tap name for an interface: Linux allows 15 characters. */
export function tapName(interfaceId: string): string {
  return `tb${idTail(interfaceId)}`;
}

/** A bridge name for a network segment. */
export function bridgeName(segment: string): string {
  return `br${idTail(segment)}`;
}

/**
 * The QEMU command line for a VM (pure). Kernel templates boot on `microvm` (fast, virtio
 * over MMIO, ACPI for the power button); cloud images on `q35` with firmware and PCI.
 * QEMU daemonizes, so the VM outlives the control plane; QMP is its control socket and the
 * serial console goes to a file.
 */
export function qemuArgs(
  vm: VmDefinition,
  paths: VmPaths,
  accelerator: Accelerator,
  networking: Networking,
  hostTscKhz?: number,
): string[] {
  const microvm = vm.template.kind === "kernel";
  const device = (kind: "blk" | "net") => (microvm ? `virtio-${kind}-device` : `virtio-${kind}-pci`);
  const args = [
    "-name",
    `trebuchet-${vm.id},process=trebuchet-${vm.id}`,
    "-machine",
    microvm ? "microvm,acpi=on" : "q35",
    "-accel",
    accelerator,
    "-cpu",
    accelerator === "kvm" ? "host" : "max",
    "-smp",
    String(vm.cpuCores),
    "-m",
    String(vm.memoryInMb),
    "-nodefaults",
    "-no-user-config",
    "-nographic",
    "-chardev",
    `file,id=serial0,path=${paths.console},append=on`,
    "-serial",
    "chardev:serial0",
    "-qmp",
    `unix:${paths.qmp},server=on,wait=off`,
    "-pidfile",
    paths.pid,
    "-daemonize",
  ];
  if (microvm) {
    // A guest starved of CPU (TCG, several booting at once) cannot calibrate its TSC against the
    // PIT and hangs; microvm has no HPET to fall back on. The guest TSC runs at the host's rate.
    const tsc = hostTscKhz ? ` tsc_early_khz=${hostTscKhz}` : "";
    args.push("-kernel", vm.template.kernel!, "-append", `console=ttyS0 quiet panic=-1${tsc}`);
    if (vm.template.initrd) args.push("-initrd", vm.template.initrd);
  }
  // Drives are named by their disk's ID, so that QMP can address one (block_resize) whatever
  // disks were added since the machine started.
  let port = 0;
  if (!microvm) {
    for (let i = 0; i < HOTPLUG_PORTS; i++)
      args.push("-device", `pcie-root-port,id=${hotplugPort(i)},chassis=${i + 1},io-reserve=0`);
  }
  for (const disk of vm.disks) {
    args.push("-drive", driveOptions(disk, disk.existingPath ?? paths.disk(disk.id)));
    // A standalone disk on q35 sits on a hot-plug port, so it can be detached while the machine runs.
    const bus = !microvm && disk.existingPath && port < HOTPLUG_PORTS ? `,bus=${hotplugPort(port++)}` : "";
    args.push("-device", `${device("blk")},drive=${disk.id},id=${disk.id}-device${bus}`);
  }
  args.push(
    "-drive",
    `id=seed,file=${paths.seedIso},format=raw,if=none,readonly=on`,
    "-device",
    `${device("blk")},drive=seed`,
  );
  if (hasAgent(vm)) {
    // The agent's channel: the host connects to the socket when it has something to say.
    args.push(
      "-chardev",
      `socket,id=agent,path=${paths.agent},server=on,wait=off`,
      "-device",
      microvm ? "virtio-serial-device" : "virtio-serial-pci",
      "-device",
      `virtserialport,chardev=agent,name=${AGENT_PORT}`,
    );
  }
  vm.interfaces.forEach((nic, i) => {
    args.push(
      "-netdev",
      networking === "tap"
        ? `tap,id=net${i},ifname=${tapName(nic.id)},script=no,downscript=no`
        : `user,id=net${i}`,
      "-device",
      `${device("net")},netdev=net${i},mac=${nic.mac}`,
    );
  });
  return args;
}
