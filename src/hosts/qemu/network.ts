import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { HostError, type InterfaceSpeed } from "../driver.js";

const exec = promisify(execFile);

/** A VM interface's tap and the bridge of its network segment. */
export interface Port {
  tap: string;
  bridge: string;
  gatewayCidrs: string[];
  /** The interface's speed profile; absent or null fields: unlimited. */
  speed?: InterfaceSpeed;
}

/**
 * `tc` commands that hold a tap to its interface's speed profile (pure). Traffic to the
 * guest leaves the host through the tap, so a token bucket on its egress holds the
 * download speed; traffic from the guest enters through it, so a policer on its ingress
 * holds the upload speed. The bucket holds 20 ms of traffic (at least 16 KiB, so that
 * full-size packets pass at low rates).
 */
export function shapingCommands(tap: string, speed: InterfaceSpeed | undefined): string[] {
  const commands: string[] = [];
  const burst = (mbit: number) => Math.max(16 * 1024, Math.round((mbit * 1_000_000) / 8 / 50));
  if (speed?.downloadMbit) {
    commands.push(
      `qdisc replace dev ${tap} root tbf rate ${speed.downloadMbit}mbit burst ${burst(speed.downloadMbit)} latency 50ms`,
    );
  }
  if (speed?.uploadMbit) {
    commands.push(
      `qdisc replace dev ${tap} handle ffff: ingress`,
      `filter replace dev ${tap} parent ffff: pref 1 protocol all u32 match u32 0 0 action police rate ${speed.uploadMbit}mbit burst ${burst(speed.uploadMbit)} drop`,
    );
  }
  return commands;
}

/** `tc` commands that lift a tap's limits (their failures, for limits it did not have, are ignored). */
export function unshapingCommands(tap: string): string[] {
  return [`qdisc del dev ${tap} root`, `qdisc del dev ${tap} ingress`];
}

/**
 * VM networking inside a network namespace of Trebuchet's own: one bridge per network
 * segment holding its gateway addresses, one tap per VM interface on that bridge. VM
 * traffic never reaches the machine's real network.
 */
export class NamespaceNetwork {
  // Link and address changes are serialised: concurrent builds share bridges.
  private queue: Promise<unknown> = Promise.resolve();
  private pending = 0;
  /** Bridges set up by this process, with the gateway addresses they were given. */
  private readonly bridges = new Map<string, string>();
  /** The alias every link this installation makes carries (`ip link` shows it). */
  private readonly marker: string;

  constructor(
    readonly namespace: string,
    readonly installation: string,
  ) {
    this.marker = markerOf(installation);
  }

  private serial<T>(body: () => Promise<T>): Promise<T> {
    // When nothing is queued, start at once: the first `ip` process is spawned before the
    // caller goes on to its other work (a build's seed and disks are made meanwhile).
    const run = this.pending === 0 ? body() : this.queue.then(body, body);
    this.pending++;
    this.queue = run
      .catch(() => undefined)
      .finally(() => {
        this.pending--;
      });
    return run;
  }

  private async ip(...args: string[]): Promise<string> {
    try {
      const { stdout } = await exec("ip", ["-n", this.namespace, ...args]);
      return stdout;
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr?.trim();
      throw new Error(`ip -n ${this.namespace} ${args.join(" ")}: ${stderr || (error as Error).message}`);
    }
  }

  private async exists(link: string): Promise<boolean> {
    try {
      await this.ip("link", "show", "dev", link);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Creates the namespace when missing, marked as this installation's (its loopback's
   * alias), with loopback up and IPv6 duplicate detection off (addresses are allocated,
   * not guessed). A namespace another installation marked is refused: its bridges hold
   * that installation's gateways. An unmarked one (made before namespaces were marked) is
   * adopted.
   */
  async ensureNamespace(): Promise<"created" | "adopted" | "reused"> {
    const owner = await namespaceOwner(this.namespace);
    if (owner.exists && owner.installation !== null && owner.installation !== this.installation)
      throw new HostError(foreignNamespace(this.namespace, owner.installation, this.installation));
    if (!owner.exists) {
      try {
        await exec("ip", ["netns", "add", this.namespace]);
      } catch (error) {
        if (!/exists/i.test((error as { stderr?: string }).stderr ?? "")) throw error;
      }
    }
    await this.ip("link", "set", "lo", "up", "alias", this.marker);
    await exec("ip", [
      "netns",
      "exec",
      this.namespace,
      "sh",
      "-c",
      "for f in /proc/sys/net/ipv6/conf/*/accept_dad; do echo 0 > $f; done",
    ]);
    return !owner.exists ? "created" : owner.installation === null ? "adopted" : "reused";
  }

  /**
   * Puts taps on their bridges, creating what is missing. One `ip -batch` for all taps of a
   * VM, and bridges this process has already set up are not looked at again: a VM's start
   * waits on this.
   */
  plug(ports: Port[]): Promise<void> {
    return this.serial(async () => {
      try {
        await this.plugOnce(ports);
      } catch {
        // A bridge, or the whole namespace (`admin host cleanup` when no VM was left), may
        // have been removed behind our back: make sure of both and try again.
        this.bridges.clear();
        await this.ensureNamespace();
        await this.plugOnce(ports);
      }
    });
  }

  private async plugOnce(ports: Port[]): Promise<void> {
    for (const port of ports) {
      const wanted = port.gatewayCidrs.join(" ");
      if (this.bridges.get(port.bridge) === wanted) continue;
      await this.bridge(port.bridge, port.gatewayCidrs);
      this.bridges.set(port.bridge, wanted);
    }
    const attach = ports.map((p) => `link set dev ${p.tap} master ${p.bridge} up alias ${this.marker}`);
    try {
      await this.batch([...ports.map((p) => `tuntap add dev ${p.tap} mode tap`), ...attach]);
    } catch (error) {
      // Some taps outlived their VM's QEMU (a restart of a stopped VM, an interface added to
      // a VM that has others): make the missing ones, attach them all as they are.
      if (!/busy|exists/i.test((error as Error).message)) throw error;
      await this.batch(
        ports.map((p) => `tuntap add dev ${p.tap} mode tap`),
        true,
      ).catch((failure: Error) => {
        const problems = failure.message
          .split("\n")
          .filter((line) => line.trim() && !/busy|exists|Command failed/i.test(line));
        if (problems.length > 0) throw failure;
      });
      await this.batch(attach);
    }
  }

  /**
   * Holds taps to their speed profiles (one `tc -batch` for all), replacing the limits
   * they had. A kernel without the ingress policer (act_police) cannot hold the upload
   * speed: that is logged once and the download limit still applies.
   */
  shape(ports: Port[], log: (message: string) => void, previous: Port[] = []): Promise<void> {
    const lifted = previous
      .filter((p) => p.speed && !ports.some((q) => q.tap === p.tap && sameSpeed(p.speed, q.speed)))
      .map((p) => p.tap);
    const commands = ports
      .filter((p) => p.speed)
      .map((p) => ({ tap: p.tap, lines: shapingCommands(p.tap, p.speed) }));
    if (lifted.length === 0 && commands.every((c) => c.lines.length === 0)) return Promise.resolve();
    return this.serial(async () => {
      if (lifted.length > 0) await this.tc(lifted.flatMap(unshapingCommands), true).catch(() => undefined);
      const download = commands.flatMap((c) =>
        c.lines.filter((line) => line.startsWith("qdisc replace") && line.includes(" root ")),
      );
      if (download.length > 0) await this.tc(download);
      const upload = commands.flatMap((c) => c.lines.filter((line) => !download.includes(line)));
      if (upload.length === 0 || this.policerMissing) return;
      try {
        await this.tc(upload);
      } catch (error) {
        if (
          !/action module|classifier not found|Unknown action|qdisc kind is unknown/i.test(
            (error as Error).message,
          )
        )
          throw error;
        this.policerMissing = true;
        log(
          `WARNING: this kernel cannot police a tap's ingress (${(error as Error).message.split("\n")[0]}): upload speeds are not limited, download speeds are`,
        );
      }
    });
  }

  private policerMissing = false;

  private async tc(commands: string[], keepGoing = false): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const child = execFile(
        "tc",
        ["-n", this.namespace, ...(keepGoing ? ["-force"] : []), "-batch", "-"],
        (error, _stdout, stderr) => {
          if (error) reject(new Error(`tc -n ${this.namespace} -batch: ${stderr.trim() || error.message}`));
          else resolve();
        },
      );
      child.stdin?.end(commands.join("\n") + "\n");
    });
  }

  private async bridge(bridge: string, gatewayCidrs: string[]): Promise<void> {
    await this.evictStaleHolders(bridge, gatewayCidrs);
    if (!(await this.exists(bridge))) await this.ip("link", "add", bridge, "type", "bridge");
    const current = await this.ip("-o", "addr", "show", "dev", bridge);
    for (const cidr of gatewayCidrs) {
      if (current.includes(` ${cidr} `)) continue;
      await this.ip("addr", "add", cidr, "dev", bridge, ...(cidr.includes(":") ? ["nodad"] : []));
    }
    await this.ip("link", "set", bridge, "up", "alias", this.marker);
  }

  /**
   * Another link of the namespace holding one of this segment's gateway addresses would
   * take its route: a bridge left by an earlier catalog (a data directory started afresh)
   * with no ports is removed; one still serving VMs is a conflict the operator must see.
   */
  private async evictStaleHolders(bridge: string, gatewayCidrs: string[]): Promise<void> {
    const holders = new Set<string>();
    for (const line of (await this.ip("-o", "addr", "show")).split("\n")) {
      const fields = line.trim().split(/\s+/);
      const link = fields[1];
      const cidr = fields[3];
      if (link && cidr && link !== bridge && gatewayCidrs.includes(cidr)) holders.add(link);
    }
    for (const link of holders) {
      const ports = (await this.ip("-o", "link", "show", "master", link)).trim();
      if (ports) {
        throw new HostError(
          `${link} in namespace ${this.namespace} already holds a gateway address of this network (${gatewayCidrs.join(", ")}) and has VMs on it: two networks of one host cannot share an address range`,
        );
      }
      await this.ip("link", "del", link);
    }
  }

  /** Removes taps; ones already gone are fine. */
  unplug(taps: string[]): Promise<void> {
    if (taps.length === 0) return Promise.resolve();
    return this.serial(async () => {
      try {
        await this.batch(
          taps.map((tap) => `link del dev ${tap}`),
          true,
        );
      } catch (error) {
        const problems = (error as Error).message
          .split("\n")
          .filter((line) => line.trim() && !/Cannot find device|Command failed/.test(line));
        if (problems.length > 0) throw error;
      }
    });
  }

  private async batch(commands: string[], keepGoing = false): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const child = execFile(
        "ip",
        ["-n", this.namespace, ...(keepGoing ? ["-force"] : []), "-batch", "-"],
        (error, _stdout, stderr) => {
          if (error) reject(new Error(`ip -n ${this.namespace} -batch: ${stderr.trim() || error.message}`));
          else resolve();
        },
      );
      child.stdin?.end(commands.join("\n") + "\n");
    });
  }

  /**
   * Removes the taps and bridges of this namespace that `keep` does not name, and returns
   * their names. Links another installation marked, and kinds Trebuchet never makes, stay.
   * The links are read before `keep` is asked: a VM that an agent makes meanwhile has its
   * directory before its taps, so `keep` names them, or they are not in the list.
   */
  prune(keep: () => Promise<{ taps: ReadonlySet<string>; bridges: ReadonlySet<string> }>): Promise<string[]> {
    return this.serial(async () => {
      const links = JSON.parse(await this.ip("-j", "-d", "link", "show")) as LinkRecord[];
      const wanted = await keep();
      const ours = links.filter(
        (link) => link.ifname !== "lo" && (link.ifalias === undefined || link.ifalias === this.marker),
      );
      const taps = ours.filter((link) => link.linkinfo?.info_kind === "tun" && !wanted.taps.has(link.ifname));
      const bridges = ours.filter(
        (link) => link.linkinfo?.info_kind === "bridge" && !wanted.bridges.has(link.ifname),
      );
      const removed = [...taps, ...bridges].map((link) => link.ifname);
      if (removed.length > 0) await this.batch(removed.map((name) => `link del dev ${name}`));
      for (const bridge of bridges) this.bridges.delete(bridge.ifname);
      return removed;
    });
  }

  /** Deletes the namespace itself (what is left in it goes with it). */
  removeNamespace(): Promise<void> {
    return this.serial(async () => {
      await exec("ip", ["netns", "del", this.namespace]);
      this.bridges.clear();
    });
  }

  /** Runs a command inside the namespace. */
  command(file: string, args: string[]): [string, string[]] {
    return ["ip", ["netns", "exec", this.namespace, file, ...args]];
  }
}

function sameSpeed(a: InterfaceSpeed | undefined, b: InterfaceSpeed | undefined): boolean {
  return (
    (a?.downloadMbit ?? null) === (b?.downloadMbit ?? null) &&
    (a?.uploadMbit ?? null) === (b?.uploadMbit ?? null)
  );
}

interface LinkRecord {
  ifname: string;
  ifalias?: string;
  linkinfo?: { info_kind?: string };
}

const MARKER_PREFIX = "trebuchet:";

function markerOf(installation: string): string {
  return `${MARKER_PREFIX}${installation}`;
}

/** Whether a namespace exists, and whose it is: the installation that marked it, or null if unmarked. */
export async function namespaceOwner(
  namespace: string,
): Promise<{ exists: false } | { exists: true; installation: string | null }> {
  let stdout: string;
  try {
    ({ stdout } = await exec("ip", ["-n", namespace, "-j", "link", "show", "dev", "lo"]));
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    if (/Cannot open network namespace|No such file/i.test(stderr)) return { exists: false };
    throw error;
  }
  const alias = (JSON.parse(stdout) as LinkRecord[])[0]?.ifalias;
  if (alias === undefined || alias === "") return { exists: true, installation: null };
  return {
    exists: true,
    installation: alias.startsWith(MARKER_PREFIX) ? alias.slice(MARKER_PREFIX.length) : alias,
  };
}

/** The processes that live in a namespace (a VM's QEMU, an operator's shell). */
export async function processesIn(namespace: string): Promise<number[]> {
  const { stdout } = await exec("ip", ["netns", "pids", namespace]);
  return stdout
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map(Number);
}

export function foreignNamespace(namespace: string, owner: string, installation: string): string {
  return (
    `network namespace ${namespace} belongs to another Trebuchet installation (${owner}; this one is ${installation}): ` +
    `its bridges hold that installation's gateways. Give this host another namespace in the catalog, run ` +
    `\`trebuchet admin host cleanup\` with that installation's settings, or, if it is gone, ` +
    `\`trebuchet admin host cleanup --abandoned\` here`
  );
}

/** Can this process create network namespaces (root, and a kernel that allows it)? */
export async function namespacesAvailable(): Promise<boolean> {
  const probe = `trebuchet-probe-${process.pid}`;
  try {
    await exec("ip", ["netns", "add", probe]);
    await exec("ip", ["netns", "del", probe]);
    return true;
  } catch {
    return false;
  }
}
