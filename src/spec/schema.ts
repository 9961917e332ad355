import { LOOKUP_KINDS, type LookupKind, type VirtualMachineSpec } from "./model.js";

/**
 * The JSON/YAML form, described once: each key's type and the XML element it stands
 * for, so that errors carry the same element paths whichever form was sent.
 */
export type FieldType =
  | { kind: "string" }
  | { kind: "int" }
  | { kind: "bool" }
  | { kind: "lookup"; lookup: LookupKind }
  | { kind: "object"; fields: Record<string, Field> }
  | { kind: "list"; item: FieldType; itemElement: string };

export interface Field {
  type: FieldType;
  /** Path segment(s) of the XML element this key maps to ("" when it maps to an attribute). */
  element: string;
}

export const str: FieldType = { kind: "string" };
const int: FieldType = { kind: "int" };
const bool: FieldType = { kind: "bool" };
const lookup = (kind: LookupKind): FieldType => ({ kind: "lookup", lookup: kind });
const object = (fields: Record<string, Field>): FieldType => ({ kind: "object", fields });
const list = (item: FieldType, itemElement: string): FieldType => ({ kind: "list", item, itemElement });
export const field = (type: FieldType, element: string): Field => ({ type, element });

const schedule = object({
  interval: field(str, "Interval"),
  frequency: field(int, "Frequency"),
  time: field(int, "Time"),
});
const backupPolicies = list(
  object({ retention: field(int, "Retention"), schedule: field(schedule, "Schedule") }),
  "BackupPolicy",
);

export const SPEC_SCHEMA: FieldType = object({
  zone: field(lookup("Zone"), "Zone"),
  data_center: field(lookup("DataCenter"), "DataCenter"),
  resources: field(
    object({
      package: field(lookup("Package"), "Package"),
      memory: field(int, "Memory"),
      cpu_cores: field(int, "CPUCores"),
    }),
    "Resources",
  ),
  disk_template: field(
    object({
      id: field(str, "DiskTemplate"),
      permalink: field(str, "DiskTemplate"),
      version: field(int, "Version"),
      options: field(list(object({ key: field(str, ""), value: field(str, "") }), "Option"), ""),
    }),
    "DiskTemplate",
  ),
  system_disks: field(
    list(
      object({
        name: field(str, "Name"),
        size: field(int, "Size"),
        speed: field(str, "Speed"),
        io_profile: field(lookup("DiskIOProfile"), "IOProfile"),
        file_system_type: field(str, "FileSystemType"),
        backup_policies: field(backupPolicies, "BackupPolicies"),
      }),
      "Disk",
    ),
    "SystemDisks",
  ),
  shared_disks: field(list(lookup("SharedDisk"), "Disk"), "SharedDisks"),
  network_interfaces: field(
    list(
      object({
        network: field(lookup("Network"), "Network"),
        virtual_network: field(lookup("VirtualNetwork"), "VirtualNetwork"),
        speed_profile: field(lookup("NetworkSpeedProfile"), "SpeedProfile"),
        ip_address_allocations: field(
          list(
            object({
              type: field(str, ""),
              ip_address: field(lookup("IPAddress"), "IPAddress"),
              version: field(int, "Version"),
              subnet: field(lookup("Subnet"), "Subnet"),
            }),
            "IPAddressAllocation",
          ),
          "",
        ),
      }),
      "NetworkInterface",
    ),
    "NetworkInterfaces",
  ),
  hostname: field(str, "Hostname/Hostname"),
  name: field(str, "Name"),
  description: field(str, "Description"),
  group: field(lookup("Group"), "Group"),
  authorized_keys: field(
    object({
      all_users: field(bool, "Users"),
      all_ssh_keys: field(bool, "SSHKeys"),
      users: field(list(lookup("User"), "User"), "Users"),
      ssh_keys: field(list(str, "SSHKey"), "SSHKeys"),
      continuous_management: field(bool, ""),
    }),
    "AuthorizedKeys",
  ),
  backup_policies: field(backupPolicies, "BackupPolicies"),
  tags: field(list(str, "Tag"), "Tags"),
  iso: field(str, "ISO"),
});

/**
 * The model as a plain object in canonical key order with zero values dropped
 * (0, "", false, empty lists), keeping empty lookups and containers (`{}`) and a
 * template option's key and value. Writers serialise this; tests compare it.
 */
export function canonical(spec: VirtualMachineSpec): Record<string, unknown> {
  return (canonicalValue(spec, SPEC_SCHEMA) ?? {}) as Record<string, unknown>;
}

export function canonicalValue(value: unknown, type: FieldType): unknown {
  if (value === undefined || value === null) return undefined;
  switch (type.kind) {
    case "string":
      return value === "" ? undefined : value;
    case "int":
      return value === 0 ? undefined : value;
    case "bool":
      return value === true ? true : undefined;
    case "lookup": {
      const out: Record<string, unknown> = {};
      const source = value as Record<string, unknown>;
      for (const key of LOOKUP_KINDS[type.lookup]) {
        if (typeof source[key] === "string" && source[key] !== "") out[key] = source[key];
      }
      return out;
    }
    case "object": {
      const out: Record<string, unknown> = {};
      const source = value as Record<string, unknown>;
      const isOption = "key" in type.fields && "value" in type.fields;
      for (const [key, field] of Object.entries(type.fields)) {
        const v = isOption ? (source[key] ?? "") : canonicalValue(source[key], field.type);
        if (v !== undefined) out[key] = v;
      }
      return out;
    }
    case "list": {
      const items = value as unknown[];
      if (items.length === 0) return undefined;
      return items.map((item) => canonicalValue(item, type.item) ?? (type.item.kind === "string" ? "" : {}));
    }
  }
}
