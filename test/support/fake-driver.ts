/** An in-memory host driver, for unit tests of the engine only (the product uses the QEMU driver). */
import { HostError, type HostDriver, type PowerState, type VmDefinition } from "../../src/hosts/driver.js";

interface FakeVm {
  definition: VmDefinition;
  running: boolean;
  console: string;
  boots: number;
}

export class FakeDriver implements HostDriver {
  readonly vms = new Map<string, FakeVm>();
  readonly calls: string[] = [];
  /** Make the next operation of this kind fail (for failure paths). */
  failNext: Partial<Record<"create" | "start" | "ready", string>> = {};
  /** How long a boot takes (ms). */
  bootMs = 20;

  constructor(readonly name = "fake") {}

  async prepare(): Promise<void> {}

  private vm(id: string): FakeVm {
    const vm = this.vms.get(id);
    if (!vm) throw new HostError(`VM ${id} does not exist on host ${this.name}`);
    return vm;
  }

  async create(definition: VmDefinition): Promise<void> {
    this.calls.push(`create ${definition.id}`);
    if (this.failNext.create) {
      const reason = this.failNext.create;
      delete this.failNext.create;
      throw new HostError(reason);
    }
    this.vms.set(definition.id, { definition, running: false, console: "", boots: 0 });
  }

  async start(id: string): Promise<void> {
    this.calls.push(`start ${id}`);
    const vm = this.vm(id);
    if (this.failNext.start) {
      const reason = this.failNext.start;
      delete this.failNext.start;
      throw new HostError(reason);
    }
    if (vm.running) return;
    vm.running = true;
    this.boot(vm);
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
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async stop(id: string): Promise<void> {
    this.calls.push(`stop ${id}`);
    const vm = this.vms.get(id);
    if (vm) vm.running = false;
  }

  async shutdown(id: string): Promise<boolean> {
    this.calls.push(`shutdown ${id}`);
    const vm = this.vms.get(id);
    if (vm) vm.running = false;
    return true;
  }

  async reset(id: string): Promise<void> {
    this.calls.push(`reset ${id}`);
    const vm = this.vm(id);
    if (!vm.running) throw new HostError(`VM ${id} is not running`);
    this.boot(vm);
  }

  async destroy(id: string): Promise<void> {
    this.calls.push(`destroy ${id}`);
    this.vms.delete(id);
  }

  async state(id: string): Promise<PowerState> {
    const vm = this.vms.get(id);
    return !vm ? "missing" : vm.running ? "running" : "stopped";
  }

  async list(): Promise<string[]> {
    return [...this.vms.keys()];
  }

  async console(id: string): Promise<string> {
    return this.vm(id).console;
  }

  async consoleSize(id: string): Promise<number> {
    return this.vms.get(id)?.console.length ?? 0;
  }
}
