/** END TO END (root, no QEMU): the namespace networking of the QEMU driver against the real kernel. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NamespaceNetwork } from "../../src/hosts/qemu/network.js";
import { removeNamespace, uniqueNamespace } from "../support/e2e.js";

const exec = promisify(execFile);
const namespace = uniqueNamespace();
const ip = async (...args: string[]) => (await exec("ip", ["-n", namespace, ...args])).stdout;

describe("namespace networking", () => {
  let network: NamespaceNetwork;
  beforeAll(async () => {
    network = new NamespaceNetwork(namespace);
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
    const other = new NamespaceNetwork(namespace);
    await expect(
      other.plug([{ tap: "tbtapclash", bridge: "brclash", gatewayCidrs: ["198.51.100.1/24"] }]),
    ).rejects.toThrow(/brfresh .*has VMs on it/);
    expect(await ip("-o", "link", "show", "master", "brfresh")).toContain("tbtapnew");
  });
});
