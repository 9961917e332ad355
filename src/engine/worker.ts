import { sql, type Kysely, type SqlBool } from "kysely";
import { HostError, type HostDriver, type StepTimeouts } from "../hosts/driver.js";
import {
  randomAlphanumeric,
  type Database,
  type DialectName,
  type HostsTable,
  type TaskAction,
  type VirtualMachineState,
} from "../store/index.js";
import { loadVmDefinition } from "./definition.js";
import { releaseVm } from "./release.js";

export interface WorkerOptions {
  db: Kysely<Database>;
  dialect: DialectName;
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
}

export const DEFAULT_TIMEOUTS: StepTimeouts = { ready: 120_000, shutdown: 30_000 };

const now = () => Math.floor(Date.now() / 1000);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The lease is gone (another worker took the build): stop working on it, touch nothing. */
class LeaseLost extends Error {}

/**
 * A worker: claims pending builds and power tasks of its host's data center with a
 * lease (renewed by a heartbeat), runs them through the host driver, and records
 * every state change. Builds whose worker died are claimed again after their lease
 * expires (at once by the same host's next worker) and start over from a clean host.
 *
 * Placement is first-fit: the worker of a host with room (memory and disk of its live
 * VMs plus the new one within the host's capacity) claims the build; a worker whose
 * host is full leaves it to another host of the data center, and when no host there
 * has room the build fails and says so.
 */
export class Worker {
  readonly owner: string;
  private readonly leaseSeconds: number;
  private readonly pollMs: number;
  private readonly timeouts: StepTimeouts;
  private readonly maxAttempts: number;
  private readonly log: NonNullable<WorkerOptions["log"]>;
  private running = false;
  private loop: Promise<void> | undefined;
  private host!: HostsTable;
  private wake: (() => void) | undefined;
  /** Set by a poke that arrives while the loop is busy, so it looks again instead of sleeping. */
  private poked = false;
  private readonly concurrency: number;
  private readonly active = new Set<Promise<void>>();

  constructor(private readonly options: WorkerOptions) {
    this.owner = `${options.hostName}:${randomAlphanumeric(8)}`;
    this.leaseSeconds = options.leaseSeconds ?? 30;
    this.pollMs = options.pollMs ?? 250;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    this.maxAttempts = options.maxAttempts ?? 3;
    this.log = options.log ?? (() => undefined);
    this.concurrency = options.concurrency ?? 4;
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
    this.wake?.();
    await this.loop;
    await Promise.all(this.active);
  }

  /** Runs a job in the background, counting it against the worker's concurrency. */
  private spawn(job: () => Promise<void>): void {
    const running: Promise<void> = job()
      .catch((error: Error) => this.log("job failed unexpectedly", { err: error.message }))
      .finally(() => {
        this.active.delete(running);
        this.poke();
      });
    this.active.add(running);
  }

  /** Looks for work now instead of at the next poll (called when a build is accepted in-process). */
  poke(): void {
    this.poked = true;
    this.wake?.();
  }

  private async run(): Promise<void> {
    let lastReconcile = Date.now();
    while (this.running) {
      let worked = false;
      this.poked = false;
      try {
        if (this.active.size < this.concurrency)
          worked = (await this.claimBuild()) || (await this.claimTask());
        if (Date.now() - lastReconcile > 30_000) {
          lastReconcile = Date.now();
          await this.reconcile();
        }
      } catch (error) {
        this.log("worker loop error", { err: (error as Error).message });
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

  // ---- builds ----

  private async claimBuild(): Promise<boolean> {
    const t = now();
    const claimed = await this.db.transaction().execute(async (trx) => {
      let candidates = trx
        .selectFrom("builds")
        .select(["id", "state", "lease_owner"])
        .where("virtual_machine_id", "in", (eb) =>
          eb
            .selectFrom("virtual_machines")
            .innerJoin("zones", "zones.id", "virtual_machines.zone_id")
            .select("virtual_machines.id")
            .where("zones.data_center_id", "=", this.host.data_center_id),
        )
        .where((eb) =>
          eb.or([
            eb("state", "=", "pending"),
            eb.and([eb("state", "=", "building"), this.abandonedLease(t)]),
          ]),
        )
        .orderBy("created_at")
        .limit(1);
      if (this.options.dialect === "postgres") candidates = candidates.forUpdate().skipLocked();
      const build = await candidates.executeTakeFirst();
      if (!build) return undefined;
      if (!(await this.hasRoomFor(trx, build.id))) return { id: build.id, full: true };
      await trx
        .updateTable("builds")
        .set((eb) => ({
          state: "building",
          lease_owner: this.owner,
          lease_expires_at: t + this.leaseSeconds,
          attempts: eb("attempts", "+", 1),
          updated_at: t,
        }))
        .where("id", "=", build.id)
        .execute();
      // Placement happens with the claim, so concurrent claims count each other's VMs on the host.
      await trx
        .updateTable("virtual_machines")
        .set({ host_id: this.host.id, state: "allocating" })
        .where("id", "in", (eb) =>
          eb.selectFrom("builds").select("virtual_machine_id").where("id", "=", build.id),
        )
        .execute();
      return { id: build.id, full: false };
    });
    if (!claimed) return false;
    if (claimed.full) {
      // Another host of the data center may have room; only fail when none has.
      if (!(await this.anyHostHasRoom(claimed.id))) await this.failUnplaceable(claimed.id);
      return false;
    }
    this.spawn(() => this.executeBuild(claimed.id));
    return true;
  }

  /**
   * A lease nobody holds any more: expired, or held by an earlier incarnation of this
   * host's worker (one worker per host, so that one is dead). Builds and tasks share it.
   */
  private abandonedLease(t: number) {
    return sql<SqlBool>`(lease_expires_at < ${t} or (lease_owner like ${`${this.options.hostName}:%`} and lease_owner <> ${this.owner}))`;
  }

  private async vmNeeds(db: Kysely<Database>, buildId: string) {
    const row = await db
      .selectFrom("builds")
      .innerJoin("virtual_machines", "virtual_machines.id", "builds.virtual_machine_id")
      .select(["virtual_machines.id", "virtual_machines.memory_in_gb"])
      .where("builds.id", "=", buildId)
      .executeTakeFirstOrThrow();
    const disk = await db
      .selectFrom("disks")
      .select((eb) => eb.fn.sum<number>("size_in_gb").as("total"))
      .where("virtual_machine_id", "=", row.id)
      .where("shared", "=", 0)
      .executeTakeFirst();
    return { vmId: row.id, memory: row.memory_in_gb, disk: Number(disk?.total ?? 0) };
  }

  private async usage(db: Kysely<Database>, hostId: string, exceptVm: string) {
    const vms = await db
      .selectFrom("virtual_machines")
      .select((eb) => [eb.fn.sum<number>("memory_in_gb").as("memory")])
      .where("host_id", "=", hostId)
      .where("deleted_at", "is", null)
      .where("state", "!=", "failed")
      .where("id", "!=", exceptVm)
      .executeTakeFirst();
    const disks = await db
      .selectFrom("disks")
      .innerJoin("virtual_machines", "virtual_machines.id", "disks.virtual_machine_id")
      .select((eb) => eb.fn.sum<number>("disks.size_in_gb").as("disk"))
      .where("virtual_machines.host_id", "=", hostId)
      .where("virtual_machines.deleted_at", "is", null)
      .where("disks.state", "!=", "deleted")
      .where("disks.shared", "=", 0)
      .where("virtual_machines.id", "!=", exceptVm)
      .executeTakeFirst();
    return { memory: Number(vms?.memory ?? 0), disk: Number(disks?.disk ?? 0) };
  }

  private async hasRoomFor(db: Kysely<Database>, buildId: string, host = this.host): Promise<boolean> {
    const needs = await this.vmNeeds(db, buildId);
    const used = await this.usage(db, host.id, needs.vmId);
    return used.memory + needs.memory <= host.memory_in_gb && used.disk + needs.disk <= host.disk_in_gb;
  }

  private async anyHostHasRoom(buildId: string): Promise<boolean> {
    const hosts = await this.db
      .selectFrom("hosts")
      .selectAll()
      .where("data_center_id", "=", this.host.data_center_id)
      .where("state", "=", "active")
      .where("id", "!=", this.host.id)
      .execute();
    for (const host of hosts) if (await this.hasRoomFor(this.db, buildId, host)) return true;
    return false;
  }

  private async failUnplaceable(buildId: string): Promise<void> {
    const needs = await this.vmNeeds(this.db, buildId);
    const used = await this.usage(this.db, this.host.id, needs.vmId);
    const dc = await this.db
      .selectFrom("data_centers")
      .select("permalink")
      .where("id", "=", this.host.data_center_id)
      .executeTakeFirstOrThrow();
    await this.failBuild(
      buildId,
      needs.vmId,
      `no hypervisor host in data center ${dc.permalink} has room for ${needs.memory} GB of memory and ${needs.disk} GB of disk (host ${this.host.name}: ${used.memory} of ${this.host.memory_in_gb} GB memory and ${used.disk} of ${this.host.disk_in_gb} GB disk in use)`,
      false,
    );
  }

  private async executeBuild(buildId: string): Promise<void> {
    const build = await this.db
      .selectFrom("builds")
      .selectAll()
      .where("id", "=", buildId)
      .executeTakeFirstOrThrow();
    const vmId = build.virtual_machine_id!;
    const { driver } = this.options;
    let lost = false;
    const heartbeat = setInterval(
      () => {
        void this.db
          .updateTable("builds")
          .set({ lease_expires_at: now() + this.leaseSeconds })
          .where("id", "=", buildId)
          .where("lease_owner", "=", this.owner)
          .executeTakeFirst()
          .then((r) => {
            if (Number(r.numUpdatedRows) === 0) lost = true;
          })
          .catch(() => undefined);
      },
      (this.leaseSeconds * 1000) / 3,
    );
    const step = async (progress: number, what: string, body: () => Promise<void>) => {
      if (lost) throw new LeaseLost();
      this.log(`build ${buildId}: ${what}`, { progress });
      await this.db.updateTable("tasks").set({ progress }).where("id", "=", build.task_id).execute();
      await retryTransient(body);
    };
    try {
      const t = now();
      await this.db
        .updateTable("tasks")
        .set((eb) => ({
          status: "running",
          started_at: eb.fn.coalesce("started_at", eb.val(t)),
          progress: 5,
          error: null,
        }))
        .where("id", "=", build.task_id)
        .execute();
      if (build.attempts > this.maxAttempts)
        throw new HostError(`gave up after ${this.maxAttempts} attempts; the last was interrupted`);
      if (build.attempts > 1) {
        this.log(`build ${buildId}: attempt ${build.attempts}, clearing what the interrupted attempt left`);
        await driver.destroy(vmId);
      }
      await step(20, "creating disks, seed and network", async () => {
        const definition = await loadVmDefinition(this.db, vmId, this.options.templatesDir);
        await driver.create(definition);
        await this.db
          .updateTable("disks")
          .set({ state: "ready", host_id: this.host.id })
          .where("virtual_machine_id", "=", vmId)
          .where("shared", "=", 0)
          .execute();
      });
      await this.setVmState(vmId, "stopped");
      await step(50, "starting", async () => {
        await this.setVmState(vmId, "starting");
        await driver.start(vmId);
      });
      await step(60, "waiting for the guest", () => driver.waitReady(vmId, 0, this.timeouts.ready));
      if (lost) throw new LeaseLost();
      const done = now();
      await this.db.transaction().execute(async (trx) => {
        await trx.updateTable("virtual_machines").set({ state: "started" }).where("id", "=", vmId).execute();
        await trx
          .updateTable("disks")
          .set({ state: "attached" })
          .where("virtual_machine_id", "=", vmId)
          .execute();
        await trx
          .updateTable("builds")
          .set({ state: "complete", lease_owner: null, lease_expires_at: null, updated_at: done })
          .where("id", "=", buildId)
          .execute();
        await trx
          .updateTable("tasks")
          .set({ status: "completed", progress: 100, finished_at: done })
          .where("id", "=", build.task_id)
          .execute();
      });
      this.log(`build ${buildId}: complete`);
    } catch (error) {
      if (error instanceof LeaseLost) {
        this.log(`build ${buildId}: lease lost; leaving it to its new worker`);
      } else {
        await this.failBuild(
          buildId,
          vmId,
          error instanceof HostError ? error.message : `internal error: ${(error as Error).message}`,
          true,
        );
      }
    } finally {
      clearInterval(heartbeat);
    }
  }

  /** Records the failure and gives back everything the build reserved. */
  private async failBuild(buildId: string, vmId: string, reason: string, onHost: boolean): Promise<void> {
    this.log(`build ${buildId}: failed: ${reason}`);
    if (onHost) {
      try {
        await this.options.driver.destroy(vmId);
      } catch (error) {
        this.log(`build ${buildId}: cleaning the host failed: ${(error as Error).message}`);
      }
    }
    await releaseVm(this.db, vmId);
    const t = now();
    await this.db.transaction().execute(async (trx) => {
      const build = await trx
        .selectFrom("builds")
        .select("task_id")
        .where("id", "=", buildId)
        .executeTakeFirstOrThrow();
      await trx
        .updateTable("virtual_machines")
        .set({ state: "failed", deleted_at: t })
        .where("id", "=", vmId)
        .execute();
      await trx
        .updateTable("builds")
        .set({
          state: "failed",
          failure_reason: reason,
          lease_owner: null,
          lease_expires_at: null,
          updated_at: t,
        })
        .where("id", "=", buildId)
        .execute();
      await trx
        .updateTable("tasks")
        .set({ status: "failed", error: reason, finished_at: t })
        .where("id", "=", build.task_id)
        .execute();
    });
  }

  // ---- power actions and deletion ----

  private async claimTask(): Promise<boolean> {
    const t = now();
    const claimed = await this.db.transaction().execute(async (trx) => {
      let candidates = trx
        .selectFrom("tasks")
        .select(["id"])
        .where("action", "is not", null)
        .where("object_id", "in", (eb) =>
          eb.selectFrom("virtual_machines").select("id").where("host_id", "=", this.host.id),
        )
        .where((eb) =>
          eb.or([
            eb("status", "=", "pending"),
            eb.and([eb("status", "=", "running"), this.abandonedLease(t)]),
          ]),
        )
        .orderBy("created_at")
        .limit(1);
      if (this.options.dialect === "postgres") candidates = candidates.forUpdate().skipLocked();
      const task = await candidates.executeTakeFirst();
      if (!task) return undefined;
      await trx
        .updateTable("tasks")
        .set((eb) => ({
          status: "running",
          lease_owner: this.owner,
          lease_expires_at: t + this.leaseSeconds,
          started_at: eb.fn.coalesce("started_at", eb.val(t)),
          progress: 10,
        }))
        .where("id", "=", task.id)
        .execute();
      return task.id;
    });
    if (!claimed) return false;
    this.spawn(() => this.executeTask(claimed));
    return true;
  }

  private async executeTask(taskId: string): Promise<void> {
    const task = await this.db
      .selectFrom("tasks")
      .selectAll()
      .where("id", "=", taskId)
      .executeTakeFirstOrThrow();
    const vmId = task.object_id!;
    const action = task.action as TaskAction;
    const { driver } = this.options;
    const heartbeat = setInterval(
      () => {
        void this.db
          .updateTable("tasks")
          .set({ lease_expires_at: now() + this.leaseSeconds })
          .where("id", "=", taskId)
          .execute()
          .catch(() => undefined);
      },
      (this.leaseSeconds * 1000) / 3,
    );
    this.log(`task ${taskId}: ${action} ${vmId}`);
    try {
      switch (action) {
        case "start": {
          await this.setVmState(vmId, "starting");
          const since = await driver.consoleSize(vmId);
          await driver.start(vmId);
          await driver.waitReady(vmId, since, this.timeouts.ready);
          await this.setVmState(vmId, "started");
          break;
        }
        case "stop":
          await this.setVmState(vmId, "stopping");
          await driver.stop(vmId);
          await this.setVmState(vmId, "stopped");
          break;
        case "shutdown": {
          await this.setVmState(vmId, "shutting_down");
          const clean = await driver.shutdown(vmId, this.timeouts.shutdown);
          if (!clean) this.log(`task ${taskId}: the guest ignored the power button; powered off`);
          await this.setVmState(vmId, "stopped");
          break;
        }
        case "reset": {
          await this.setVmState(vmId, "resetting");
          const since = await driver.consoleSize(vmId);
          await driver.reset(vmId);
          await driver.waitReady(vmId, since, this.timeouts.ready);
          await this.setVmState(vmId, "started");
          break;
        }
        case "delete":
          await driver.destroy(vmId);
          await releaseVm(this.db, vmId);
          await this.setVmState(vmId, "stopped");
          break;
      }
      await this.db
        .updateTable("tasks")
        .set({
          status: "completed",
          progress: 100,
          finished_at: now(),
          lease_owner: null,
          lease_expires_at: null,
        })
        .where("id", "=", taskId)
        .execute();
    } catch (error) {
      const reason = (error as Error).message;
      this.log(`task ${taskId}: failed: ${reason}`);
      const actual = await driver.state(vmId).catch(() => "missing" as const);
      await this.setVmState(vmId, actual === "running" ? "started" : "stopped");
      await this.db
        .updateTable("tasks")
        .set({
          status: "failed",
          error: reason,
          finished_at: now(),
          lease_owner: null,
          lease_expires_at: null,
        })
        .where("id", "=", taskId)
        .execute();
    } finally {
      clearInterval(heartbeat);
    }
  }

  private async setVmState(vmId: string, state: VirtualMachineState): Promise<void> {
    await this.db.updateTable("virtual_machines").set({ state }).where("id", "=", vmId).execute();
  }

  // ---- reconciliation ----

  /**
   * Makes records and the host agree after a restart: a VM recorded as running whose
   * process is gone is stopped; a process that is running is started; anything on the
   * host that no live VM owns (a deleted or failed VM, a crashed build's leftovers) goes.
   */
  async reconcile(): Promise<void> {
    const { driver } = this.options;
    const vms = await this.db
      .selectFrom("virtual_machines")
      .select(["id", "state", "deleted_at"])
      .where("host_id", "=", this.host.id)
      .execute();
    const building = new Set(
      (
        await this.db
          .selectFrom("builds")
          .select("virtual_machine_id")
          .where("state", "in", ["pending", "building"])
          .execute()
      ).map((b) => b.virtual_machine_id),
    );
    const busy = new Set(
      (
        await this.db
          .selectFrom("tasks")
          .select("object_id")
          .where("status", "in", ["pending", "running"])
          .where("action", "is not", null)
          .execute()
      ).map((t) => t.object_id),
    );
    const live = new Set<string>();
    for (const vm of vms) {
      if (vm.deleted_at !== null || building.has(vm.id)) {
        if (building.has(vm.id)) live.add(vm.id);
        continue;
      }
      if (vm.state === "failed") continue;
      live.add(vm.id);
      if (busy.has(vm.id)) continue;
      const state = await driver.state(vm.id);
      const recorded: VirtualMachineState = state === "running" ? "started" : "stopped";
      if (vm.state !== recorded) {
        this.log(`reconcile: ${vm.id} is ${state}, was recorded ${vm.state}`);
        await this.setVmState(vm.id, recorded);
      }
    }
    for (const vmId of await driver.list()) {
      if (live.has(vmId)) continue;
      const pendingDelete = busy.has(vmId);
      if (pendingDelete) continue;
      this.log(`reconcile: removing ${vmId} from host ${this.host.name} (no live VM owns it)`);
      await driver.destroy(vmId);
    }
  }
}

async function retryTransient(body: () => Promise<void>, attempts = 3): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await body();
    } catch (error) {
      if (!(error instanceof HostError) || !error.transient || attempt >= attempts) throw error;
      await sleep(500 * attempt);
    }
  }
}
