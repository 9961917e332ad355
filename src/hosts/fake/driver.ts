/**
 * An in-memory host driver: VMs are records, boots are timers. The engine's tests and
 * the fleet simulation run on it (`driver: fake` in the catalog); the product's hosts
 * use the QEMU driver. It passes the same conformance suite (test/hosts/conformance.ts).
 * Its operations take `operationMs` each, so that calls that overlap (see call-log.ts)
 * overlap for long enough to be seen.
 */
import {
  HostError,
  type HostCleanupReport,
  type HostDriver,
  type PowerState,
  type Reconfigured,
  type VmDefinition,
} from "../driver.js";

interface FakeVm {
  definition: VmDefinition;
  running: boolean;
  console: string;
  boots: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class FakeDriver implements HostDriver {
  readonly vms = new Map<string, FakeVm>();
  /** Standalone disks: ID -> size in GB. */
  readonly disks = new Map<string, number>();
  /** `operation vmId`, in the order the calls arrived. */
  readonly calls: string[] = [];
  /** Make the next operation of this kind fail (for failure paths). */
  failNext: Partial<Record<"create" | "start" | "ready" | "shrinkDisk", string>> = {};
  /** How long a boot takes (ms). */
  bootMs = 20;
  /** How long each operation on a VM takes (ms). */
  operationMs = 0;

  constructor(readonly name = "fake") {}

  async prepare(): Promise<void> {}

  private vm(id: string): FakeVm {
    const vm = this.vms.get(id);
    if (!vm) throw new HostError(`VM ${id} does not exist on host ${this.name}`);
    return vm;
  }

  /** Runs one operation on a VM, noting the call. */
  private async act<T>(operation: string, vmId: string, body: () => T): Promise<T> {
    this.calls.push(`${operation} ${vmId}`);
    if (this.operationMs > 0) await sleep(this.operationMs);
    return body();
  }

  private failing(kind: "create" | "start" | "shrinkDisk"): void {
    const reason = this.failNext[kind];
    if (reason === undefined) return;
    delete this.failNext[kind];
    throw new HostError(reason);
  }

  create(definition: VmDefinition): Promise<void> {
    return this.act("create", definition.id, () => {
      this.failing("create");
      this.vms.set(definition.id, { definition, running: false, console: "", boots: 0 });
    });
  }

  start(id: string): Promise<void> {
    return this.act("start", id, () => {
      const vm = this.vm(id);
      this.failing("start");
      if (vm.running) return;
      vm.running = true;
      this.boot(vm);
    });
  }

  private boot(vm: FakeVm): void {
    vm.boots++;
    const refuses = vm.definition.options.some((o) => o.key === "fail_boot" && o.value === "true");
    const failure = this.failNext.ready ?? (refuses ? "template option fail_boot=true" : undefined);
    delete this.failNext.ready;
    setTimeout(() => {
      vm.console += failure
        ? `TREBUCHET-FAILED ${failure}\n`
        : `boot ${vm.boots}\nTREBUCHET-READY ${vm.definition.id}\n`;
      if (failure) vm.running = false;
    }, this.bootMs);
  }

  async waitReady(id: string, since: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = this.vm(id).console.slice(since);
      if (text.includes(`TREBUCHET-READY ${id}`)) return;
      const failed = /TREBUCHET-FAILED (.*)/.exec(text);
      if (failed) throw new HostError(`the guest reported: ${failed[1]}`);
      if (Date.now() > deadline) throw new HostError("the guest was not ready in time");
      await sleep(5);
    }
  }

  stop(id: string): Promise<void> {
    return this.act("stop", id, () => {
      const vm = this.vms.get(id);
      if (vm) vm.running = false;
    });
  }

  shutdown(id: string): Promise<boolean> {
    return this.act("shutdown", id, () => {
      const vm = this.vms.get(id);
      if (vm) vm.running = false;
      return true;
    });
  }

  reset(id: string): Promise<void> {
    return this.act("reset", id, () => {
      const vm = this.vm(id);
      if (!vm.running) throw new HostError(`VM ${id} is not running`);
      this.boot(vm);
    });
  }

  reconfigure(definition: VmDefinition): Promise<Reconfigured> {
    return this.act("reconfigure", definition.id, () => {
      const vm = this.vm(definition.id);
      const addresses = (d: VmDefinition) => JSON.stringify(d.interfaces.map((i) => [i.mac, i.addresses]));
      const disks = (d: VmDefinition) => d.disks.map((disk) => disk.id).join(" ");
      // The fake guest takes new addresses and disks at once while it runs, as the demo
      // template's agent and a q35 machine's hot-plug do.
      const taken = (changed: boolean) =>
        !changed ? ("unchanged" as const) : vm.running ? ("live" as const) : ("next_start" as const);
      const outcome = {
        addresses: taken(addresses(vm.definition) !== addresses(definition)),
        disks: taken(disks(vm.definition) !== disks(definition)),
      };
      vm.definition = definition;
      return outcome;
    });
  }

  createDisk(diskId: string, sizeInGb: number): Promise<string> {
    return this.act("createDisk", diskId, () => {
      this.disks.set(diskId, sizeInGb);
      return `fake://${this.name}/disks/${diskId}`;
    });
  }

  growDisk(diskId: string, sizeInGb: number): Promise<void> {
    return this.act("growDisk", diskId, () => {
      if (!this.disks.has(diskId)) throw new HostError(`disk ${diskId} does not exist on host ${this.name}`);
      this.disks.set(diskId, Math.max(sizeInGb, this.disks.get(diskId)!));
    });
  }

  shrinkDisk(diskId: string, sizeInGb: number): Promise<void> {
    return this.act("shrinkDisk", diskId, () => {
      this.failing("shrinkDisk");
      if (!this.disks.has(diskId)) throw new HostError(`disk ${diskId} does not exist on host ${this.name}`);
      this.disks.set(diskId, Math.min(sizeInGb, this.disks.get(diskId)!));
    });
  }

  destroyDisk(diskId: string): Promise<void> {
    return this.act("destroyDisk", diskId, () => {
      this.disks.delete(diskId);
    });
  }

  destroy(id: string): Promise<void> {
    return this.act("destroy", id, () => {
      this.vms.delete(id);
    });
  }

  async state(id: string): Promise<PowerState> {
    const vm = this.vms.get(id);
    return !vm ? "missing" : vm.running ? "running" : "stopped";
  }

  async list(): Promise<string[]> {
    return [...this.vms.keys()];
  }

  async cleanup(live: ReadonlySet<string>): Promise<HostCleanupReport> {
    const vms = [...this.vms.keys()].filter((id) => !live.has(id));
    for (const id of vms) await this.destroy(id);
    return { vms, links: [], namespaceRemoved: null, notes: [] };
  }

  async console(id: string): Promise<string> {
    return this.vm(id).console;
  }

  async consoleSize(id: string): Promise<number> {
    return this.vms.get(id)?.console.length ?? 0;
  }
}
