import {
  ALLOCATION_TYPES,
  DISK_SPEEDS,
  FILE_SYSTEM_TYPES,
  IP_VERSIONS,
  LOOKUP_KINDS,
  SCHEDULE_INTERVALS,
  type BackupPolicy,
  type Lookup,
  type LookupKey,
  type LookupKind,
  type VirtualMachineSpec,
} from "./model.js";
import { ROOT_PATH, type SourceMap, type SpecError } from "./problems.js";

/** Ranges the structural rules enforce; a catalog may narrow them further. */
export const VALUE_RANGES = {
  memory: [1, 1024],
  cpuCores: [1, 256],
  diskSize: [1, 65_536],
  retention: [1, 1000],
  frequency: [1, 1000],
  hour: [0, 23],
  nameLength: 255,
  tagLength: 64,
  identifierLength: 255,
} as const;

const NOT_BLANK = /\S/;
const LABEL = "[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?";
const HOSTNAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);
const SSH_KEY_TYPES = new Set([
  "ssh-ed25519",
  "ssh-rsa",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
]);

/** RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, 253 characters at most. */
export function isValidHostname(hostname: string): boolean {
  return hostname.length <= 253 && HOSTNAME.test(hostname);
}

/** Why an OpenSSH public key line is unusable, or undefined when it is fine. */
export function sshKeyProblem(key: string): string | undefined {
  const parts = key.trim().split(/\s+/);
  const [type, body] = parts;
  if (!type || !body) return "an SSH key must read `<type> <base64 key> [comment]`";
  if (!SSH_KEY_TYPES.has(type)) return `SSH key type "${type}" is not supported`;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) return "the SSH key's body is not base64";
  const blob = Buffer.from(body, "base64");
  const length = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
  if (length < 0 || 4 + length > blob.length || blob.subarray(4, 4 + length).toString("latin1") !== type) {
    return `the SSH key's body does not hold a ${type} key`;
  }
  return undefined;
}

/**
 * Structural rules of a spec that reads: required parts, enums, ranges, conflicting
 * combinations, host names and SSH keys. Collects every problem; references are not
 * resolved here (the planner does that against the catalog).
 */
export function validateSpec(spec: VirtualMachineSpec, sources: SourceMap): SpecError[] {
  const errors: SpecError[] = [];
  const report = (path: string, code: SpecError["code"], message: string) =>
    errors.push({ ...sources.get(path), path, code, message });
  const root = ROOT_PATH;

  const lookup = (value: Lookup | undefined, path: string, kind: LookupKind, label: string) => {
    if (value === undefined) return;
    const given: LookupKey[] = [];
    for (const key of LOOKUP_KINDS[kind]) if (NOT_BLANK.test(value[key] ?? "")) given.push(key);
    if (given.length === 0) {
      report(path, "empty_lookup", `${label} is empty: give ${describeKeys(kind)}`);
    } else if (given.length > 1) {
      report(
        path,
        "ambiguous_lookup",
        `${label} names several identifiers (${given.join(", ")}); give only one`,
      );
    } else if (value[given[0]!]!.length > VALUE_RANGES.identifierLength) {
      report(path, "invalid_value", `${label} is longer than ${VALUE_RANGES.identifierLength} characters`);
    }
  };
  const range = (
    value: number | undefined,
    path: string,
    label: string,
    [min, max]: readonly [number, number],
  ) => {
    if (value !== undefined && (value < min || value > max)) {
      report(path, "out_of_range", `${label} must be between ${min} and ${max}, got ${value}`);
    }
  };
  const oneOf = (value: string | undefined, path: string, label: string, allowed: readonly string[]) => {
    if (value !== undefined && !allowed.includes(value)) {
      report(path, "invalid_value", `${label} must be one of ${allowed.join(", ")}, got "${value}"`);
    }
  };
  const length = (value: string | undefined, path: string, label: string, max: number) => {
    if (value !== undefined && value.length > max)
      report(path, "invalid_value", `${label} is longer than ${max} characters`);
  };
  const backupPolicies = (policies: BackupPolicy[] | undefined, path: string) => {
    policies?.forEach((policy, i) => {
      const p = `${path}/BackupPolicy[${i + 1}]`;
      range(policy.retention, `${p}/Retention`, "Retention", VALUE_RANGES.retention);
      const schedule = policy.schedule;
      if (!schedule) return;
      if (schedule.interval === undefined) {
        report(
          `${p}/Schedule`,
          "missing_element",
          `a Schedule needs an Interval (${SCHEDULE_INTERVALS.join(", ")})`,
        );
      }
      oneOf(schedule.interval, `${p}/Schedule/Interval`, "Interval", SCHEDULE_INTERVALS);
      range(schedule.frequency, `${p}/Schedule/Frequency`, "Frequency", VALUE_RANGES.frequency);
      range(schedule.time, `${p}/Schedule/Time`, "Time (hour of the day)", VALUE_RANGES.hour);
    });
  };

  // Location
  if (spec.zone === undefined && spec.data_center === undefined) {
    report(root, "missing_element", "a Zone or a DataCenter is required");
  }
  lookup(spec.zone, `${root}/Zone`, "Zone", "Zone");
  lookup(spec.data_center, `${root}/DataCenter`, "DataCenter", "DataCenter");

  // Resources
  const resources = spec.resources;
  if (!resources) {
    report(root, "missing_element", "Resources are required: a Package, or Memory and CPUCores");
  } else {
    const path = `${root}/Resources`;
    lookup(resources.package, `${path}/Package`, "Package", "Package");
    if (!resources.package && (resources.memory === undefined || resources.cpu_cores === undefined)) {
      report(path, "missing_element", "Resources need a Package, or both Memory and CPUCores");
    }
    range(resources.memory, `${path}/Memory`, "Memory (GB)", VALUE_RANGES.memory);
    range(resources.cpu_cores, `${path}/CPUCores`, "CPUCores", VALUE_RANGES.cpuCores);
  }

  // Disk template
  const template = spec.disk_template;
  if (!template) {
    report(root, "missing_element", "a DiskTemplate is required");
  } else {
    const path = `${root}/DiskTemplate`;
    lookup(
      { id: template.id, permalink: template.permalink },
      `${path}/DiskTemplate`,
      "DiskTemplate",
      "DiskTemplate",
    );
    if (template.version !== undefined && template.version < 1) {
      report(`${path}/Version`, "out_of_range", `Version must be 1 or more, got ${template.version}`);
    }
    const keys = new Set<string>();
    template.options?.forEach((option, i) => {
      const p = `${path}/Option[${i + 1}]`;
      if (option.key.trim() === "") report(p, "missing_attribute", "an Option needs a key attribute");
      else if (keys.has(option.key))
        report(p, "duplicate_element", `Option "${option.key}" is given more than once`);
      keys.add(option.key);
    });
  }

  // System disks
  const diskNames = new Set<string>();
  spec.system_disks?.forEach((disk, i) => {
    const p = `${root}/SystemDisks/Disk[${i + 1}]`;
    if (disk.size === undefined && i > 0) {
      report(p, "missing_element", "a Size (GB) is required for every disk after the first");
    }
    range(disk.size, `${p}/Size`, "Size (GB)", VALUE_RANGES.diskSize);
    oneOf(disk.speed, `${p}/Speed`, "Speed", DISK_SPEEDS);
    oneOf(disk.file_system_type, `${p}/FileSystemType`, "FileSystemType", FILE_SYSTEM_TYPES);
    lookup(disk.io_profile, `${p}/IOProfile`, "DiskIOProfile", "IOProfile");
    length(disk.name, `${p}/Name`, "Name", VALUE_RANGES.nameLength);
    if (disk.name !== undefined) {
      if (diskNames.has(disk.name))
        report(`${p}/Name`, "duplicate_element", `two disks are named "${disk.name}"`);
      diskNames.add(disk.name);
    }
    backupPolicies(disk.backup_policies, `${p}/BackupPolicies`);
  });

  // Shared disks
  const shared = new Set<string>();
  spec.shared_disks?.forEach((disk, i) => {
    const p = `${root}/SharedDisks/Disk[${i + 1}]`;
    lookup(disk, p, "SharedDisk", "Disk");
    const key = JSON.stringify(disk);
    if (shared.has(key)) report(p, "duplicate_element", "the same shared disk is attached twice");
    shared.add(key);
  });

  // Network interfaces
  spec.network_interfaces?.forEach((nic, i) => {
    const p = `${root}/NetworkInterfaces/NetworkInterface[${i + 1}]`;
    lookup(nic.network, `${p}/Network`, "Network", "Network");
    lookup(nic.virtual_network, `${p}/VirtualNetwork`, "VirtualNetwork", "VirtualNetwork");
    lookup(nic.speed_profile, `${p}/SpeedProfile`, "NetworkSpeedProfile", "SpeedProfile");
    if (nic.network && nic.virtual_network) {
      report(p, "conflicting_elements", "an interface is on a Network or a VirtualNetwork, not both");
    }
    if (nic.virtual_network && nic.ip_address_allocations) {
      report(p, "conflicting_elements", "IP addresses are allocated on a Network, not on a VirtualNetwork");
    }
    nic.ip_address_allocations?.forEach((allocation, j) => {
      const a = `${p}/IPAddressAllocation[${j + 1}]`;
      if (allocation.type === undefined) {
        report(a, "missing_attribute", 'an IPAddressAllocation needs type="new" or type="existing"');
        return;
      }
      oneOf(allocation.type, a, "type", ALLOCATION_TYPES);
      if (allocation.type === "new") {
        if (allocation.version === undefined)
          report(a, "missing_element", "a new address needs a Version (4 or 6)");
        else if (!(IP_VERSIONS as readonly number[]).includes(allocation.version)) {
          report(`${a}/Version`, "invalid_value", `Version must be 4 or 6, got ${allocation.version}`);
        }
        if (allocation.ip_address)
          report(`${a}/IPAddress`, "conflicting_elements", "a new address cannot name an IPAddress");
        lookup(allocation.subnet, `${a}/Subnet`, "Subnet", "Subnet");
      } else if (allocation.type === "existing") {
        if (!allocation.ip_address) report(a, "missing_element", "an existing address needs an IPAddress");
        lookup(allocation.ip_address, `${a}/IPAddress`, "IPAddress", "IPAddress");
        if (allocation.version !== undefined) {
          report(`${a}/Version`, "conflicting_elements", "an existing address takes no Version");
        }
        if (allocation.subnet)
          report(`${a}/Subnet`, "conflicting_elements", "an existing address takes no Subnet");
      }
    });
  });

  // Names
  if (spec.hostname !== undefined && !isValidHostname(spec.hostname)) {
    report(
      `${root}/Hostname/Hostname`,
      "invalid_hostname",
      `"${spec.hostname}" is not a valid host name (RFC 1123: letters, digits and inner hyphens, labels of 1-63 characters)`,
    );
  }
  length(spec.name, `${root}/Name`, "Name", VALUE_RANGES.nameLength);
  lookup(spec.group, `${root}/Group`, "Group", "Group");

  // Authorized keys
  const keys = spec.authorized_keys;
  keys?.users?.forEach((user, i) =>
    lookup(user, `${root}/AuthorizedKeys/Users/User[${i + 1}]`, "User", "User"),
  );
  keys?.ssh_keys?.forEach((key, i) => {
    const problem = sshKeyProblem(key);
    if (problem) report(`${root}/AuthorizedKeys/SSHKeys/SSHKey[${i + 1}]`, "invalid_ssh_key", problem);
  });

  backupPolicies(spec.backup_policies, `${root}/BackupPolicies`);

  // Tags
  const tags = new Set<string>();
  spec.tags?.forEach((tag, i) => {
    const p = `${root}/Tags/Tag[${i + 1}]`;
    if (tag.trim() === "") report(p, "invalid_value", "a Tag cannot be empty");
    length(tag, p, "Tag", VALUE_RANGES.tagLength);
    if (tags.has(tag)) report(p, "duplicate_element", `tag "${tag}" is given more than once`);
    tags.add(tag);
  });
  if (spec.iso !== undefined && spec.iso.trim() === "")
    report(`${root}/ISO`, "empty_lookup", "ISO is empty: give an ISO ID");

  return errors;
}

function describeKeys(kind: LookupKind): string {
  const names = LOOKUP_KINDS[kind].map((k) => (k === "id" ? "an ID" : `a ${k.replace("_", " ")}`));
  return names.length === 1 ? names[0]! : `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}`;
}
