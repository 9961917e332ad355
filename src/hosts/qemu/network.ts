import { execFile } from "node:child_process";
import { promisify } from "node:util";

const exec = promisify(execFile);

/**
 * VM networking inside a network namespace of Trebuchet's own: one bridge per network
 * segment holding its gateway addresses, one tap per VM interface on that bridge. VM
 * traffic never reaches the machine's real network.
 */
export class NamespaceNetwork {
  // Link and address changes are serialised: concurrent builds share bridges.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly namespace: string) {}

  private serial<T>(body: () => Promise<T>): Promise<T> {
    const run = this.queue.then(body, body);
    this.queue = run.catch(() => undefined);
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

  ensureBridge(bridge: string, gatewayCidrs: string[]): Promise<void> {
    return this.serial(() => this.bridge(bridge, gatewayCidrs));
  }

  private async bridge(bridge: string, gatewayCidrs: string[]): Promise<void> {
    if (!(await this.exists(bridge))) await this.ip("link", "add", bridge, "type", "bridge");
    const current = await this.ip("-o", "addr", "show", "dev", bridge);
    for (const cidr of gatewayCidrs) {
      if (current.includes(` ${cidr} `)) continue;
      await this.ip("addr", "add", cidr, "dev", bridge, ...(cidr.includes(":") ? ["nodad"] : []));
    }
    await this.ip("link", "set", bridge, "up");
  }

  ensureTap(tap: string, bridge: string): Promise<void> {
    return this.serial(async () => {
      if (!(await this.exists(tap))) await this.ip("tuntap", "add", "dev", tap, "mode", "tap");
      await this.ip("link", "set", tap, "master", bridge);
      await this.ip("link", "set", tap, "up");
    });
  }

  removeTap(tap: string): Promise<void> {
    return this.serial(async () => {
      if (await this.exists(tap)) await this.ip("link", "del", tap);
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
