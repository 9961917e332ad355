import {
  LOOKUP_KINDS,
  type AuthorizedKeys,
  type BackupPolicy,
  type DiskTemplateSpec,
  type IPAddressAllocation,
  type Lookup,
  type LookupKey,
  type LookupKind,
  type NetworkInterface,
  type Resources,
  type Schedule,
  type SystemDisk,
  type VirtualMachineSpec,
} from "./model.js";
import { ROOT_PATH, SourceMap, type SpecError, type SpecWarning } from "./problems.js";
import type { XmlElement } from "./xml-tree.js";

/** Reads one child element into the object being built. */
type Field<T> = (reader: XmlSpecReader, target: T, element: XmlElement, path: string) => void;

/** What an element may hold. Built once per kind of element, not per document. */
interface Shape<T> {
  /** Attributes this element may carry; others are reported as unknown. */
  attributes: readonly string[];
  /** Children that may appear once. */
  one: ReadonlyMap<string, Field<T>>;
  /** Children that may repeat; their paths carry a 1-based index. */
  many: ReadonlyMap<string, Field<T>>;
  /** Whether text directly inside the element means something. */
  textAllowed: boolean;
}

// Maps, not object literals: element names come from the document, and a name such as
// "__proto__" or "valueOf" must find nothing rather than Object.prototype's members.
function shape<T>(fields: {
  attributes?: readonly string[];
  one?: Record<string, Field<T>>;
  many?: Record<string, Field<T>>;
  textAllowed?: boolean;
}): Shape<T> {
  return {
    attributes: fields.attributes ?? NO_ATTRIBUTES,
    one: new Map(Object.entries(fields.one ?? {})),
    many: new Map(Object.entries(fields.many ?? {})),
    textAllowed: fields.textAllowed ?? false,
  };
}

/** A list element whose children, all of one name, are read by `read`. */
function listShape<T>(
  childName: string,
  read: (reader: XmlSpecReader, element: XmlElement, path: string) => T,
  attributes: readonly string[] = NO_ATTRIBUTES,
): Shape<T[]> {
  return shape<T[]>({ attributes, many: { [childName]: (r, items, e, p) => items.push(read(r, e, p)) } });
}

// The attributes elements may carry, allocated once (an array literal in a call is a new array each time).
const NO_ATTRIBUTES: readonly string[] = [];
const BY: readonly string[] = ["by"];
const KEY: readonly string[] = ["key"];
const TYPE: readonly string[] = ["type"];

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * Reads an element tree into the spec model. Unknown elements and attributes are
 * ignored with a warning (as the go-katapult reader ignores them); form errors
 * (bad integers, unsupported `by=`) and duplicated singular elements are errors.
 */
export class XmlSpecReader {
  readonly errors: SpecError[] = [];
  readonly warnings: SpecWarning[] = [];
  readonly sources = new SourceMap();

  spec(element: XmlElement, path = ROOT_PATH): VirtualMachineSpec {
    return this.walk(element, path, SPEC, {});
  }

  resources(element: XmlElement, path: string): Resources {
    return this.walk(element, path, RESOURCES, {});
  }

  diskTemplate(element: XmlElement, path: string): DiskTemplateSpec {
    return this.walk(element, path, DISK_TEMPLATE, {});
  }

  systemDisk(element: XmlElement, path: string): SystemDisk {
    return this.walk(element, path, SYSTEM_DISK, {});
  }

  networkInterface(element: XmlElement, path: string): NetworkInterface {
    return this.walk(element, path, NETWORK_INTERFACE, {});
  }

  allocation(element: XmlElement, path: string): IPAddressAllocation {
    const allocation: IPAddressAllocation = {};
    set(allocation, "type", element.attributes.type ?? "");
    return this.walk(element, path, ALLOCATION, allocation);
  }

  hostname(element: XmlElement, path: string): string {
    const nested = this.walk(element, path, HOSTNAME, { value: undefined }).value;
    // The flat form <Hostname>web-1</Hostname> is accepted too (go-katapult would ignore it).
    return nested ?? element.text.trim();
  }

  name(element: XmlElement, path: string): string {
    return this.walk(element, path, NAME, { value: undefined }).value ?? element.text;
  }

  authorizedKeys(element: XmlElement, path: string): AuthorizedKeys {
    const keys: AuthorizedKeys = {};
    const management = element.attributes.continuous_management;
    if (management !== undefined && management !== "yes" && management !== "no") {
      this.error(
        element,
        path,
        "invalid_value",
        `continuous_management must be "yes" or "no", got "${management}"`,
      );
    }
    if (management === "yes") keys.continuous_management = true;
    return this.walk(element, path, AUTHORIZED_KEYS, keys);
  }

  backupPolicies(element: XmlElement, path: string): BackupPolicy[] {
    return this.walk(element, path, BACKUP_POLICIES, []);
  }

  backupPolicy(element: XmlElement, path: string): BackupPolicy {
    return this.walk(element, path, BACKUP_POLICY, {});
  }

  schedule(element: XmlElement, path: string): Schedule {
    return this.walk(element, path, SCHEDULE, {});
  }

  lookup(element: XmlElement, path: string, kind: LookupKind): Lookup {
    this.checkAttributes(element, path, BY);
    const value = this.text(element, path, false);
    const by = element.attributes.by ?? "";
    // by="id" is accepted as a synonym of no attribute (harmless leniency; never written).
    const key = by === "" || by === "id" ? "id" : by;
    if (!(LOOKUP_KINDS[kind] as readonly string[]).includes(key)) {
      this.error(element, path, "unsupported_lookup", `${kind} by="${by}" is not supported`);
      return {};
    }
    return value === "" ? {} : LOOKUP_OF[key as LookupKey](value);
  }

  text(element: XmlElement, path: string, checkAttributes = true): string {
    this.sources.set(path, element);
    if (checkAttributes) this.checkAttributes(element, path, NO_ATTRIBUTES);
    for (const child of element.children) this.unknown(child, `${path}/${child.name}`);
    return element.text;
  }

  integer(element: XmlElement, path: string, checkAttributes = true): number {
    const raw = this.text(element, path, checkAttributes);
    const trimmed = raw.trim();
    if (trimmed === "") return 0;
    if (!/^[+-]?[0-9]+$/.test(trimmed)) {
      this.error(element, path, "invalid_integer", `<${element.name}> must be an integer, got "${raw}"`);
      return 0;
    }
    // Up to 15 digits is within a double's exact range, and well within int64 ("-0" is 0).
    if (trimmed.length <= 15) return Number(trimmed) + 0;
    const value = BigInt(trimmed);
    if (value < INT64_MIN || value > INT64_MAX) {
      this.error(element, path, "integer_out_of_range", `<${element.name}> is out of range: "${trimmed}"`);
      return 0;
    }
    return Number(value);
  }

  /** Reads a list element: its children's values, in order. */
  list<T>(element: XmlElement, path: string, shape: Shape<T[]>): T[] {
    return this.walk(element, path, shape, []);
  }

  /** Reads an element of the given shape into `target`, reporting what does not fit. */
  private walk<T>(element: XmlElement, path: string, shape: Shape<T>, target: T): T {
    this.sources.set(path, element);
    this.checkAttributes(element, path, shape.attributes);
    if (!shape.textAllowed && element.hasText) {
      this.warnings.push({
        ...position(element),
        path,
        code: "unexpected_text",
        message: `text directly inside <${element.name}> is ignored`,
      });
    }
    // An element has few children: small arrays scanned in place beat a Map per element.
    // Both stay as short as the shape's list of names.
    let seen: XmlElement[] | undefined;
    let counts: { name: string; count: number }[] | undefined;
    for (const child of element.children) {
      const name = child.name;
      const single = shape.one.get(name);
      if (single) {
        const childPath = `${path}/${name}`;
        const first = seen && findByName(seen, name);
        if (first) {
          this.error(
            child,
            childPath,
            "duplicate_element",
            `<${name}> may appear only once here (first given at ${first.line}:${first.column})`,
          );
          continue;
        }
        (seen ??= []).push(child);
        single(this, target, child, childPath);
        continue;
      }
      const repeated = shape.many.get(name);
      if (repeated) {
        let counted = counts && findByName(counts, name);
        if (!counted) (counts ??= []).push((counted = { name, count: 0 }));
        repeated(this, target, child, `${path}/${name}[${++counted.count}]`);
        continue;
      }
      this.unknown(child, `${path}/${name}`);
    }
    return target;
  }

  checkAttributes(element: XmlElement, path: string, known: readonly string[]): void {
    for (const name of element.attributeNames) {
      if (known.includes(name) || name.startsWith("xmlns")) continue;
      this.warnings.push({
        ...position(element),
        path,
        code: "unknown_attribute",
        message: `attribute ${name} of <${element.name}> is not part of the spec format and is ignored`,
      });
    }
  }

  private unknown(element: XmlElement, path: string): void {
    this.warnings.push({
      ...position(element),
      path,
      code: "unknown_element",
      message: `<${element.name}> is not part of the spec format here and is ignored`,
    });
  }

  error(element: XmlElement, path: string, code: SpecError["code"], message: string): void {
    this.errors.push({ ...position(element), path, code, message });
  }
}

/** One literal per key: an object literal with a computed key takes V8's slow path, and reads of it after. */
const LOOKUP_OF: Record<LookupKey, (value: string) => Lookup> = {
  id: (id) => ({ id }),
  name: (name) => ({ name }),
  permalink: (permalink) => ({ permalink }),
  address: (address) => ({ address }),
  email_address: (email_address) => ({ email_address }),
};

function findByName<T extends { name: string }>(items: readonly T[], name: string): T | undefined {
  for (const item of items) if (item.name === name) return item;
  return undefined;
}

function position(element: XmlElement): { line: number; column: number } {
  return { line: element.line, column: element.column };
}

/** Assigns only non-zero values: zero, "" and [] mean "not given" in the model. */
function set<T extends object, K extends keyof T>(target: T, key: K, value: T[K] | 0 | "" | unknown[]): void {
  if (value === 0 || value === "" || value === undefined || (Array.isArray(value) && value.length === 0))
    return;
  target[key] = value as T[K];
}

const BACKUP_POLICIES = listShape("BackupPolicy", (r, e, p) => r.backupPolicy(e, p));

const SPEC = shape<VirtualMachineSpec>({
  one: {
    Zone: (r, spec, e, p) => (spec.zone = r.lookup(e, p, "Zone")),
    DataCenter: (r, spec, e, p) => (spec.data_center = r.lookup(e, p, "DataCenter")),
    Resources: (r, spec, e, p) => (spec.resources = r.resources(e, p)),
    DiskTemplate: (r, spec, e, p) => (spec.disk_template = r.diskTemplate(e, p)),
    SystemDisks: (r, spec, e, p) => set(spec, "system_disks", r.list(e, p, SYSTEM_DISKS)),
    SharedDisks: (r, spec, e, p) => set(spec, "shared_disks", r.list(e, p, SHARED_DISKS)),
    NetworkInterfaces: (r, spec, e, p) => set(spec, "network_interfaces", r.list(e, p, NETWORK_INTERFACES)),
    Hostname: (r, spec, e, p) => set(spec, "hostname", r.hostname(e, p)),
    Name: (r, spec, e, p) => set(spec, "name", r.name(e, p)),
    Description: (r, spec, e, p) => set(spec, "description", r.text(e, p)),
    Group: (r, spec, e, p) => (spec.group = r.lookup(e, p, "Group")),
    AuthorizedKeys: (r, spec, e, p) => (spec.authorized_keys = r.authorizedKeys(e, p)),
    BackupPolicies: (r, spec, e, p) => set(spec, "backup_policies", r.backupPolicies(e, p)),
    Tags: (r, spec, e, p) => set(spec, "tags", r.list(e, p, TAGS)),
    ISO: (r, spec, e, p) => set(spec, "iso", r.text(e, p)),
  },
});

const RESOURCES = shape<Resources>({
  one: {
    Package: (r, resources, e, p) => (resources.package = r.lookup(e, p, "Package")),
    Memory: (r, resources, e, p) => set(resources, "memory", r.integer(e, p)),
    CPUCores: (r, resources, e, p) => set(resources, "cpu_cores", r.integer(e, p)),
  },
});

const DISK_TEMPLATE = shape<DiskTemplateSpec>({
  one: {
    DiskTemplate: (r, template, e, p) => Object.assign(template, r.lookup(e, p, "DiskTemplate")),
    Version: (r, template, e, p) => {
      // go-katapult writes by="number" and ignores `by` when reading.
      r.checkAttributes(e, p, BY);
      set(template, "version", r.integer(e, p, false));
    },
  },
  many: {
    Option: (r, template, e, p) => {
      r.checkAttributes(e, p, KEY);
      (template.options ??= []).push({ key: e.attributes.key ?? "", value: r.text(e, p, false) });
    },
  },
});

const SYSTEM_DISK = shape<SystemDisk>({
  one: {
    Name: (r, disk, e, p) => set(disk, "name", r.text(e, p)),
    Size: (r, disk, e, p) => set(disk, "size", r.integer(e, p)),
    Speed: (r, disk, e, p) => set(disk, "speed", r.text(e, p)),
    IOProfile: (r, disk, e, p) => (disk.io_profile = r.lookup(e, p, "DiskIOProfile")),
    FileSystemType: (r, disk, e, p) => set(disk, "file_system_type", r.text(e, p)),
    BackupPolicies: (r, disk, e, p) => set(disk, "backup_policies", r.backupPolicies(e, p)),
  },
});
const SYSTEM_DISKS = listShape("Disk", (r, e, p) => r.systemDisk(e, p));
const SHARED_DISKS = listShape("Disk", (r, e, p) => r.lookup(e, p, "SharedDisk"));

const NETWORK_INTERFACE = shape<NetworkInterface>({
  one: {
    Network: (r, nic, e, p) => (nic.network = r.lookup(e, p, "Network")),
    // Not a lookup: the text is always an ID and `by` is ignored.
    VirtualNetwork: (r, nic, e, p) => {
      const id = r.text(e, p, false);
      nic.virtual_network = id === "" ? {} : { id };
    },
    SpeedProfile: (r, nic, e, p) => (nic.speed_profile = r.lookup(e, p, "NetworkSpeedProfile")),
  },
  many: {
    IPAddressAllocation: (r, nic, e, p) => (nic.ip_address_allocations ??= []).push(r.allocation(e, p)),
  },
});
const NETWORK_INTERFACES = listShape("NetworkInterface", (r, e, p) => r.networkInterface(e, p));

const ALLOCATION = shape<IPAddressAllocation>({
  attributes: TYPE,
  one: {
    IPAddress: (r, allocation, e, p) => (allocation.ip_address = r.lookup(e, p, "IPAddress")),
    Version: (r, allocation, e, p) => set(allocation, "version", r.integer(e, p)),
    Subnet: (r, allocation, e, p) => (allocation.subnet = r.lookup(e, p, "Subnet")),
  },
});

/** The nested form of <Hostname> and <Name>, whose text is the value. */
interface Nested {
  value: string | undefined;
}

const HOSTNAME = shape<Nested>({
  textAllowed: true,
  one: {
    Hostname: (r, nested, e, p) => {
      r.checkAttributes(e, p, TYPE);
      nested.value = r.text(e, p, false);
      if (e.attributes.type === "random" && nested.value.trim() !== "") {
        r.error(e, p, "conflicting_elements", 'a hostname of type="random" must be empty');
      }
    },
  },
});

const NAME = shape<Nested>({
  textAllowed: true,
  one: { Name: (r, nested, e, p) => (nested.value = r.text(e, p, false)) },
});

const USERS = listShape("User", (r, e, p) => r.lookup(e, p, "User"), ["all"]);
const SSH_KEYS = listShape("SSHKey", (r, e, p) => r.text(e, p), ["all"]);

const AUTHORIZED_KEYS = shape<AuthorizedKeys>({
  attributes: ["continuous_management"],
  one: {
    Users: (r, keys, e, p) => {
      if (e.attributes.all === "yes") keys.all_users = true;
      set(keys, "users", r.list(e, p, USERS));
    },
    SSHKeys: (r, keys, e, p) => {
      if (e.attributes.all === "yes") keys.all_ssh_keys = true;
      set(keys, "ssh_keys", r.list(e, p, SSH_KEYS));
    },
  },
});

const BACKUP_POLICY = shape<BackupPolicy>({
  one: {
    Retention: (r, policy, e, p) => set(policy, "retention", r.integer(e, p)),
    Schedule: (r, policy, e, p) => (policy.schedule = r.schedule(e, p)),
  },
});

const SCHEDULE = shape<Schedule>({
  one: {
    Interval: (r, schedule, e, p) => set(schedule, "interval", r.text(e, p)),
    Frequency: (r, schedule, e, p) => set(schedule, "frequency", r.integer(e, p)),
    Time: (r, schedule, e, p) => set(schedule, "time", r.integer(e, p)),
  },
});

const TAGS = listShape("Tag", (r, e, p) => r.text(e, p));
