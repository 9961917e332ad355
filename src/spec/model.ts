/**
 * The virtual machine spec as a typed model. Key names are the JSON/YAML keys of
 * the reference (`spec-format.md` §6); XML, JSON and YAML all read into this one shape.
 * Zero values (0, "", false, []) mean "not given"; an empty lookup object `{}` is present.
 */

export type LookupKey = "id" | "name" | "permalink" | "address" | "email_address";
export type Lookup = Partial<Record<LookupKey, string>>;

/** Lookup kinds as named in error messages, with the identifier keys each accepts (precedence order). */
export const LOOKUP_KINDS = {
  Zone: ["id", "permalink"],
  DataCenter: ["id", "name", "permalink"],
  Package: ["id", "permalink"],
  DiskTemplate: ["id", "permalink"],
  DiskIOProfile: ["id", "permalink"],
  SharedDisk: ["id", "name"],
  Network: ["id", "permalink"],
  NetworkSpeedProfile: ["id", "permalink"],
  Subnet: ["id", "address"],
  IPAddress: ["id", "address"],
  Group: ["id", "name"],
  User: ["id", "email_address"],
  VirtualNetwork: ["id"],
} as const satisfies Record<string, readonly LookupKey[]>;

export type LookupKind = keyof typeof LOOKUP_KINDS;

export interface Resources {
  package?: Lookup;
  memory?: number;
  cpu_cores?: number;
}

export interface TemplateOption {
  key: string;
  value: string;
}

/** The template lookup is flattened into this object (`id` / `permalink`), as go-katapult does. */
export interface DiskTemplateSpec {
  id?: string;
  permalink?: string;
  version?: number;
  options?: TemplateOption[];
}

export const SCHEDULE_INTERVALS = ["hourly", "daily", "weekly", "monthly"] as const;
export const DISK_SPEEDS = ["nvme", "ssd"] as const;
export const FILE_SYSTEM_TYPES = ["ext4", "xfs"] as const;
export const ALLOCATION_TYPES = ["new", "existing"] as const;
export const IP_VERSIONS = [4, 6] as const;

export interface Schedule {
  interval?: string;
  frequency?: number;
  time?: number;
}

export interface BackupPolicy {
  retention?: number;
  schedule?: Schedule;
}

export interface SystemDisk {
  name?: string;
  size?: number;
  speed?: string;
  io_profile?: Lookup;
  file_system_type?: string;
  backup_policies?: BackupPolicy[];
}

export interface IPAddressAllocation {
  type?: string;
  ip_address?: Lookup;
  version?: number;
  subnet?: Lookup;
}

export interface NetworkInterface {
  network?: Lookup;
  virtual_network?: Lookup;
  speed_profile?: Lookup;
  ip_address_allocations?: IPAddressAllocation[];
}

export interface AuthorizedKeys {
  all_users?: boolean;
  all_ssh_keys?: boolean;
  users?: Lookup[];
  ssh_keys?: string[];
  /** The real server's `continuous_management` attribute; XML-only in Katapult, kept in the model so it survives. */
  continuous_management?: boolean;
}

export interface VirtualMachineSpec {
  zone?: Lookup;
  data_center?: Lookup;
  resources?: Resources;
  disk_template?: DiskTemplateSpec;
  system_disks?: SystemDisk[];
  shared_disks?: Lookup[];
  network_interfaces?: NetworkInterface[];
  hostname?: string;
  name?: string;
  description?: string;
  group?: Lookup;
  authorized_keys?: AuthorizedKeys;
  backup_policies?: BackupPolicy[];
  tags?: string[];
  iso?: string;
}

export type SpecFormat = "xml" | "json" | "yaml";
export const SPEC_FORMATS: readonly SpecFormat[] = ["xml", "json", "yaml"];
