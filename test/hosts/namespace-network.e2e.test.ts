/** END TO END (root, no QEMU): the namespace networking of the QEMU driver against the real kernel. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NamespaceNetwork, namespaceOwner } from "../../src/hosts/qemu/network.js";
import { removeNamespace, uniqueNamespace } from "../support/e2e.js";

const exec = promisify(execFile);
const namespace = uniqueNamespace();
const ip = async (...args: string[]) => (await exec("ip", ["-n", namespace, ...args])).stdout;
const INSTALLATION = "inst_namespaceTest";
const aliasOf = async (link: string) =>
  (JSON.parse(await ip("-j", "link", "show", "dev", link)) as { ifalias?: string }[])[0]?.ifalias;

describe("namespace networking", () => {
  let network: NamespaceNetwork;
  beforeAll(async () => {
    network = new NamespaceNetwork(namespace, INSTALLATION);
    await network.ensureNamespace();
  });
  afterAll(() => removeNamespace(namespace));

  it("plugs taps into their bridges, which hold the gateway addresses, and unplugs them", async () => {
    await network.plug([
      { tap: "tbtapone", bridge: "brnetone", gatewayCidrs: ["203.0.113.1/24", "2001:db8:400::1/64"] },
      { tap: "tbtaptwo", bridge: "brnetone", gatewayCidrs: ["203.0.113.1/24", "2001:db8:400::1/64"] },
    ]);
    expect(await ip("-o", "link", "show", "master", "brnetone")).toMatch(/tbtapone[\s\S]*tbtaptwo/);
    expect(await ip("-o", "addr", "show", "dev", "brnetone")).toContain("203.0.113.1/24");
    expect(await ip("-o", "addr", "show", "dev", "brnetone")).toContain("2001:db8:400::1/64");
    // Plugging taps that already exist (a stopped VM started again) attaches them as they are.
    await network.plug([{ tap: "tbtapone", bridge: "brnetone", gatewayCidrs: ["203.0.113.1/24"] }]);
    await network.unplug(["tbtapone", "tbtaptwo", "tbnotthere"]);
    expect(await ip("-o", "link", "show", "master", "brnetone")).toBe("");
  });

  it("removes a port-less bridge left by an earlier catalog that holds the same gateway", async () => {
    await ip("link", "add", "brstale", "type", "bridge");
    await ip("addr", "add", "198.51.100.1/24", "dev", "brstale");
    await ip("link", "set", "brstale", "up");
    await network.plug([{ tap: "tbtapnew", bridge: "brfresh", gatewayCidrs: ["198.51.100.1/24"] }]);
    expect(await ip("-o", "link", "show")).not.toContain("brstale");
    expect(await ip("route", "get", "198.51.100.20")).toContain("dev brfresh");
  });

  it("refuses a gateway already held by a bridge that still has VMs on it", async () => {
    const other = new NamespaceNetwork(namespace, INSTALLATION);
    await expect(
      other.plug([{ tap: "tbtapclash", bridge: "brclash", gatewayCidrs: ["198.51.100.1/24"] }]),
    ).rejects.toThrow(/brfresh .*has VMs on it/);
    expect(await ip("-o", "link", "show", "master", "brfresh")).toContain("tbtapnew");
  });

  it("marks the namespace, its bridges and its taps as this installation's, and refuses another's", async () => {
    expect(await namespaceOwner(namespace)).toEqual({ exists: true, installation: INSTALLATION });
    expect(await aliasOf("lo")).toBe(`trebuchet:${INSTALLATION}`);
    expect(await aliasOf("brfresh")).toBe(`trebuchet:${INSTALLATION}`);
    expect(await aliasOf("tbtapnew")).toBe(`trebuchet:${INSTALLATION}`);
    expect(await network.ensureNamespace()).toBe("reused");
    const other = new NamespaceNetwork(namespace, "inst_someoneElse");
    await expect(other.ensureNamespace()).rejects.toThrow(
      `network namespace ${namespace} belongs to another Trebuchet installation (${INSTALLATION}; this one is inst_someoneElse)`,
    );
    // Refused before anything changed: still this installation's.
    expect(await aliasOf("lo")).toBe(`trebuchet:${INSTALLATION}`);
  });

  it("prunes the taps and bridges nothing keeps, and leaves links it never makes", async () => {
    await network.plug([
      { tap: "tbprunekeep", bridge: "brprunekeep", gatewayCidrs: ["192.0.2.1/24"] },
      { tap: "tbprunegone", bridge: "brprunekeep", gatewayCidrs: ["192.0.2.1/24"] },
    ]);
    await ip("link", "add", "vethnotours", "type", "veth", "peer", "name", "vethpeer");
    const removed = await network.prune(async () => ({
      taps: new Set(["tbprunekeep"]),
      bridges: new Set(["brprunekeep"]),
    }));
    expect(removed.sort()).toEqual(["brfresh", "brnetone", "tbprunegone", "tbtapnew"]);
    const links = await ip("-o", "link", "show");
    expect(links).toContain("tbprunekeep");
    expect(links).toContain("brprunekeep");
    expect(links).toContain("vethnotours");
    expect(links).not.toContain("tbprunegone");
    // A bridge pruned behind this process's back is made again on the next plug.
    await network.prune(async () => ({ taps: new Set(), bridges: new Set() }));
    await network.plug([{ tap: "tbprunekeep", bridge: "brprunekeep", gatewayCidrs: ["192.0.2.1/24"] }]);
    expect(await ip("-o", "link", "show", "master", "brprunekeep")).toContain("tbprunekeep");
  });

  it("adopts an unmarked namespace (made before namespaces were marked)", async () => {
    const unmarked = uniqueNamespace();
    try {
      await exec("ip", ["netns", "add", unmarked]);
      expect(await namespaceOwner(unmarked)).toEqual({ exists: true, installation: null });
      expect(await new NamespaceNetwork(unmarked, INSTALLATION).ensureNamespace()).toBe("adopted");
      expect(await namespaceOwner(unmarked)).toEqual({ exists: true, installation: INSTALLATION });
    } finally {
      await removeNamespace(unmarked);
    }
    expect(await namespaceOwner(unmarked)).toEqual({ exists: false });
  });
});
