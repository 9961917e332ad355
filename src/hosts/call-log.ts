import type {
  HostCleanupOptions,
  HostCleanupReport,
  HostDriver,
  PowerState,
  Reconfigured,
  VmDefinition,
} from "./driver.js";

/** One call that acted on a VM, with when it began and ended (performance.now()). */
export interface DriverCall {
  operation:
    | "create"
    | "start"
    | "stop"
    | "shutdown"
    | "reset"
    | "reconfigure"
    | "destroy"
    | "waitReady"
    | "createDisk"
    | "growDisk"
    | "shrinkDisk"
    | "destroyDisk";
  vmId: string;
  startedAt: number;
  endedAt: number | undefined;
  failed: boolean;
}

/**
 * A driver that logs every call acting on a VM, with its span, and notes any call that
 * began while another on the same VM was still in progress: what the host was asked to
 * do, as the host saw it. Wraps any driver (the QEMU driver in end-to-end tests, the
 * fake in the engine's).
 */
export class LoggedDriver implements HostDriver {
  readonly log: DriverCall[] = [];
  readonly overlaps: [DriverCall, DriverCall][] = [];
  private readonly inProgress = new Map<string, DriverCall>();

  constructor(readonly inner: HostDriver) {}

  get name(): string {
    return this.inner.name;
  }

  private async act<T>(operation: DriverCall["operation"], vmId: string, body: () => Promise<T>): Promise<T> {
    const call: DriverCall = {
      operation,
      vmId,
      startedAt: performance.now(),
      endedAt: undefined,
      failed: false,
    };
    this.log.push(call);
    const other = this.inProgress.get(vmId);
    if (other) this.overlaps.push([other, call]);
    this.inProgress.set(vmId, call);
    try {
      return await body();
    } catch (error) {
      call.failed = true;
      throw error;
    } finally {
      call.endedAt = performance.now();
      if (this.inProgress.get(vmId) === call) this.inProgress.delete(vmId);
    }
  }

  prepare(): Promise<void> {
    return this.inner.prepare();
  }
  create(vm: VmDefinition): Promise<void> {
    return this.act("create", vm.id, () => this.inner.create(vm));
  }
  start(vmId: string): Promise<void> {
    return this.act("start", vmId, () => this.inner.start(vmId));
  }
  waitReady(vmId: string, since: number, timeoutMs: number): Promise<void> {
    return this.act("waitReady", vmId, () => this.inner.waitReady(vmId, since, timeoutMs));
  }
  stop(vmId: string): Promise<void> {
    return this.act("stop", vmId, () => this.inner.stop(vmId));
  }
  shutdown(vmId: string, timeoutMs: number): Promise<boolean> {
    return this.act("shutdown", vmId, () => this.inner.shutdown(vmId, timeoutMs));
  }
  reset(vmId: string): Promise<void> {
    return this.act("reset", vmId, () => this.inner.reset(vmId));
  }
  reconfigure(vm: VmDefinition): Promise<Reconfigured> {
    return this.act("reconfigure", vm.id, () => this.inner.reconfigure(vm));
  }
  destroy(vmId: string): Promise<void> {
    return this.act("destroy", vmId, () => this.inner.destroy(vmId));
  }
  createDisk(diskId: string, sizeInGb: number): Promise<string> {
    return this.act("createDisk", diskId, () => this.inner.createDisk(diskId, sizeInGb));
  }
  growDisk(diskId: string, sizeInGb: number): Promise<void> {
    return this.act("growDisk", diskId, () => this.inner.growDisk(diskId, sizeInGb));
  }
  shrinkDisk(diskId: string, sizeInGb: number): Promise<void> {
    return this.act("shrinkDisk", diskId, () => this.inner.shrinkDisk(diskId, sizeInGb));
  }
  destroyDisk(diskId: string): Promise<void> {
    return this.act("destroyDisk", diskId, () => this.inner.destroyDisk(diskId));
  }
  state(vmId: string): Promise<PowerState> {
    return this.inner.state(vmId);
  }
  list(): Promise<string[]> {
    return this.inner.list();
  }
  cleanup(live: ReadonlySet<string>, options?: HostCleanupOptions): Promise<HostCleanupReport> {
    return this.inner.cleanup(live, options);
  }
  console(vmId: string): Promise<string> {
    return this.inner.console(vmId);
  }
  consoleSize(vmId: string): Promise<number> {
    return this.inner.consoleSize(vmId);
  }
}
