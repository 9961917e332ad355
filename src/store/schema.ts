/**
 * The database schema as TypeScript types (Kysely checks every query against them).
 * Conventions, identical on SQLite and PostgreSQL:
 * - IDs are text with a type prefix (`vm_...`);
 * - timestamps are Unix seconds (bigint);
 * - booleans are integers 0/1 (SQLite has no boolean type);
 * - lists and small documents are JSON in text columns (`*_json`).
 */

import type { Generated, Insertable, Selectable } from "kysely";

export type Flag = 0 | 1;
export type Timestamp = number;

export const ORGANIZATION_STATES = ["active", "suspended", "not_activated"] as const;
export type OrganizationState = (typeof ORGANIZATION_STATES)[number];

export const ROLES = ["owner", "admin", "member", "viewer"] as const;
export type Role = (typeof ROLES)[number];

export const BUILD_STATES = ["draft", "pending", "building", "complete", "failed"] as const;
export type BuildState = (typeof BUILD_STATES)[number];

export const TASK_STATUSES = ["pending", "running", "completed", "failed"] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export const VIRTUAL_MACHINE_STATES = [
  "stopped",
  "failed",
  "started",
  "starting",
  "allocated",
  "allocating",
  "resetting",
  "migrating",
  "stopping",
  "shutting_down",
  "transferring",
  "orphaned",
] as const;
export type VirtualMachineState = (typeof VIRTUAL_MACHINE_STATES)[number];

export interface OrganizationsTable {
  id: string;
  name: string;
  sub_domain: string;
  infrastructure_domain: string;
  state: OrganizationState;
  managed: Flag;
  currency_iso_code: string;
  country_iso_code: string | null;
  created_at: Timestamp;
  activated_at: Timestamp | null;
  suspended_at: Timestamp | null;
}

/** An organization's own limits: null = the configured default, -1 = unlimited. */
export interface OrganizationLimitsTable {
  organization_id: string;
  virtual_machines: number | null;
  virtual_machine_memory: number | null;
  disk_space: number | null;
  unallocated_ip_addresses: number | null;
  updated_at: Timestamp;
}

export interface UsersTable {
  id: string;
  email_address: string;
  first_name: string | null;
  last_name: string | null;
  created_at: Timestamp;
}

export interface MembershipsTable {
  organization_id: string;
  user_id: string;
  role: Role;
  created_at: Timestamp;
}

export interface ApiTokensTable {
  id: string;
  name: string;
  organization_id: string;
  user_id: string | null;
  role: Role;
  /** SHA-256 of the secret, hex; the secret itself is never stored. */
  secret_hash: string;
  scopes_json: string;
  allowed_networks_json: string;
  created_at: Timestamp;
  expires_at: Timestamp | null;
  revoked_at: Timestamp | null;
  last_used_at: Timestamp | null;
  last_used_ip: string | null;
}

export interface DataCentersTable {
  id: string;
  name: string;
  permalink: string;
  country_name: string;
  country_iso_code: string;
  created_at: Timestamp;
}

export interface ZonesTable {
  id: string;
  name: string;
  permalink: string | null;
  data_center_id: string;
  created_at: Timestamp;
}

export interface HostsTable {
  id: string;
  name: string;
  data_center_id: string;
  zone_id: string;
  driver: string;
  cpu_cores: number;
  memory_in_gb: number;
  disk_in_gb: number;
  state: "active" | "draining" | "offline";
  /** Network namespace (or other driver-specific place) where this host's VMs run. */
  namespace: string | null;
  heartbeat_at: Timestamp | null;
  created_at: Timestamp;
}

export interface PackagesTable {
  id: string;
  name: string;
  permalink: string;
  cpu_cores: number;
  memory_in_gb: number;
  storage_in_gb: number;
  ipv4_addresses: number;
  monthly_bandwidth_allowance_in_gb: number | null;
  privacy: "public" | "private";
  /** Set for private packages: the only organization that may use it. */
  organization_id: string | null;
  use_dedicated_cpus: Flag;
  group_name: string;
  created_at: Timestamp;
}

export interface DiskTemplatesTable {
  id: string;
  name: string;
  permalink: string;
  description: string | null;
  universal: Flag;
  organization_id: string | null;
  operating_system_name: string | null;
  created_at: Timestamp;
}

export interface DiskTemplateVersionsTable {
  id: string;
  disk_template_id: string;
  number: number;
  stable: Flag;
  size_in_gb: number;
  /** `cloud`: a qcow2 booted by firmware with cloud-init; `kernel`: kernel + initramfs + root disk. */
  image_kind: "cloud" | "kernel";
  image_path: string;
  kernel_path: string | null;
  initrd_path: string | null;
  /** The fields a spec's `<Option key=...>` may set: [{name, type, label, required, prefill, ...}]. */
  options_json: string;
  created_at: Timestamp;
}

export interface DiskIOProfilesTable {
  id: string;
  name: string;
  permalink: string;
  speed_in_mb: number | null;
  iops: number | null;
  created_at: Timestamp;
}

export interface NetworksTable {
  id: string;
  name: string;
  permalink: string | null;
  data_center_id: string;
  is_default: Flag;
  dns_servers_json: string;
  created_at: Timestamp;
}

export interface SubnetsTable {
  id: string;
  network_id: string;
  ip_version: 4 | 6;
  /** The subnet in CIDR form (`192.0.2.0/24`). */
  cidr: string;
  gateway: string | null;
  /** The addresses handed out: `range_start`..`range_end`, inclusive. */
  range_start: string;
  range_end: string;
  created_at: Timestamp;
}

export interface VirtualNetworksTable {
  id: string;
  name: string;
  organization_id: string;
  data_center_id: string;
  created_at: Timestamp;
}

export interface NetworkSpeedProfilesTable {
  id: string;
  name: string;
  permalink: string;
  upload_speed_in_mbit: number | null;
  download_speed_in_mbit: number | null;
  created_at: Timestamp;
}

export interface IpAddressesTable {
  id: string;
  organization_id: string | null;
  network_id: string;
  subnet_id: string;
  ip_version: 4 | 6;
  address: string;
  /** Fixed-width hex of the address, so addresses sort and compare as text. */
  address_key: string;
  reverse_dns: string | null;
  /** Defaults to 0 in the schema. */
  vip: Generated<Flag>;
  label: string | null;
  allocation_type: string | null;
  allocation_id: string | null;
  /** The interface of the VM it is allocated on (null when not on a VM). */
  network_interface_id: string | null;
  /** Made for the VM it is allocated to: back to the pool when that VM is purged. Defaults to 0. */
  release_with_vm: Generated<Flag>;
  created_at: Timestamp;
}

export interface SshKeysTable {
  id: string;
  organization_id: string;
  user_id: string | null;
  name: string;
  public_key: string;
  fingerprint: string;
  created_at: Timestamp;
}

export interface VirtualMachineGroupsTable {
  id: string;
  organization_id: string;
  name: string;
  segregate: Flag;
  auto_segregate: Flag;
  created_at: Timestamp;
}

export interface TagsTable {
  id: string;
  organization_id: string;
  name: string;
  color: string;
  created_at: Timestamp;
}

export interface IsosTable {
  id: string;
  name: string;
  /** Null for ISOs every organization may use. */
  organization_id: string | null;
  operating_system_name: string | null;
  path: string;
  created_at: Timestamp;
}

export interface DisksTable {
  id: string;
  organization_id: string;
  data_center_id: string;
  name: string;
  size_in_gb: number;
  storage_speed: string;
  io_profile_id: string | null;
  file_system_type: string | null;
  virtual_machine_id: string | null;
  /** Place of the disk on its VM: 1 = system disk; null when detached. */
  position: number | null;
  /** Defaults to 0 in the schema. */
  shared: Generated<Flag>;
  host_id: string | null;
  path: string | null;
  state: "pending" | "ready" | "attached" | "deleting" | "deleted" | "failed";
  /** A standalone disk being built for a VM (`virtual_machine_disk` at creation): assigned to it once built. */
  build_for_vm_id: string | null;
  /** ...and then attached too. Defaults to 0 in the schema. */
  attach_when_built: Generated<Flag>;
  /** The size a standalone disk had before a resize its own task carries out (restored if it fails). */
  size_before_resize_in_gb: number | null;
  created_at: Timestamp;
}

export interface DiskBackupPoliciesTable {
  id: string;
  virtual_machine_id: string | null;
  disk_id: string | null;
  retention: number;
  schedule_interval: string | null;
  schedule_frequency: number | null;
  schedule_time: number | null;
  /** The minute of the hour a run starts (null: on the hour). */
  schedule_minute: number | null;
  /** When the policy is due to go (null: kept). */
  delete_at: Timestamp | null;
  created_at: Timestamp;
}

export interface VirtualMachinesTable {
  id: string;
  organization_id: string;
  name: string;
  hostname: string;
  fqdn: string;
  description: string | null;
  state: VirtualMachineState;
  zone_id: string;
  host_id: string | null;
  package_id: string | null;
  group_id: string | null;
  iso_id: string | null;
  disk_template_version_id: string | null;
  memory_in_gb: number;
  cpu_cores: number;
  initial_root_password: string | null;
  created_at: Timestamp;
  /** Set when the VM went to the trash (it keeps its disks and addresses there). */
  deleted_at: Timestamp | null;
  /** Set when the VM was purged (or its build failed): gone for good. */
  purged_at: Timestamp | null;
}

export interface VirtualMachineTagsTable {
  virtual_machine_id: string;
  tag_id: string;
  position: number;
}

export interface NetworkInterfacesTable {
  id: string;
  virtual_machine_id: string;
  position: number;
  network_id: string | null;
  virtual_network_id: string | null;
  speed_profile_id: string | null;
  mac_address: string;
  /** Defaults to `attached` in the schema. */
  state: Generated<"attached" | "detached">;
  created_at: Timestamp;
}

export interface BuildsTable {
  id: string;
  organization_id: string;
  virtual_machine_id: string | null;
  task_id: string;
  state: BuildState;
  /** The document as the client sent it. */
  submitted_spec: string;
  /** The normalised spec XML served as `spec_xml` (resolved IDs, chosen version, lower-cased hostname). */
  spec_xml: string;
  /** What the engine will build, resolved against the catalog at acceptance. */
  plan_json: string;
  failure_reason: string | null;
  lease_owner: string | null;
  lease_expires_at: Timestamp | null;
  /** Defaults to 0 in the schema. */
  attempts: Generated<number>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/**
 * What a VM's queued task does: power actions; `delete` (to the trash: powered off,
 * everything kept); `purge` (out of the trash: destroyed on its host, what it held given
 * back); `reconfigure` (its host applies a changed definition: addresses, interfaces,
 * disks). A standalone disk's tasks: `build_disk`, `resize_disk`, `shrink_disk` (offline), `disk_io_profile`
 * (a disk no machine has open takes its limits when one opens it), and `purge` out of
 * the trash.
 */
export const TASK_ACTIONS = [
  "start",
  "stop",
  "shutdown",
  "reset",
  "delete",
  "purge",
  "reconfigure",
  "build_disk",
  "resize_disk",
  "shrink_disk",
  "disk_io_profile",
] as const;
export type TaskAction = (typeof TASK_ACTIONS)[number];

export interface TasksTable {
  id: string;
  organization_id: string | null;
  name: string;
  status: TaskStatus;
  /** What a worker does for it; null for build tasks (the build drives those). */
  action: TaskAction | null;
  lease_owner: string | null;
  lease_expires_at: Timestamp | null;
  /** A VM's actions run one at a time in this order (null for build tasks). */
  queue_position: number | null;
  /** The task this one is part of (each VM's purge in a whole trash's purge). */
  parent_id: string | null;
  /** Defaults to 0 in the schema. */
  progress: Generated<number>;
  object_type: string | null;
  object_id: string | null;
  error: string | null;
  created_at: Timestamp;
  started_at: Timestamp | null;
  finished_at: Timestamp | null;
}

export interface AnnotationsTable {
  object_type: string;
  object_id: string;
  position: number;
  key: string;
  value: string | null;
}

export interface IdempotencyKeysTable {
  identity_id: string;
  key: string;
  request_hash: string;
  /** What the request did, as the lifecycle records it (see lifecycle/idempotency.ts). */
  outcome_json: string;
  created_at: Timestamp;
  expires_at: Timestamp;
}

export interface RateLimitCountersTable {
  identity_id: string;
  bucket: string;
  window_start: Timestamp;
  count: number;
}

export interface TrashObjectsTable {
  id: string;
  object_type: string;
  object_id: string;
  organization_id: string;
  keep_until: Timestamp;
  created_at: Timestamp;
}

export interface SettingsTable {
  key: string;
  value: string;
  updated_at: Timestamp;
}

export interface Database {
  organizations: OrganizationsTable;
  organization_limits: OrganizationLimitsTable;
  users: UsersTable;
  memberships: MembershipsTable;
  api_tokens: ApiTokensTable;
  data_centers: DataCentersTable;
  zones: ZonesTable;
  hosts: HostsTable;
  packages: PackagesTable;
  disk_templates: DiskTemplatesTable;
  disk_template_versions: DiskTemplateVersionsTable;
  disk_io_profiles: DiskIOProfilesTable;
  networks: NetworksTable;
  subnets: SubnetsTable;
  virtual_networks: VirtualNetworksTable;
  network_speed_profiles: NetworkSpeedProfilesTable;
  ip_addresses: IpAddressesTable;
  ssh_keys: SshKeysTable;
  virtual_machine_groups: VirtualMachineGroupsTable;
  tags: TagsTable;
  isos: IsosTable;
  disks: DisksTable;
  disk_backup_policies: DiskBackupPoliciesTable;
  virtual_machines: VirtualMachinesTable;
  virtual_machine_tags: VirtualMachineTagsTable;
  network_interfaces: NetworkInterfacesTable;
  builds: BuildsTable;
  tasks: TasksTable;
  annotations: AnnotationsTable;
  idempotency_keys: IdempotencyKeysTable;
  rate_limit_counters: RateLimitCountersTable;
  trash_objects: TrashObjectsTable;
  settings: SettingsTable;
}

/** A row of a table as selected (the type callers use for what they read). */
export type Row<T extends keyof Database> = Selectable<Database[T]>;
/** A row to insert: nullable columns may be left out (they default to null in the schema). */
export type NewRow<T extends keyof Database> = Insertable<Database[T]>;
