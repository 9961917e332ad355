/** END TO END: the host driver conformance suite against the QEMU driver, with real guests. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QemuDriver } from "../../src/hosts/qemu/driver.js";
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
