import { join } from "node:path";
import type { HostDriver } from "./driver.js";
import { DRIVER_NAMES, isDriverName, type DriverName } from "./driver-names.js";
import { FakeDriver } from "./fake/driver.js";
import { QemuDriver } from "./qemu/driver.js";

/** What a driver is made from: the catalog's host, and where this agent keeps its files. */
export interface DriverContext {
  hostName: string;
  /** Driver-specific place of the host's VMs (the QEMU driver's network namespace). */
  namespace: string | null;
  /** The agent's data directory: `vms/`, `disks/` and `cache/` live here. */
  dataDir: string;
  /** The installation what the driver makes on the machine is marked with (store/installation.ts). */
  installation: string;
  log: (message: string) => void;
}

/** Host drivers by the name a catalog host gives in `driver`. */
const DRIVERS: Record<DriverName, (context: DriverContext) => HostDriver> = {
  qemu: (context: DriverContext): HostDriver =>
    new QemuDriver({
      name: context.hostName,
      vmsDir: join(context.dataDir, "vms"),
      cacheDir: join(context.dataDir, "cache"),
      disksDir: join(context.dataDir, "disks"),
      namespace: context.namespace,
      installation: context.installation,
      log: context.log,
    }),
  /**
   * In memory: for the engine's tests and fleet simulations, never real VMs. Its guests
   * take TREBUCHET_FAKE_BOOT_MS to boot (default 20).
   */
  fake: (context: DriverContext): HostDriver => {
    const driver = new FakeDriver(context.hostName);
    const bootMs = Number(process.env.TREBUCHET_FAKE_BOOT_MS);
    if (Number.isSafeInteger(bootMs) && bootMs >= 0) driver.bootMs = bootMs;
    return driver;
  },
};

/** The driver a host names; an unknown name is an error the operator must fix in the catalog. */
export function createDriver(driver: string, context: DriverContext): HostDriver {
  if (!isDriverName(driver))
    throw new Error(
      `host ${context.hostName} names driver "${driver}"; known drivers: ${DRIVER_NAMES.join(", ")}`,
    );
  return DRIVERS[driver](context);
}
