import {
  LOOKUP_KINDS,
  type AuthorizedKeys,
  type BackupPolicy,
  type DiskTemplateSpec,
  type IPAddressAllocation,
  type Lookup,
  type LookupKind,
  type NetworkInterface,
  type Resources,
  type Schedule,
  type SystemDisk,
  type VirtualMachineSpec,
} from "./model.js";
import { ROOT_PATH, SourceMap, type SpecError, type SpecWarning } from "./problems.js";
import type { XmlElement } from "./xml-tree.js";

type Handler = (element: XmlElement, path: string) => void;

interface Shape {
  /** Attributes this element may carry; others are reported as unknown. */
  attributes?: readonly string[];
  /** Children that may appear once. */
  one?: Record<string, Handler>;
  /** Children that may repeat; their paths carry a 1-based index. */
  many?: Record<string, Handler>;
}

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
    const spec: VirtualMachineSpec = {};
    this.walk(element, path, {
      one: {
        Zone: (e, p) => (spec.zone = this.lookup(e, p, "Zone")),
        DataCenter: (e, p) => (spec.data_center = this.lookup(e, p, "DataCenter")),
        Resources: (e, p) => (spec.resources = this.resources(e, p)),
        DiskTemplate: (e, p) => (spec.disk_template = this.diskTemplate(e, p)),
        SystemDisks: (e, p) =>
          set(
            spec,
            "system_disks",
            this.list(e, p, "Disk", (d, dp) => this.systemDisk(d, dp)),
          ),
        SharedDisks: (e, p) =>
          set(
            spec,
            "shared_disks",
            this.list(e, p, "Disk", (d, dp) => this.lookup(d, dp, "SharedDisk")),
          ),
        NetworkInterfaces: (e, p) =>
          set(
            spec,
            "network_interfaces",
            this.list(e, p, "NetworkInterface", (n, np) => this.networkInterface(n, np)),
          ),
        Hostname: (e, p) => set(spec, "hostname", this.hostname(e, p)),
        Name: (e, p) => set(spec, "name", this.name(e, p)),
        Description: (e, p) => set(spec, "description", this.text(e, p)),
        Group: (e, p) => (spec.group = this.lookup(e, p, "Group")),
        AuthorizedKeys: (e, p) => (spec.authorized_keys = this.authorizedKeys(e, p)),
        BackupPolicies: (e, p) => set(spec, "backup_policies", this.backupPolicies(e, p)),
        Tags: (e, p) =>
          set(
            spec,
            "tags",
            this.list(e, p, "Tag", (t, tp) => this.text(t, tp)),
          ),
        ISO: (e, p) => set(spec, "iso", this.text(e, p)),
      },
    });
    return spec;
  }

  resources(element: XmlElement, path: string): Resources {
    const resources: Resources = {};
    this.walk(element, path, {
      one: {
        Package: (e, p) => (resources.package = this.lookup(e, p, "Package")),
        Memory: (e, p) => set(resources, "memory", this.integer(e, p)),
        CPUCores: (e, p) => set(resources, "cpu_cores", this.integer(e, p)),
      },
    });
    return resources;
  }

  diskTemplate(element: XmlElement, path: string): DiskTemplateSpec {
    const template: DiskTemplateSpec = {};
    const options: { key: string; value: string }[] = [];
    this.walk(element, path, {
      one: {
        DiskTemplate: (e, p) => Object.assign(template, this.lookup(e, p, "DiskTemplate")),
        Version: (e, p) => {
          // go-katapult writes by="number" and ignores `by` when reading.
          this.checkAttributes(e, p, ["by"]);
          set(template, "version", this.integer(e, p, false));
        },
      },
      many: {
        Option: (e, p) => {
          this.checkAttributes(e, p, ["key"]);
          options.push({ key: e.attributes.key ?? "", value: this.text(e, p, false) });
        },
      },
    });
    if (options.length > 0) template.options = options;
    return template;
  }

  systemDisk(element: XmlElement, path: string): SystemDisk {
    const disk: SystemDisk = {};
    this.walk(element, path, {
      one: {
        Name: (e, p) => set(disk, "name", this.text(e, p)),
        Size: (e, p) => set(disk, "size", this.integer(e, p)),
        Speed: (e, p) => set(disk, "speed", this.text(e, p)),
        IOProfile: (e, p) => (disk.io_profile = this.lookup(e, p, "DiskIOProfile")),
        FileSystemType: (e, p) => set(disk, "file_system_type", this.text(e, p)),
        BackupPolicies: (e, p) => set(disk, "backup_policies", this.backupPolicies(e, p)),
      },
    });
    return disk;
  }

  networkInterface(element: XmlElement, path: string): NetworkInterface {
    const nic: NetworkInterface = {};
    const allocations: IPAddressAllocation[] = [];
    this.walk(element, path, {
      one: {
        Network: (e, p) => (nic.network = this.lookup(e, p, "Network")),
        // Not a lookup: the text is always an ID and `by` is ignored.
        VirtualNetwork: (e, p) => {
          const id = this.text(e, p, false);
          nic.virtual_network = id === "" ? {} : { id };
        },
        SpeedProfile: (e, p) => (nic.speed_profile = this.lookup(e, p, "NetworkSpeedProfile")),
      },
      many: { IPAddressAllocation: (e, p) => allocations.push(this.allocation(e, p)) },
    });
    if (allocations.length > 0) nic.ip_address_allocations = allocations;
    return nic;
  }

  allocation(element: XmlElement, path: string): IPAddressAllocation {
    const allocation: IPAddressAllocation = {};
    set(allocation, "type", element.attributes.type ?? "");
    this.walk(element, path, {
      attributes: ["type"],
      one: {
        IPAddress: (e, p) => (allocation.ip_address = this.lookup(e, p, "IPAddress")),
        Version: (e, p) => set(allocation, "version", this.integer(e, p)),
        Subnet: (e, p) => (allocation.subnet = this.lookup(e, p, "Subnet")),
      },
    });
    return allocation;
  }

  hostname(element: XmlElement, path: string): string {
    let value: string | undefined;
    this.walk(
      element,
      path,
      {
        one: {
          Hostname: (e, p) => {
            this.checkAttributes(e, p, ["type"]);
            value = this.text(e, p, false);
            if (e.attributes.type === "random" && value.trim() !== "") {
              this.error(e, p, "conflicting_elements", 'a hostname of type="random" must be empty');
            }
          },
        },
      },
      true,
    );
    // The flat form <Hostname>web-1</Hostname> is accepted too (go-katapult would ignore it).
    return value ?? element.text.trim();
  }

  name(element: XmlElement, path: string): string {
    let nested: string | undefined;
    this.walk(element, path, { one: { Name: (e, p) => (nested = this.text(e, p, false)) } }, true);
    return nested ?? element.text;
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
    this.walk(element, path, {
      attributes: ["continuous_management"],
      one: {
        Users: (e, p) => {
          if (e.attributes.all === "yes") keys.all_users = true;
          set(
            keys,
            "users",
            this.list(e, p, "User", (u, up) => this.lookup(u, up, "User"), ["all"]),
          );
        },
        SSHKeys: (e, p) => {
          if (e.attributes.all === "yes") keys.all_ssh_keys = true;
          set(
            keys,
            "ssh_keys",
            this.list(e, p, "SSHKey", (k, kp) => this.text(k, kp), ["all"]),
          );
        },
      },
    });
    return keys;
  }

  backupPolicies(element: XmlElement, path: string): BackupPolicy[] {
    return this.list(element, path, "BackupPolicy", (e, p) => this.backupPolicy(e, p));
  }

  backupPolicy(element: XmlElement, path: string): BackupPolicy {
    const policy: BackupPolicy = {};
    this.walk(element, path, {
      one: {
        Retention: (e, p) => set(policy, "retention", this.integer(e, p)),
        Schedule: (e, p) => (policy.schedule = this.schedule(e, p)),
      },
    });
    return policy;
  }

  schedule(element: XmlElement, path: string): Schedule {
    const schedule: Schedule = {};
    this.walk(element, path, {
      one: {
        Interval: (e, p) => set(schedule, "interval", this.text(e, p)),
        Frequency: (e, p) => set(schedule, "frequency", this.integer(e, p)),
        Time: (e, p) => set(schedule, "time", this.integer(e, p)),
      },
    });
    return schedule;
  }

  lookup(element: XmlElement, path: string, kind: LookupKind): Lookup {
    this.checkAttributes(element, path, ["by"]);
    const value = this.text(element, path, false);
    const by = element.attributes.by ?? "";
    // by="id" is accepted as a synonym of no attribute (harmless leniency; never written).
    const key = by === "" || by === "id" ? "id" : by;
    if (!(LOOKUP_KINDS[kind] as readonly string[]).includes(key)) {
      this.error(element, path, "unsupported_lookup", `${kind} by="${by}" is not supported`);
      return {};
    }
    return value === "" ? {} : { [key]: value };
  }

  text(element: XmlElement, path: string, checkAttributes = true): string {
    this.sources.set(path, position(element));
    if (checkAttributes) this.checkAttributes(element, path, []);
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
    const value = BigInt(trimmed);
    if (value < INT64_MIN || value > INT64_MAX) {
      this.error(element, path, "integer_out_of_range", `<${element.name}> is out of range: "${trimmed}"`);
      return 0;
    }
    return Number(value);
  }

  private list<T>(
    element: XmlElement,
    path: string,
    childName: string,
    read: (child: XmlElement, childPath: string) => T,
    attributes: readonly string[] = [],
  ): T[] {
    const items: T[] = [];
    this.walk(element, path, { attributes, many: { [childName]: (e, p) => items.push(read(e, p)) } });
    return items;
  }

  private walk(element: XmlElement, path: string, shape: Shape, textAllowed = false): void {
    this.sources.set(path, position(element));
    this.checkAttributes(element, path, shape.attributes ?? []);
    if (!textAllowed && element.text.trim() !== "") {
      this.warnings.push({
        ...position(element),
        path,
        code: "unexpected_text",
        message: `text directly inside <${element.name}> is ignored`,
      });
    }
    const seen = new Map<string, XmlElement>();
    const counts = new Map<string, number>();
    for (const child of element.children) {
      const single = shape.one?.[child.name];
      if (single) {
        const childPath = `${path}/${child.name}`;
        const first = seen.get(child.name);
        if (first) {
          this.error(
            child,
            childPath,
            "duplicate_element",
            `<${child.name}> may appear only once here (first given at ${first.line}:${first.column})`,
          );
          continue;
        }
        seen.set(child.name, child);
        single(child, childPath);
        continue;
      }
      const repeated = shape.many?.[child.name];
      if (repeated) {
        const index = (counts.get(child.name) ?? 0) + 1;
        counts.set(child.name, index);
        repeated(child, `${path}/${child.name}[${index}]`);
        continue;
      }
      this.unknown(child, `${path}/${child.name}`);
    }
  }

  private checkAttributes(element: XmlElement, path: string, known: readonly string[]): void {
    for (const name of Object.keys(element.attributes)) {
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

  private error(element: XmlElement, path: string, code: SpecError["code"], message: string): void {
    this.errors.push({ ...position(element), path, code, message });
  }
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
