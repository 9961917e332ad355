import { FakeDriver } from "../../src/hosts/fake/driver.js";
import { driverConformance } from "./conformance.js";

driverConformance(
  "fake (the engine's test double)",
  async () => ({
    driver: new FakeDriver(),
    vm: (id) => ({
      id,
      hostname: "conformance",
      memoryInMb: 256,
      cpuCores: 1,
      template: { kind: "kernel", image: "/dev/null", kernel: "/dev/null", initrd: null },
      disks: [],
      interfaces: [],
      dnsServers: [],
      authorizedKeys: [],
      options: [],
    }),
    cleanup: async () => undefined,
  }),
  2000,
);
