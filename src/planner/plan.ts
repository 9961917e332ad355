import type { VirtualMachineSpec } from "../spec/index.js";

export interface KeyValue {
  key: string;
  value: string;
}

/** What a build will create, every reference resolved to an ID. Stored with the build as JSON. */
export interface BuildPlan {
  organizationId: string;
  dataCenterId: string;
  zoneId: string;
  packageId: string | null;
  memoryInGb: number;
  cpuCores: number;
  template: {
    templateId: string;
    versionId: string;
    number: number;
    kind: "cloud" | "kernel";
    sizeInGb: number;
    options: KeyValue[];
  };
  disks: PlannedDisk[];
  sharedDiskIds: string[];
  interfaces: PlannedInterface[];
  hostname: string;
  /** True when the spec gave no hostname and the planner made one up. */
  hostnameGenerated: boolean;
  name: string;
  description: string | null;
  groupId: string | null;
  /** Public keys to install (resolved from users, the organization's keys and inline keys). */
  authorizedKeys: string[];
  continuousManagement: boolean;
  backupPolicies: PlannedBackupPolicy[];
  /** Tag names in the order given; missing tags are created. */
  tags: string[];
  isoId: string | null;
}

export interface PlannedBackupPolicy {
  retention: number;
  interval: string | null;
  frequency: number | null;
  time: number | null;
}

export interface PlannedDisk {
  name: string;
  sizeInGb: number;
  speed: string;
  ioProfileId: string | null;
  fileSystemType: string | null;
  /** The first disk boots the VM: an overlay on the template image. */
  system: boolean;
  backupPolicies: PlannedBackupPolicy[];
}

export type PlannedAllocation =
  { kind: "new"; version: 4 | 6; subnetId: string | null } | { kind: "existing"; ipAddressId: string };

export interface PlannedInterface {
  networkId: string | null;
  virtualNetworkId: string | null;
  speedProfileId: string | null;
  allocations: PlannedAllocation[];
}

/** A problem with a reference or a value against the catalog, located like a spec error. */
export interface PlanProblem {
  path: string;
  code: "not_found" | "not_allowed" | "unavailable" | "invalid_value" | "missing_value";
  message: string;
}

export type PlanResult =
  { ok: true; plan: BuildPlan; normalized: VirtualMachineSpec } | { ok: false; problems: PlanProblem[] };
