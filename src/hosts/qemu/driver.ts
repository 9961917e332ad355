import { execFile } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  watch,
  writeFileSync,
  type FSWatcher,
} from "node:fs";
import { open } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import {
  HostError,
  type GuestDisk,
  type HostCleanupOptions,
  type HostCleanupReport,
  type HostDriver,
  type PowerState,
  type Reconfigured,
  type VmDefinition,
} from "../driver.js";
import { withReverter } from "../reverter.js";
import { hostTscKhz, probeAccelerator } from "./accel.js";
import { sendNetworkToAgent } from "./agent.js";
import {
  bridgeName,
  hasAgent,
  qemuArgs,
  tapName,
  type Accelerator,
  type Networking,
  type VmPaths,
} from "./args.js";
import {
  foreignNamespace,
  NamespaceNetwork,
  namespaceOwner,
  namespacesAvailable,
  processesIn,
  type Port,
} from "./network.js";
import { DiskPrototypes } from "./disk-prototypes.js";
import { closeDrive, diskDevice, hotplugPorts, plugDisk, unplugDisk } from "./hotplug.js";
import { qmp, QmpSession } from "./qmp.js";
import { runTool } from "./run-tool.js";
import { renderSeed } from "./seed.js";
import { shrinkImage } from "./shrink.js";

const exec = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export const READY_MARKER = "TREBUCHET-READY";
export const FAILED_MARKER = "TREBUCHET-FAILED";

export interface QemuDriverOptions {
  /** The host's name in the catalog. */
  name: string;
  /** Where each VM's directory (disks, seed, console, QMP socket, pid file) lives. */
  vmsDir: string;
  /** Reusable host files that belong to no VM (disk prototypes). */
  cacheDir: string;
  /** Standalone disks (made before any VM has them): `<disksDir>/<disk id>.qcow2`. */
  disksDir: string;
  /** Network namespace for VM networking; null = user-mode networking. */
  namespace: string | null;
  /** The installation the namespace, its links and the VM directory are marked with (store/installation.ts). */
  installation: string;
  log?: (message: string) => void;
}

/**
 * The QEMU host driver: one daemonized QEMU process per VM, controlled over QMP, inside
 * a network namespace of Trebuchet's own. Everything about a running VM is on disk in
 * its directory (definition, pid file, QMP socket, console log), so a restarted control
 * plane finds its VMs again.
 */
export class QemuDriver implements HostDriver {
  readonly name: string;
  private accelerator: Accelerator | undefined;
  private networking: Networking = "tap";
  private network: NamespaceNetwork | undefined;
  private readonly log: (message: string) => void;
  /** VMs whose taps `create` has just made, so the first `start` need not check them again. */
  private readonly networkReady = new Set<string>();

  private readonly prototypes: DiskPrototypes;

  constructor(private readonly options: QemuDriverOptions) {
    this.name = options.name;
    this.prototypes = new DiskPrototypes(join(options.cacheDir, "disk-prototypes"));
    this.log = options.log ?? (() => undefined);
  }

  async prepare(): Promise<void> {
    this.claimVmsDir();
    try {
      await exec("qemu-system-x86_64", ["--version"]);
      await exec("qemu-img", ["--version"]);
    } catch {
      throw new HostError("QEMU is not installed (apt-get install qemu-system-x86 qemu-utils)");
    }
    if (this.options.namespace && (await namespacesAvailable())) {
      const network = new NamespaceNetwork(this.options.namespace, this.options.installation);
      if ((await network.ensureNamespace()) === "adopted")
        this.log(
          `network namespace ${this.options.namespace} was unmarked: now marked as this installation's`,
        );
      this.network = network;
      this.networking = "tap";
    } else {
      this.networking = "user";
      this.log(
        this.options.namespace
          ? `WARNING: cannot create network namespace ${this.options.namespace} (not root?): VMs get user-mode networking, and their allocated addresses are not reachable`
          : "WARNING: this host has no network namespace configured: VMs get user-mode networking",
      );
    }
  }

  /**
   * The VM directory is this installation's: one that another installation's agent marked
   * holds that one's VMs, which this agent's reconciliation would take for leftovers.
   */
  private claimVmsDir(): void {
    const marker = join(this.options.vmsDir, ".installation");
    mkdirSync(this.options.vmsDir, { recursive: true });
    const owner = existsSync(marker) ? readFileSync(marker, "utf8").trim() : undefined;
    if (owner === undefined) writeFileSync(marker, `${this.options.installation}\n`);
    else if (owner !== this.options.installation)
      throw new HostError(
        `${this.options.vmsDir} holds the VMs of another Trebuchet installation (${owner}; this one is ${this.options.installation}): give each installation its own data directory`,
      );
  }

  async cleanup(live: ReadonlySet<string>, options: HostCleanupOptions = {}): Promise<HostCleanupReport> {
    const report: HostCleanupReport = { vms: [], links: [], namespaceRemoved: null, notes: [] };
    const { namespace, installation } = this.options;
    if (existsSync(this.options.vmsDir)) this.claimVmsDir();
    if (namespace && !this.network) {
      const owner = await namespaceOwner(namespace);
      if (owner.exists && owner.installation !== null && owner.installation !== installation) {
        if (!options.abandoned)
          report.notes.push(foreignNamespace(namespace, owner.installation, installation));
        else {
          const pids = await processesIn(namespace);
          if (pids.length > 0)
            throw new HostError(
              `network namespace ${namespace} of installation ${owner.installation} is not abandoned: ${pids.length} process(es) live in it (${pids.slice(0, 5).join(", ")})`,
            );
          await exec("ip", ["netns", "del", namespace]);
          report.namespaceRemoved = namespace;
        }
      } else if (owner.exists) this.network = new NamespaceNetwork(namespace, installation);
    }
    for (const vmId of await this.list()) {
      if (live.has(vmId)) continue;
      await this.destroy(vmId);
      report.vms.push(vmId);
    }
    if (!this.network) return report;
    report.links = await this.network.prune(async () => {
      const kept = (await this.list()).flatMap((vmId) => {
        const file = join(this.paths(vmId).directory, "definition.json");
        return existsSync(file) ? ports(JSON.parse(readFileSync(file, "utf8")) as VmDefinition) : [];
      });
      return {
        taps: new Set(kept.map((port) => port.tap)),
        bridges: new Set(kept.map((port) => port.bridge)),
      };
    });
    if (live.size === 0 && (await this.list()).length === 0) {
      const pids = await processesIn(this.network.namespace);
      if (pids.length === 0) {
        await this.network.removeNamespace();
        report.namespaceRemoved = this.network.namespace;
      } else
        report.notes.push(
          `network namespace ${this.network.namespace} kept: ${pids.length} process(es) that are not VMs live in it (${pids.slice(0, 5).join(", ")})`,
        );
    }
    return report;
  }

  paths(vmId: string): VmPaths {
    if (!/^vm_[A-Za-z0-9]+$/.test(vmId)) throw new HostError(`not a VM ID: ${vmId}`);
    const directory = join(this.options.vmsDir, vmId);
    return {
      directory,
      disk: (diskId) => join(directory, `${diskId}.qcow2`),
      seedIso: join(directory, "seed.iso"),
      console: join(directory, "console.log"),
      qmp: join(directory, "qmp.sock"),
      agent: join(directory, "agent.sock"),
      pid: join(directory, "qemu.pid"),
    };
  }

  private definition(vmId: string): VmDefinition {
    const file = join(this.paths(vmId).directory, "definition.json");
    if (!existsSync(file)) throw new HostError(`VM ${vmId} does not exist on host ${this.name}`);
    return JSON.parse(readFileSync(file, "utf8")) as VmDefinition;
  }

  async create(vm: VmDefinition): Promise<void> {
    const paths = this.paths(vm.id);
    if (paths.agent.length > 100)
      throw new HostError(`the VM directory ${paths.directory} is too long for a UNIX socket path`);
    if (vm.template.kind === "kernel" && (!vm.template.kernel || !existsSync(vm.template.kernel))) {
      throw new HostError(
        `the template's kernel ${vm.template.kernel} is missing on this host (trebuchet admin template build-demo builds the demo template)`,
      );
    }
    if (!existsSync(vm.template.image)) {
      throw new HostError(
        `the template's image ${vm.template.image} is missing on this host (trebuchet admin template build-demo or build-cloud builds the example templates)`,
      );
    }
    await withReverter(async (reverter) => {
      mkdirSync(paths.directory, { recursive: true });
      reverter.add("VM directory", () => rmSync(paths.directory, { recursive: true, force: true }));
      writeFileSync(join(paths.directory, "definition.json"), JSON.stringify(vm, null, 2));
      writeFileSync(paths.console, "");

      // Network, seed and disks do not depend on each other: make them at once, starting
      // with the network's `ip` process, the longest of the three.
      const network = (async () => {
        if (!this.network) return;
        reverter.add("taps", () => this.network!.unplug(vm.interfaces.map((nic) => tapName(nic.id))));
        await this.connect(vm);
      })();
      const disks = vm.disks
        .filter((disk) => !disk.existingPath)
        .map((disk) =>
          this.prototypes.copy(
            { sizeInGb: disk.sizeInGb, backing: disk.system ? vm.template.image : null },
            paths.disk(disk.id),
          ),
        );
      const seed = writeSeed(vm, paths);
      const results = await Promise.allSettled([...disks, seed, network]);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
      this.networkReady.add(vm.id);
    });
  }

  async start(vmId: string): Promise<void> {
    if ((await this.state(vmId)) === "running") return;
    const vm = this.definition(vmId);
    const paths = this.paths(vmId);
    if (this.network && !this.networkReady.delete(vmId)) {
      // Taps do not survive a host reboot; the definition says what they should be.
      await this.connect(vm);
    }
    this.accelerator ??= await this.probe(vm);
    rmSync(paths.qmp, { force: true });
    rmSync(paths.agent, { force: true });
    this.recordDisksInProcess(
      vmId,
      vm.disks.map((d) => d.id),
    );
    const args = qemuArgs(vm, paths, this.accelerator, this.networking, hostTscKhz());
    const [file, argv] = this.network
      ? this.network.command("qemu-system-x86_64", args)
      : ["qemu-system-x86_64", args];
    await runTool(file, argv, "starting QEMU");
    for (let i = 0; i < 50 && !existsSync(paths.qmp); i++) await sleep(20);
  }

  private async probe(vm: VmDefinition): Promise<Accelerator> {
    const { accelerator, reason } = await probeAccelerator(vm.template.kernel ?? undefined);
    this.log(`accelerator: ${accelerator} (${reason})`);
    return accelerator;
  }

  async waitReady(vmId: string, since: number, timeoutMs: number): Promise<void> {
    const paths = this.paths(vmId);
    const deadline = Date.now() + timeoutMs;
    const ready = `${READY_MARKER} ${vmId}`;
    const failedMarker = new RegExp(`${FAILED_MARKER} (.*)\r?\n`);
    let graceAfterExit = 8;
    let offset = since;
    // The console read so far from its last complete line on: markers are whole lines.
    let pending = "";
    // inotify tells us at once when QEMU writes the console; the timer covers what it misses.
    const changes = new ConsoleChanges(paths.console);
    try {
      for (;;) {
        const chunk = await readBytesFrom(paths.console, offset);
        offset += chunk.length;
        pending += chunk.toString("utf8");
        if (pending.includes(ready)) return;
        const failed = failedMarker.exec(pending);
        if (failed) throw new HostError(`the guest reported: ${failed[1]!.trim()}`);
        pending = pending.slice(pending.lastIndexOf("\n") + 1);
        if ((await this.state(vmId)) !== "running" && --graceAfterExit < 0) {
          throw new HostError("the VM stopped before it was ready");
        }
        if (Date.now() > deadline)
          throw new HostError(`the guest was not ready within ${Math.round(timeoutMs / 1000)} s`);
        await changes.next(100);
      }
    } finally {
      changes.close();
    }
  }

  async stop(vmId: string): Promise<void> {
    const pid = this.pid(vmId);
    if (pid === undefined) return;
    try {
      await qmp(this.paths(vmId).qmp, "quit", undefined, 2000);
    } catch {
      // QMP unreachable: fall through to the signal.
    }
    if (!(await waitGone(pid, 5000))) {
      process.kill(pid, "SIGKILL");
      await waitGone(pid, 5000);
    }
    rmSync(this.paths(vmId).pid, { force: true });
  }

  async shutdown(vmId: string, timeoutMs: number): Promise<boolean> {
    const pid = this.pid(vmId);
    if (pid === undefined) return true;
    try {
      await qmp(this.paths(vmId).qmp, "system_powerdown");
    } catch (error) {
      this.log(`shutdown ${vmId}: ${(error as Error).message}; powering off`);
    }
    if (await waitGone(pid, timeoutMs)) return true;
    await this.stop(vmId);
    return false;
  }

  async reset(vmId: string): Promise<void> {
    if ((await this.state(vmId)) !== "running") throw new HostError(`VM ${vmId} is not running`);
    await qmp(this.paths(vmId).qmp, "system_reset");
  }

  /** Puts the VM's taps on their bridges and holds them to their speed profiles. */
  private async connect(vm: VmDefinition, before?: VmDefinition): Promise<void> {
    await this.network!.plug(ports(vm));
    await this.network!.shape(ports(vm), this.log, before ? ports(before) : []);
  }

  /**
   * The host side changes at once: taps of removed interfaces go, new ones join their
   * bridges (a bridge holds only its network's gateways, so addresses need nothing there),
   * speed limits and disk IO limits change. A running guest with Trebuchet's agent (the
   * demo template) is sent its new addresses and applies them at once; any other guest
   * reads them from the seed when it next boots (cloud-init re-applies network-config at
   * every boot, see seed.ts). Standalone disks attached to or detached from a running
   * q35 machine (cloud images) are hot-plugged through QMP; on microvm (kernel templates,
   * no hot-plug) a detached disk's drive is closed at once and an attached one joins at
   * its next start, as do interfaces, memory and CPUs; the QEMU process keeps the seed it
   * opened until then.
   */
  async reconfigure(vm: VmDefinition): Promise<Reconfigured> {
    const before = this.definition(vm.id);
    const paths = this.paths(vm.id);
    if (this.network) {
      const kept = new Set(vm.interfaces.map((nic) => nic.id));
      await this.network.unplug(
        before.interfaces.filter((nic) => !kept.has(nic.id)).map((nic) => tapName(nic.id)),
      );
      await this.connect(vm, before);
    }
    const running = (await this.state(vm.id)) === "running";
    const disks = running
      ? await this.plugDisks(before, vm)
      : sameDiskSet(before, vm)
        ? ("unchanged" as const)
        : ("next_start" as const);
    await this.growDisks(before, vm);
    if (running) await this.throttleDisks(before, vm);
    const seed = await writeSeed(vm, paths);
    const file = join(paths.directory, "definition.json");
    writeFileSync(`${file}.new`, JSON.stringify(vm, null, 2));
    renameSync(`${file}.new`, file);
    const addresses = seed.get("trebuchet/interfaces") ?? "";
    if (addresses === renderSeed(before).get("trebuchet/interfaces"))
      return { addresses: "unchanged", disks };
    const live =
      running && hasAgent(vm) && (await sendNetworkToAgent(paths.agent, addresses, AGENT_TIMEOUT_MS));
    return { addresses: live ? "live" : "next_start", disks };
  }

  /**
   * Makes a running machine's disks those of its definition where it can: on q35, a
   * detached disk that sits on a hot-plug port is unplugged (the guest lets go of it) and
   * an attached one goes on a free port. Answers `next_start` if any change has to wait.
   */
  private async plugDisks(before: VmDefinition, after: VmDefinition): Promise<Reconfigured["disks"]> {
    const inProcess = this.startedDisks(after.id, before);
    const wanted = new Set(after.disks.map((d) => d.id));
    const added = after.disks.filter((d) => !inProcess.has(d.id));
    const removed = [...inProcess].filter((id) => !wanted.has(id));
    if (added.length === 0 && removed.length === 0) return "unchanged";
    let live = true;
    const session = await QmpSession.open(this.paths(after.id).qmp);
    try {
      if (after.template.kind === "kernel") {
        // microvm has no hot-plug: a detached disk's drive is closed at once (the guest
        // keeps an empty device, which answers I/O errors, until its next start), so no
        // process holds the disk any more; an attached one waits for the next start.
        for (const diskId of removed) {
          await closeDrive(session, diskId);
          inProcess.delete(diskId);
          this.recordDisksInProcess(after.id, [...inProcess]);
        }
        return added.length === 0 ? "live" : "next_start";
      }
      const ports = await hotplugPorts(session);
      for (const diskId of removed) {
        const port = [...ports].find(([, device]) => device === diskDevice(diskId))?.[0];
        if (!port) {
          live = false;
          continue;
        }
        await unplugDisk(session, diskId, UNPLUG_TIMEOUT_MS);
        ports.set(port, null);
        inProcess.delete(diskId);
        this.recordDisksInProcess(after.id, [...inProcess]);
      }
      for (const disk of added) {
        const port = [...ports].find(([, device]) => device === null)?.[0];
        if (!port || !disk.existingPath) {
          live = false;
          continue;
        }
        await plugDisk(session, disk, disk.existingPath, port);
        ports.set(port, diskDevice(disk.id));
        inProcess.add(disk.id);
        this.recordDisksInProcess(after.id, [...inProcess]);
      }
    } finally {
      session.close();
    }
    return live ? "live" : "next_start";
  }

  private recordDisksInProcess(vmId: string, diskIds: string[]): void {
    const file = join(this.paths(vmId).directory, "started-disks.json");
    writeFileSync(`${file}.new`, JSON.stringify(diskIds));
    renameSync(`${file}.new`, file);
  }

  /** A running machine's disks whose IO profile changed get its limits through QMP. */
  private async throttleDisks(before: VmDefinition, after: VmDefinition): Promise<void> {
    const paths = this.paths(after.id);
    const inProcess = this.startedDisks(after.id, before);
    const key = (disk: GuestDisk | undefined) =>
      `${disk?.limits?.megabytesPerSecond ?? 0}/${disk?.limits?.iops ?? 0}`;
    for (const disk of after.disks) {
      if (!inProcess.has(disk.id)) continue;
      if (key(disk) === key(before.disks.find((d) => d.id === disk.id))) continue;
      const bps = (disk.limits?.megabytesPerSecond ?? 0) * 1024 * 1024;
      const iops = disk.limits?.iops ?? 0;
      const limits = { bps, bps_rd: 0, bps_wr: 0, iops, iops_rd: 0, iops_wr: 0 };
      await qmp(paths.qmp, "block_set_io_throttle", { device: disk.id, ...limits });
    }
  }

  /**
   * Disks whose size grew: a running machine's through QMP `block_resize` (the guest is
   * told of the new capacity at once), a stopped one's with `qemu-img resize`. Never shrinks.
   */
  private async growDisks(before: VmDefinition, after: VmDefinition): Promise<void> {
    const paths = this.paths(after.id);
    const running = (await this.state(after.id)) === "running";
    // What the running process opened: disks attached since then are not in it.
    const inProcess = running ? this.startedDisks(after.id, before) : new Set<string>();
    for (const disk of after.disks) {
      const old = before.disks.find((d) => d.id === disk.id);
      if (old && disk.sizeInGb <= old.sizeInGb) continue;
      const bytes = disk.sizeInGb * 1024 ** 3;
      if (inProcess.has(disk.id)) {
        // Processes started before drives were named by disk ID call them disk<index>.
        const legacy = `disk${before.disks.findIndex((d) => d.id === disk.id)}`;
        await qmp(paths.qmp, "block_resize", { device: disk.id, size: bytes }).catch(() =>
          qmp(paths.qmp, "block_resize", { device: legacy, size: bytes }),
        );
      } else if (old) {
        await runTool(
          "qemu-img",
          ["resize", disk.existingPath ?? paths.disk(disk.id), String(bytes)],
          "growing a disk",
        );
      }
    }
  }

  /** The disks the VM's process has open (recorded at start and at each hot-plug; else its definition then). */
  private startedDisks(vmId: string, fallback: VmDefinition): Set<string> {
    const file = join(this.paths(vmId).directory, "started-disks.json");
    const ids = existsSync(file)
      ? (JSON.parse(readFileSync(file, "utf8")) as string[])
      : fallback.disks.map((d) => d.id);
    return new Set(ids);
  }

  async growDisk(diskId: string, sizeInGb: number): Promise<void> {
    await runTool(
      "qemu-img",
      ["resize", this.diskPath(diskId), String(sizeInGb * 1024 ** 3)],
      "growing a disk",
    );
  }

  async shrinkDisk(diskId: string, sizeInGb: number): Promise<void> {
    await shrinkImage(this.diskPath(diskId), sizeInGb);
  }

  private diskPath(diskId: string): string {
    if (!/^disk_[A-Za-z0-9]+$/.test(diskId)) throw new HostError(`not a disk ID: ${diskId}`);
    return join(this.options.disksDir, `${diskId}.qcow2`);
  }

  async createDisk(diskId: string, sizeInGb: number): Promise<string> {
    const path = this.diskPath(diskId);
    if (existsSync(path)) return path;
    mkdirSync(this.options.disksDir, { recursive: true });
    // Made beside its final name and renamed, so a half-made disk is never taken for one.
    await this.prototypes.copy({ sizeInGb, backing: null }, `${path}.new`);
    renameSync(`${path}.new`, path);
    return path;
  }

  async destroyDisk(diskId: string): Promise<void> {
    rmSync(this.diskPath(diskId), { force: true });
    rmSync(`${this.diskPath(diskId)}.new`, { force: true });
  }

  async destroy(vmId: string): Promise<void> {
    const paths = this.paths(vmId);
    await this.stop(vmId);
    if (this.network && existsSync(join(paths.directory, "definition.json"))) {
      await this.network.unplug(this.definition(vmId).interfaces.map((nic) => tapName(nic.id)));
    }
    rmSync(paths.directory, { recursive: true, force: true });
  }

  async state(vmId: string): Promise<PowerState> {
    if (this.pid(vmId) !== undefined) return "running";
    return existsSync(this.paths(vmId).directory) ? "stopped" : "missing";
  }

  async list(): Promise<string[]> {
    if (!existsSync(this.options.vmsDir)) return [];
    return readdirSync(this.options.vmsDir).filter((name) => /^vm_[A-Za-z0-9]+$/.test(name));
  }

  async console(vmId: string): Promise<string> {
    return readFrom(this.paths(vmId).console, Math.max(0, (await this.consoleSize(vmId)) - 256 * 1024));
  }

  async consoleSize(vmId: string): Promise<number> {
    try {
      return statSync(this.paths(vmId).console).size;
    } catch {
      return 0;
    }
  }

  /** The live QEMU process of a VM: the pid file's process, if it really is this VM's QEMU. */
  private pid(vmId: string): number | undefined {
    let pid: number;
    try {
      pid = Number(readFileSync(this.paths(vmId).pid, "utf8").trim());
    } catch {
      return undefined;
    }
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      return cmdline.includes(`trebuchet-${vmId}`) ? pid : undefined;
    } catch {
      return undefined;
    }
  }
}

/** How long a reconfiguration waits for the guest's agent to apply new addresses. */
const AGENT_TIMEOUT_MS = 10_000;
/** How long a guest may take to let go of a disk unplugged from its running machine. */
const UNPLUG_TIMEOUT_MS = 30_000;

function sameDiskSet(before: VmDefinition, after: VmDefinition): boolean {
  const ids = (vm: VmDefinition) =>
    vm.disks
      .map((d) => d.id)
      .sort()
      .join(" ");
  return ids(before) === ids(after);
}

function ports(vm: VmDefinition): Port[] {
  return vm.interfaces.map((nic) => ({
    tap: tapName(nic.id),
    bridge: bridgeName(nic.segment),
    gatewayCidrs: nic.gatewayCidrs,
    ...(nic.speed ? { speed: nic.speed } : {}),
  }));
}

/** Wakes a waiter when a file changes, or after a timeout, whichever comes first. */
class ConsoleChanges {
  private watcher: FSWatcher | undefined;
  private wake: (() => void) | undefined;
  private changed = false;

  constructor(file: string) {
    try {
      this.watcher = watch(file, () => {
        this.changed = true;
        this.wake?.();
      });
      this.watcher.on("error", () => this.close());
    } catch {
      // No inotify: the timeout alone paces the reads.
    }
  }

  next(timeoutMs: number): Promise<void> {
    if (this.changed) {
      this.changed = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    }).then(() => {
      this.wake = undefined;
      this.changed = false;
    });
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}

async function readFrom(file: string, offset: number): Promise<string> {
  return (await readBytesFrom(file, offset)).toString("utf8");
}

async function readBytesFrom(file: string, offset: number): Promise<Buffer> {
  try {
    const handle = await open(file, "r");
    try {
      const { size } = await handle.stat();
      if (size <= offset) return Buffer.alloc(0);
      const buffer = Buffer.alloc(size - offset);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      return buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  } catch {
    return Buffer.alloc(0);
  }
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    // A zombie (the parent is this process, e.g. in tests) counts as gone.
    try {
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"))) return true;
    } catch {
      return true;
    }
    await sleep(50);
  }
  return false;
}

/** Renders the VM's seed and packs it into its ISO, replacing the previous one whole; answers its files. */
async function writeSeed(vm: VmDefinition, paths: VmPaths): Promise<Map<string, string>> {
  const seedDir = join(paths.directory, "seed");
  rmSync(seedDir, { recursive: true, force: true });
  const files = renderSeed(vm);
  for (const [name, content] of files) {
    const file = join(seedDir, name);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, content);
  }
  const next = `${paths.seedIso}.new`;
  await runTool(
    "genisoimage",
    ["-quiet", "-output", next, "-volid", "cidata", "-joliet", "-rock", seedDir],
    "making the seed",
  );
  renameSync(next, paths.seedIso);
  return files;
}
