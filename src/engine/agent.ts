import { join } from "node:path";
import type { Kysely } from "kysely";
import type { HostDriver, StepTimeouts } from "../hosts/driver.js";
import { createDriver } from "../hosts/registry.js";
import { installationId, isDatabaseUnavailable, type Database } from "../store/index.js";
import { Worker, type WorkerEvents } from "./worker.js";

export interface AgentOptions {
  db: Kysely<Database>;
  /** The catalog host to run; when absent, the catalog's only host. */
  hostName?: string;
  /** Templates live in `<dataDir>/templates`, VMs in `<dataDir>/vms`. */
  dataDir: string;
  timeouts?: Partial<StepTimeouts>;
  leaseSeconds?: number;
  pollMs?: number;
  /** Wraps the host's driver (a call log in tests: hosts/call-log.ts). */
  instrument?: (driver: HostDriver) => HostDriver;
  log: (message: string, fields?: Record<string, unknown>) => void;
  /** Told when builds and tasks end, leases are taken over and work is retried (metrics). */
  events?: WorkerEvents;
}

/** What the in-process host agent says of itself, for /readyz. */
export interface AgentHealth {
  /** Its worker runs (its host is in the catalog and was prepared). */
  running: boolean;
  /** When it last compared its host with the records (ms since the epoch). */
  lastReconciledAt: number | undefined;
}

/**
 * The host agent of one hypervisor host: the driver its catalog entry names and the
 * worker that feeds it.
 * Waits for its host to appear in the catalog when it is not there yet.
 */
export class HostAgent {
  private worker: Worker | undefined;
  private driver: HostDriver | undefined;
  private stopped = false;
  private starting: Promise<void> | undefined;
  private hostName: string | undefined;

  constructor(private readonly options: AgentOptions) {}

  get templatesDir(): string {
    return join(this.options.dataDir, "templates");
  }

  start(): Promise<void> {
    this.starting ??= this.startWhenListed();
    return this.starting;
  }

  private async startWhenListed(): Promise<void> {
    let warned = false;
    while (!this.stopped) {
      try {
        if (await this.startListedHost()) return;
        if (!warned) {
          this.options.log(
            this.options.hostName
              ? `no host "${this.options.hostName}" in the catalog yet; waiting for it (trebuchet admin catalog apply)`
              : "the catalog has no single host to run yet; waiting (trebuchet admin catalog apply, or --host NAME)",
          );
          warned = true;
        }
      } catch (error) {
        // A database outage at start-up is waited out like any other.
        if (!isDatabaseUnavailable(error)) throw error;
        this.options.log("the host agent waits for the database to start", { err: (error as Error).message });
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  /** Starts the worker of the catalog's host, if it is listed. */
  private async startListedHost(): Promise<boolean> {
    const host = await this.findHost();
    if (!host) return false;
    const driver = createDriver(host.driver, {
      hostName: host.name,
      namespace: host.namespace,
      dataDir: this.options.dataDir,
      installation: await installationId(this.options.db),
      log: (message) => this.options.log(message),
    });
    this.driver = this.options.instrument ? this.options.instrument(driver) : driver;
    const worker = new Worker({
      db: this.options.db,
      driver: this.driver,
      hostName: host.name,
      templatesDir: this.templatesDir,
      ...(this.options.timeouts ? { timeouts: this.options.timeouts } : {}),
      ...(this.options.leaseSeconds ? { leaseSeconds: this.options.leaseSeconds } : {}),
      ...(this.options.pollMs ? { pollMs: this.options.pollMs } : {}),
      log: this.options.log,
      ...(this.options.events ? { events: this.options.events } : {}),
    });
    await worker.start();
    this.worker = worker;
    this.hostName = host.name;
    this.options.log(`host agent running host ${host.name}`);
    return true;
  }

  private async findHost() {
    const query = this.options.db.selectFrom("hosts").selectAll();
    const hosts = this.options.hostName
      ? await query.where("name", "=", this.options.hostName).execute()
      : await query.execute();
    return hosts.length === 1 ? hosts[0] : undefined;
  }

  poke(): void {
    this.worker?.poke();
  }

  /** For /readyz: whether the worker runs, and when it last reconciled its host. */
  health(): AgentHealth {
    return { running: this.worker !== undefined, lastReconciledAt: this.worker?.lastReconciledAt };
  }

  /** How many of its host's VMs have a running process (undefined until the worker runs). */
  async processes(): Promise<{ host: string; running: number } | undefined> {
    const driver = this.driver;
    if (!driver || !this.hostName || !this.worker) return undefined;
    let running = 0;
    for (const vmId of await driver.list()) if ((await driver.state(vmId)) === "running") running++;
    return { host: this.hostName, running };
  }

  console(vmId: string): Promise<string> | undefined {
    return this.driver?.console(vmId);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.starting?.catch(() => undefined);
    await this.worker?.stop();
  }
}
