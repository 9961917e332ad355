import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { HostError } from "../driver.js";

const exec = promisify(execFile);

/** A VM interface's tap and the bridge of its network segment. */
export interface Port {
  tap: string;
  bridge: string;
  gatewayCidrs: string[];
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

  constructor(readonly namespace: string) {}

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

  /** Creates the namespace when missing, with loopback up and IPv6 duplicate detection off (addresses are allocated, not guessed). */
  async ensureNamespace(): Promise<void> {
    try {
      await exec("ip", ["netns", "add", this.namespace]);
    } catch (error) {
      if (!/exists/i.test((error as { stderr?: string }).stderr ?? "")) throw error;
    }
    await this.ip("link", "set", "lo", "up");
    await exec("ip", [
      "netns",
      "exec",
      this.namespace,
      "sh",
      "-c",
      "for f in /proc/sys/net/ipv6/conf/*/accept_dad; do echo 0 > $f; done",
    ]);
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
        // A bridge may have been removed behind our back: check every bridge and try again.
        this.bridges.clear();
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
    const attach = ports.map((p) => `link set dev ${p.tap} master ${p.bridge} up`);
    try {
      await this.batch([...ports.map((p) => `tuntap add dev ${p.tap} mode tap`), ...attach]);
    } catch (error) {
      // The taps outlived their VM's QEMU (a restart of a stopped VM): attach them as they are.
      if (!/busy|exists/i.test((error as Error).message)) throw error;
      await this.batch(attach);
    }
  }

  private async bridge(bridge: string, gatewayCidrs: string[]): Promise<void> {
    await this.evictStaleHolders(bridge, gatewayCidrs);
    if (!(await this.exists(bridge))) await this.ip("link", "add", bridge, "type", "bridge");
    const current = await this.ip("-o", "addr", "show", "dev", bridge);
    for (const cidr of gatewayCidrs) {
      if (current.includes(` ${cidr} `)) continue;
      await this.ip("addr", "add", cidr, "dev", bridge, ...(cidr.includes(":") ? ["nodad"] : []));
    }
    await this.ip("link", "set", bridge, "up");
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

  /** Runs a command inside the namespace. */
  command(file: string, args: string[]): [string, string[]] {
    return ["ip", ["netns", "exec", this.namespace, file, ...args]];
  }
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
