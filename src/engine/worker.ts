import type { Kysely } from "kysely";
import { HostError, type HostDriver, type StepTimeouts } from "../hosts/driver.js";
import {
  actionStep,
  beginBuild,
  buildCreated,
  buildStep,
  claimBuild,
  claimTask,
  completeBuild,
  decideAction,
  failBuild,
  finishDiskTask,
  finishTask,
  reconfiguredTaskName,
  heartbeat,
  isDiskTaskAction,
  joinVmOnceBuilt,
  LeaseHolder,
  LeaseLost,
  recordObservedState,
  renewLease,
  stateOfPower,
  untilAvailable,
  type ClaimedBuild,
  type ClaimedTask,
  type Lease,
} from "../lifecycle/index.js";
import { isDatabaseUnavailable, type Database, type Row } from "../store/index.js";
import { loadVmDefinition } from "./definition.js";
import { liveOnHost, readHostRecords } from "./host-cleanup.js";

export interface WorkerOptions {
  db: Kysely<Database>;
  driver: HostDriver;
  /** The catalog host this worker runs VMs on (one worker per host). */
  hostName: string;
  templatesDir: string;
  leaseSeconds?: number;
  pollMs?: number;
  timeouts?: Partial<StepTimeouts>;
  /** Attempts at one build before it fails (a crash mid-build costs one). */
  maxAttempts?: number;
  /** Builds and tasks this worker runs at once. */
  concurrency?: number;
  log?: (message: string, fields?: Record<string, unknown>) => void;
  /** Told when builds and tasks end, leases are taken over and work is retried (metrics). */
  events?: WorkerEvents;
}

export interface WorkerEvents {
  buildFinished(outcome: "complete" | "failed", secondsSinceAccepted: number): void;
  taskFinished(action: string, outcome: "completed" | "failed"): void;
  leaseTakenOver(kind: "build" | "task"): void;
  retried(kind: "build_attempt" | "host_step"): void;
}

const NO_EVENTS: WorkerEvents = {
  buildFinished: () => undefined,
  taskFinished: () => undefined,
  leaseTakenOver: () => undefined,
  retried: () => undefined,
};

export const DEFAULT_TIMEOUTS: StepTimeouts = { ready: 120_000, shutdown: 30_000 };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A worker: the runner between the lifecycle and one host's driver. It claims pending
 * builds of its host's data center and the actions of its host's VMs (lifecycle/ decides
 * which, with a lease renewed by a heartbeat), drives the host, and reports every step
 * back through the lifecycle, which writes only while the lease is this worker's.
 *
 * While the database is unavailable the worker waits: claims stop, and the jobs in hand
 * retry their next write until it is back (nobody can take their leases during the
 * outage, and for one lease period after it no worker that saw the outage takes over an
 * expired lease, so the heartbeats renew them first). A job whose lease was taken stops
 * at its next step, cleans up what it made on its host, and writes nothing more.
 */
export class Worker {
  private readonly holder: LeaseHolder;
  private readonly pollMs: number;
  private readonly timeouts: StepTimeouts;
  private readonly maxAttempts: number;
  private readonly log: NonNullable<WorkerOptions["log"]>;
  private readonly events: WorkerEvents;
  private running = false;
  private loop: Promise<void> | undefined;
  private host!: Row<"hosts">;
  private wake: (() => void) | undefined;
  /** Set by a poke that arrives while the loop is busy, so it looks again instead of sleeping. */
  private poked = false;
  private readonly concurrency: number;
  private readonly active = new Set<Promise<void>>();
  /** Aborted by stop(): jobs stop waiting for an unavailable database. */
  private readonly stopping = new AbortController();
  /** Whether the loop is waiting out an outage (logged once per outage). */
  private waitingForDatabase = false;

  constructor(private readonly options: WorkerOptions) {
    this.holder = new LeaseHolder(options.hostName, options.leaseSeconds ?? 30);
    this.pollMs = options.pollMs ?? 250;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    this.maxAttempts = options.maxAttempts ?? 3;
    this.log = options.log ?? (() => undefined);
    this.events = options.events ?? NO_EVENTS;
    this.concurrency = options.concurrency ?? 4;
  }

  /** This worker's identity in lease tokens (`<host>:<random>`). */
  get owner(): string {
    return this.holder.id;
  }

  private get db() {
    return this.options.db;
  }

  async start(): Promise<void> {
    const host = await this.db
      .selectFrom("hosts")
      .selectAll()
      .where("name", "=", this.options.hostName)
      .executeTakeFirst();
    if (!host)
      throw new Error(`no host "${this.options.hostName}" in the catalog (trebuchet admin catalog apply)`);
    this.host = host;
    await this.options.driver.prepare();
    await this.reconcile();
    this.running = true;
    this.loop = this.run();
  }

  /** Stops claiming work and waits for the jobs in hand to finish. */
  async stop(): Promise<void> {
    this.running = false;
    this.stopping.abort();
    this.wake?.();
    await this.loop;
    await Promise.all(this.active);
  }

  /** Looks for work now instead of at the next poll (called when a build is accepted in-process). */
  poke(): void {
    this.poked = true;
    this.wake?.();
  }

  /** Runs a job in the background under its lease, counting it against the worker's concurrency. */
  private spawn(lease: Lease, job: (lost: () => boolean) => Promise<void>): void {
    let lost = false;
    this.holder.held.add(lease.token);
    const beat = heartbeat(this.db, lease, () => {
      lost = true;
      this.log(`${lease.id}: its lease was taken; stopping at the next step`);
    });
    const running: Promise<void> = job(() => lost)
      .catch((error: Error) => this.log("job failed unexpectedly", { err: error.message }))
      .finally(() => {
        beat.stop();
        this.holder.held.delete(lease.token);
        this.active.delete(running);
        this.poke();
      });
    this.active.add(running);
  }

  private async run(): Promise<void> {
    let lastReconcile = Date.now();
    while (this.running) {
      let worked = false;
      this.poked = false;
      try {
        if (this.active.size < this.concurrency) worked = (await this.nextBuild()) || (await this.nextTask());
        if (Date.now() - lastReconcile > 30_000) {
          lastReconcile = Date.now();
          await this.reconcile();
        }
        if (this.waitingForDatabase) this.log("the database is back; claiming again");
        this.waitingForDatabase = false;
      } catch (error) {
        if (!isDatabaseUnavailable(error)) this.log("worker loop error", { err: (error as Error).message });
        else {
          this.holder.noteOutage();
          if (!this.waitingForDatabase)
            this.log("the database is unavailable; waiting", { err: (error as Error).message });
          this.waitingForDatabase = true;
        }
      }
      if (!worked && !this.poked && this.running) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.pollMs);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = undefined;
      }
    }
  }

  /** A write of the job's progress, waited for through a database outage. */
  private write<T>(work: () => Promise<T>): Promise<T> {
    return untilAvailable(work, { signal: this.stopping.signal, onWait: () => this.holder.noteOutage() });
  }

  // ---- builds ----

  private async nextBuild(): Promise<boolean> {
    const claim = await claimBuild(this.db, this.holder, this.host);
    if (claim.kind === "unplaceable") this.log(`build ${claim.buildId}: failed: ${claim.reason}`);
    if (claim.kind !== "claimed") return false;
    if (claim.build.takenOver) this.events.leaseTakenOver("build");
    this.spawn(claim.build.lease, (lost) => this.executeBuild(claim.build, lost));
    return true;
  }

  private async executeBuild(build: ClaimedBuild, lost: () => boolean): Promise<void> {
    const { driver } = this.options;
    const { buildId, vmId } = build;
    const step = async (progress: number, what: string, body: () => Promise<void>) => {
      if (lost()) throw new LeaseLost(build.lease);
      this.log(`build ${buildId}: ${what}`, { progress });
      await this.write(() =>
        buildStep(this.db, build, progress, what === "starting" ? "starting" : undefined),
      );
      await retryTransient(body, () => this.events.retried("host_step"));
    };
    try {
      await this.write(() => beginBuild(this.db, build));
      if (build.attempt > this.maxAttempts)
        throw new HostError(`gave up after ${this.maxAttempts} attempts; the last was interrupted`);
      if (build.attempt > 1) {
        this.events.retried("build_attempt");
        this.log(`build ${buildId}: attempt ${build.attempt}, clearing what the interrupted attempt left`);
        await driver.destroy(vmId);
      }
      await step(20, "creating disks, seed and network", async () => {
        const definition = await this.write(() => loadVmDefinition(this.db, vmId, this.options.templatesDir));
        await driver.create(definition);
      });
      await this.write(() => buildCreated(this.db, build, this.host.id));
      await step(50, "starting", () => driver.start(vmId));
      await step(60, "waiting for the guest", () => driver.waitReady(vmId, 0, this.timeouts.ready));
      if (lost()) throw new LeaseLost(build.lease);
      await this.write(() => completeBuild(this.db, build));
      this.events.buildFinished("complete", secondsSince(build.acceptedAt));
      this.log(`build ${buildId}: complete`);
    } catch (error) {
      if (error instanceof LeaseLost || lost()) return this.abandon(build.lease, vmId);
      if (isDatabaseUnavailable(error) && this.stopping.signal.aborted) {
        // Stopping while the database is away: the lease runs out and the next worker starts over.
        this.log(`build ${buildId}: left to the next worker (database unavailable while stopping)`);
        return;
      }
      const reason =
        error instanceof HostError ? error.message : `internal error: ${(error as Error).message}`;
      // The host is cleaned only under a freshly renewed lease (a job whose lease was taken
      // must not destroy what the new claim is making), and before the failure is
      // recorded: a build the API shows as failed has left nothing on its host.
      try {
        await this.write(() => renewLease(this.db, build.lease));
        await this.destroyQuietly(vmId, `build ${buildId}`);
        await this.write(() => failBuild(this.db, build, reason));
      } catch (failure) {
        if (failure instanceof LeaseLost) return this.abandon(build.lease, vmId);
        throw failure;
      }
      this.events.buildFinished("failed", secondsSince(build.acceptedAt));
      this.log(`build ${buildId}: failed: ${reason}`);
    }
  }

  /**
   * The job's lease went to another claim. A build taken over by another host's worker
   * leaves nothing here: what this job made on the host is removed. A claim on this same
   * host (a build's next attempt, or any action: only the VM's host runs them) starts
   * from what the host really has, so it is left alone.
   */
  private async abandon(lease: Lease, vmId: string): Promise<void> {
    const vm = await this.db
      .selectFrom("virtual_machines")
      .select("host_id")
      .where("id", "=", vmId)
      .executeTakeFirst()
      .catch(() => undefined);
    // Unknown (the database is away again) counts as "this host": the next claim cleans up.
    if (lease.table === "tasks" || vm === undefined || vm.host_id === this.host.id) {
      this.log(`${lease.id}: lease taken by another claim; leaving the VM to it`);
      return;
    }
    this.log(`${lease.id}: lease lost; removing what this worker made on host ${this.host.name}`);
    await this.destroyQuietly(vmId, lease.id);
  }

  private async destroyQuietly(vmId: string, job: string): Promise<void> {
    try {
      await this.options.driver.destroy(vmId);
    } catch (error) {
      this.log(`${job}: cleaning the host failed: ${(error as Error).message}`);
    }
  }

  // ---- power actions and deletion ----

  private async nextTask(): Promise<boolean> {
    const task = await claimTask(this.db, this.holder, this.host.id);
    if (!task) return false;
    if (task.takenOver) this.events.leaseTakenOver("task");
    this.spawn(task.lease, (lost) => this.executeTask(task, lost));
    return true;
  }

  /** A standalone disk's build or purge: one call on the host, then the outcome. */
  private async executeDiskTask(task: ClaimedTask, lost: () => boolean): Promise<void> {
    const { driver } = this.options;
    const diskId = task.vmId;
    try {
      let path: string | undefined;
      if (task.action === "build_disk") {
        const disk = await this.write(() =>
          this.db.selectFrom("disks").select("size_in_gb").where("id", "=", diskId).executeTakeFirstOrThrow(),
        );
        this.log(`task ${task.taskId}: build disk ${diskId} (${disk.size_in_gb} GB)`);
        path = await driver.createDisk(diskId, disk.size_in_gb);
      } else if (task.action === "resize_disk") {
        const disk = await this.write(() =>
          this.db.selectFrom("disks").select("size_in_gb").where("id", "=", diskId).executeTakeFirstOrThrow(),
        );
        this.log(`task ${task.taskId}: grow disk ${diskId} to ${disk.size_in_gb} GB`);
        await driver.growDisk(diskId, disk.size_in_gb);
      } else if (task.action === "shrink_disk") {
        const disk = await this.write(() =>
          this.db.selectFrom("disks").select("size_in_gb").where("id", "=", diskId).executeTakeFirstOrThrow(),
        );
        this.log(`task ${task.taskId}: shrink disk ${diskId} to ${disk.size_in_gb} GB`);
        await driver.shrinkDisk(diskId, disk.size_in_gb);
      } else if (task.action === "disk_io_profile") {
        // The limits are the QEMU process's, set from the definition when a machine opens the disk.
        this.log(
          `task ${task.taskId}: disk ${diskId} is in no machine: its IO profile applies when one opens it`,
        );
      } else if (task.action === "purge") {
        this.log(`task ${task.taskId}: purge disk ${diskId}`);
        await driver.destroyDisk(diskId);
      } else throw new Error(`a disk has no ${task.action} action`);
      if (lost()) throw new LeaseLost(task.lease);
      await this.write(() =>
        finishDiskTask(this.db, task, path === undefined ? {} : { path }, joinVmOnceBuilt),
      );
      this.events.taskFinished(task.action, "completed");
    } catch (error) {
      if (error instanceof LeaseLost) return this.abandon(task.lease, diskId);
      if (isDatabaseUnavailable(error) && this.stopping.signal.aborted) return;
      const reason = (error as Error).message;
      this.log(`task ${task.taskId}: failed: ${reason}`);
      await this.write(() => finishDiskTask(this.db, task, { failure: reason })).then(
        () => this.events.taskFinished(task.action, "failed"),
        (failure: unknown) => {
          if (!(failure instanceof LeaseLost)) throw failure;
        },
      );
    }
  }

  private async executeTask(task: ClaimedTask, lost: () => boolean): Promise<void> {
    if (task.objectType === "Disk") return this.executeDiskTask(task, lost);
    if (isDiskTaskAction(task.action))
      throw new Error(`task ${task.taskId}: a VM has no ${task.action} action`);
    const { driver } = this.options;
    const { vmId } = task;
    const action = task.action;
    /** Before each call on the host: a job whose lease was taken touches the VM no more. */
    const stillMine = () => {
      if (lost()) throw new LeaseLost(task.lease);
    };
    try {
      const decision = decideAction(action, await driver.state(vmId));
      if (!decision.run) {
        this.log(`task ${task.taskId}: ${action} ${vmId}: nothing to do, it is ${decision.state}`);
        await this.write(() => finishTask(this.db, task, decision.state));
        this.events.taskFinished(action, "completed");
        return;
      }
      this.log(`task ${task.taskId}: ${action} ${vmId}`);
      await this.write(() => actionStep(this.db, task, decision.during));
      stillMine();
      let name: string | undefined;
      switch (action) {
        case "start": {
          const since = await driver.consoleSize(vmId);
          await driver.start(vmId);
          stillMine();
          await driver.waitReady(vmId, since, this.timeouts.ready);
          break;
        }
        case "stop":
          await driver.stop(vmId);
          break;
        case "shutdown":
          if (!(await driver.shutdown(vmId, this.timeouts.shutdown)))
            this.log(`task ${task.taskId}: the guest ignored the power button; powered off`);
          break;
        case "reset": {
          const since = await driver.consoleSize(vmId);
          await driver.reset(vmId);
          stillMine();
          await driver.waitReady(vmId, since, this.timeouts.ready);
          break;
        }
        case "delete":
          // To the trash: powered off, everything kept until it is purged.
          await driver.stop(vmId);
          break;
        case "purge":
          await driver.destroy(vmId);
          break;
        case "reconfigure": {
          const outcome = await driver.reconfigure(
            await this.write(() => loadVmDefinition(this.db, vmId, this.options.templatesDir)),
          );
          name = reconfiguredTaskName(outcome);
          break;
        }
      }
      await this.write(() => finishTask(this.db, task, decision.after, undefined, name));
      this.events.taskFinished(action, "completed");
    } catch (error) {
      if (error instanceof LeaseLost) return this.abandon(task.lease, vmId);
      // Stopping while the database is away: the lease runs out and the action runs again.
      if (isDatabaseUnavailable(error) && this.stopping.signal.aborted) return;
      const reason = (error as Error).message;
      this.log(`task ${task.taskId}: failed: ${reason}`);
      const power = await driver.state(vmId).catch(() => "missing" as const);
      await this.write(() => finishTask(this.db, task, stateOfPower(power), reason)).then(
        () => this.events.taskFinished(action, "failed"),
        (failure: unknown) => {
          if (!(failure instanceof LeaseLost)) throw failure;
        },
      );
    }
  }

  // ---- reconciliation ----

  /**
   * Makes records and the host agree after a restart: a VM recorded as running whose
   * process is gone is stopped; a process that is running is started; anything on the
   * host that no live VM owns (a purged or failed VM, a crashed build's leftovers) goes;
   * a VM in the trash stays until its purge.
   */
  /** When the host was last reconciled with the records (ms since the epoch). */
  lastReconciledAt: number | undefined;

  async reconcile(): Promise<void> {
    const { driver } = this.options;
    const records = await readHostRecords(this.db, this.host.id);
    const live = liveOnHost(records);
    for (const vm of records.vms) {
      // Being built, in the trash (kept, powered off, until its purge), failed, or with an
      // action in hand: nothing to observe.
      if (!live.has(vm.id) || vm.deleted_at !== null || records.building.has(vm.id)) continue;
      if (records.busy.has(vm.id)) continue;
      const observed = stateOfPower(await driver.state(vm.id));
      if (vm.state !== observed && (await recordObservedState(this.db, vm.id, vm.state, observed)))
        this.log(`reconcile: ${vm.id} is ${observed} on its host, was recorded ${vm.state}`);
    }
    for (const vmId of await driver.list()) {
      if (live.has(vmId)) continue;
      this.log(`reconcile: removing ${vmId} from host ${this.host.name} (no live VM owns it)`);
      await driver.destroy(vmId);
    }
    this.lastReconciledAt = Date.now();
  }
}

const secondsSince = (unixSeconds: number) => Math.max(0, Date.now() / 1000 - unixSeconds);

async function retryTransient(body: () => Promise<void>, retrying: () => void, attempts = 3): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await body();
    } catch (error) {
      if (!(error instanceof HostError) || !error.transient || attempt >= attempts) throw error;
      retrying();
      await sleep(500 * attempt);
    }
  }
}
