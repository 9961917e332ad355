/**
 * The hypervisor driver interface. The engine speaks only this; the QEMU driver is the
 * product's implementation, and a fake stands in for it in the engine's unit tests. Both
 * pass the same conformance suite (test/hosts/conformance.ts).
 */

export interface GuestAddress {
  /** `192.0.2.10` or `2001:db8::10`. */
  address: string;
  prefix: number;
  version: 4 | 6;
  gateway: string | null;
}

export interface GuestInterface {
  id: string;
  mac: string;
  /** The L2 segment the interface joins (a network or virtual network ID). */
  segment: string;
  /** Addresses the segment's gateway holds on the host side, `address/prefix`. */
  gatewayCidrs: string[];
  addresses: GuestAddress[];
  /** The interface's speed profile, in Mbit/s (null: unlimited); absent in older definitions. */
  speed?: InterfaceSpeed;
}

export interface InterfaceSpeed {
  /** Traffic to the guest. */
  downloadMbit: number | null;
  /** Traffic from the guest. */
  uploadMbit: number | null;
}

/** A disk's IO profile; null fields are unlimited. */
export interface DiskLimits {
  megabytesPerSecond: number | null;
  iops: number | null;
}

export interface GuestDisk {
  id: string;
  sizeInGb: number;
  /** The system disk is an overlay on the template image; other disks start blank. */
  system: boolean;
  /** An existing disk image to attach (shared disks), instead of creating one. */
  existingPath?: string;
  /** The disk's IO profile (absent in older definitions: unlimited). */
  limits?: DiskLimits;
}

export interface VmTemplate {
  kind: "cloud" | "kernel";
  /** Absolute paths. */
  image: string;
  kernel: string | null;
  initrd: string | null;
}

/** Everything a host needs to run one VM; derived from the build plan and the database. */
export interface VmDefinition {
  id: string;
  hostname: string;
  memoryInMb: number;
  cpuCores: number;
  template: VmTemplate;
  disks: GuestDisk[];
  interfaces: GuestInterface[];
  dnsServers: string[];
  authorizedKeys: string[];
  options: { key: string; value: string }[];
}

/**
 * How a guest took a reconfiguration, for its addresses and its set of disks: `live`, the
 * guest has it now; `next_start`, it will when it next starts (or it is stopped);
 * `unchanged`, nothing changed.
 */
export interface Reconfigured {
  addresses: "live" | "next_start" | "unchanged";
  disks: "live" | "next_start" | "unchanged";
}

export type PowerState = "running" | "stopped" | "missing";

export interface StepTimeouts {
  /** Longest wait for the guest's readiness marker after start (ms). */
  ready: number;
  /** How long an ACPI shutdown may take before the VM is powered off (ms). */
  shutdown: number;
}

export interface HostDriver {
  readonly name: string;
  /** Once per process: networking scaffolding, accelerator probe. */
  prepare(): Promise<void>;
  /** Creates disks, seed and network for a VM, undoing its own steps if one fails. */
  create(vm: VmDefinition): Promise<void>;
  /** Starts the VM's process (detached: it outlives the control plane). */
  start(vmId: string): Promise<void>;
  /** Resolves when the guest reports ready; rejects with the guest's reason or on timeout. */
  waitReady(vmId: string, since: number, timeoutMs: number): Promise<void>;
  /** Immediate power off. */
  stop(vmId: string): Promise<void>;
  /** ACPI power button; powers off after `timeoutMs` if the guest ignores it. Resolves true when the guest shut down itself. */
  shutdown(vmId: string, timeoutMs: number): Promise<boolean>;
  /** Hard reset. */
  reset(vmId: string): Promise<void>;
  /**
   * Applies a changed definition to a VM that exists: its interfaces, speed limits and
   * disk IO limits on the host side at once; disks that grew, at once (a running guest
   * sees the new size); addresses, in a running guest at once where its template has
   * Trebuchet's agent, else from its next start; memory, CPUs, and interfaces and disks
   * added or removed, from the guest's next start. Idempotent.
   */
  reconfigure(vm: VmDefinition): Promise<Reconfigured>;
  /**
   * Creates a blank disk that belongs to no VM yet (a standalone disk); returns the path
   * a VM's definition names it by (`existingPath`). Idempotent.
   */
  createDisk(diskId: string, sizeInGb: number): Promise<string>;
  /** Grows a standalone disk that no VM has attached (attached ones grow with `reconfigure`). */
  growDisk(diskId: string, sizeInGb: number): Promise<void>;
  /**
   * Shrinks a standalone disk that no machine has open (offline), its filesystem first
   * where it holds one that can shrink; refuses (HostError) what would lose data.
   */
  shrinkDisk(diskId: string, sizeInGb: number): Promise<void>;
  /** Removes a standalone disk; one already gone is fine. */
  destroyDisk(diskId: string): Promise<void>;
  /** Stops the VM and removes everything `create` made. Safe to call on a half-created VM. */
  destroy(vmId: string): Promise<void>;
  state(vmId: string): Promise<PowerState>;
  /** VMs this host has any trace of (for reconciliation after a restart). */
  list(): Promise<string[]>;
  /**
   * Removes what no VM of `live` owns (its VM directories, a running one powered off
   * first; taps and bridges), and the host's scaffolding (its network namespace) when
   * nothing of this installation is left on it. Never touches another installation's.
   * Safe without `prepare`, and beside a running agent of the same installation.
   */
  cleanup(live: ReadonlySet<string>, options?: HostCleanupOptions): Promise<HostCleanupReport>;
  /** The serial console so far. */
  console(vmId: string): Promise<string>;
  /** Offset of the console now (pass to waitReady to wait for the next boot). */
  consoleSize(vmId: string): Promise<number>;
}

export interface HostCleanupOptions {
  /** Also remove the host's namespace when another installation marked it and no process lives in it. */
  abandoned?: boolean;
}

export interface HostCleanupReport {
  /** VMs whose host state was removed. */
  vms: string[];
  /** Network links removed (taps, bridges). */
  links: string[];
  /** The network namespace, when it was removed. */
  namespaceRemoved: string | null;
  /** What was left alone, and why. */
  notes: string[];
}

/** A failure the guest or host reported; the message is for the build's failure reason. */
export class HostError extends Error {
  constructor(
    message: string,
    readonly transient = false,
  ) {
    super(message);
  }
}
