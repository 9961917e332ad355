import { parse as parseYaml } from "yaml";
import {
  addressKey,
  bigIntToAddress,
  inCidr,
  keyToBigInt,
  parseCidr,
  versionOf,
  type IpVersion,
} from "./addresses.js";
import { DRIVER_NAMES, isDriverName } from "../hosts/driver-names.js";
import { isKnownCountry } from "./reference-data.js";

/**
 * The declarative catalog file (`trebuchet admin catalog apply FILE`): what exists
 * in this cloud. YAML or JSON; every object is keyed by its permalink (or name), so
 * applying the same file again changes nothing.
 */
export interface CatalogFile {
  data_centers: {
    permalink: string;
    name: string;
    country: string;
    zones: { permalink: string; name: string }[];
  }[];
  hosts: {
    name: string;
    zone: string;
    driver: string;
    cpu_cores: number;
    memory_in_gb: number;
    disk_in_gb: number;
    namespace: string | null;
  }[];
  packages: {
    permalink: string;
    name: string;
    cpu_cores: number;
    memory_in_gb: number;
    storage_in_gb: number;
    ipv4_addresses: number;
    monthly_bandwidth_allowance_in_gb: number | null;
    group: string;
    use_dedicated_cpus: boolean;
    organization: string | null;
  }[];
  disk_io_profiles: { permalink: string; name: string; speed_in_mb: number | null; iops: number | null }[];
  network_speed_profiles: {
    permalink: string;
    name: string;
    upload_speed_in_mbit: number | null;
    download_speed_in_mbit: number | null;
  }[];
  disk_templates: {
    permalink: string;
    name: string;
    description: string | null;
    operating_system: string | null;
    organization: string | null;
    versions: {
      number: number;
      stable: boolean;
      kind: "cloud" | "kernel";
      size_in_gb: number;
      image: string;
      kernel: string | null;
      initrd: string | null;
      options: TemplateOptionField[];
    }[];
  }[];
  networks: {
    permalink: string;
    name: string;
    data_center: string;
    default: boolean;
    dns_servers: string[];
    subnets: {
      cidr: string;
      gateway: string | null;
      range_start: string;
      range_end: string;
      version: IpVersion;
    }[];
  }[];
  virtual_networks: { name: string; organization: string; data_center: string }[];
  isos: { name: string; path: string; operating_system: string | null; organization: string | null }[];
}

/** A field of a template version's spec (`GET /disk_template_versions/_/spec`). */
export interface TemplateOptionField {
  name: string;
  type: "Text" | "Boolean" | "Password" | "Keyboard";
  label: string;
  description: string | null;
  required: boolean;
  placeholder: string | null;
  prefill: string | null;
  /** A regular expression the value must match (Text/Password), for our own validation. */
  pattern: string | null;
}

type Raw = Record<string, unknown>;

class Reader {
  readonly problems: string[] = [];

  list(value: unknown, path: string): Raw[] {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) return (this.fail(path, "must be a list"), []);
    return value.filter((item, i) => {
      if (item && typeof item === "object" && !Array.isArray(item)) return true;
      this.fail(`${path}[${i}]`, "must be a mapping");
      return false;
    }) as Raw[];
  }

  string(
    raw: Raw,
    key: string,
    path: string,
    options: { optional?: boolean; pattern?: RegExp } = {},
  ): string {
    const value = raw[key];
    if (value === undefined || value === null) {
      if (!options.optional) this.fail(`${path}.${key}`, "is required");
      return "";
    }
    if (typeof value !== "string" || value.trim() === "")
      return (this.fail(`${path}.${key}`, "must be a non-empty string"), "");
    if (options.pattern && !options.pattern.test(value)) {
      return (this.fail(`${path}.${key}`, `must match ${options.pattern}`), "");
    }
    return value;
  }

  optionalString(raw: Raw, key: string, path: string): string | null {
    return raw[key] === undefined || raw[key] === null ? null : this.string(raw, key, path);
  }

  integer(
    raw: Raw,
    key: string,
    path: string,
    options: { min?: number; optional?: boolean; fallback?: number } = {},
  ): number {
    const value = raw[key];
    if (value === undefined || value === null) {
      if (options.fallback !== undefined) return options.fallback;
      if (!options.optional) this.fail(`${path}.${key}`, "is required");
      return 0;
    }
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < (options.min ?? 0)) {
      return (this.fail(`${path}.${key}`, `must be an integer of at least ${options.min ?? 0}`), 0);
    }
    return value;
  }

  optionalInteger(raw: Raw, key: string, path: string): number | null {
    return raw[key] === undefined || raw[key] === null ? null : this.integer(raw, key, path, { min: 1 });
  }

  boolean(raw: Raw, key: string, path: string, fallback: boolean): boolean {
    const value = raw[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== "boolean") return (this.fail(`${path}.${key}`, "must be true or false"), fallback);
    return value;
  }

  known(raw: Raw, keys: string[], path: string): void {
    for (const key of Object.keys(raw))
      if (!keys.includes(key)) this.fail(`${path}.${key}`, "is not a known key");
  }

  fail(path: string, message: string): void {
    this.problems.push(`${path} ${message}`);
  }
}

const PERMALINK = /^[a-z0-9][a-z0-9._/-]{0,127}$/;

/** Reads and checks a catalog file; every problem is reported, with its path in the file. */
export function readCatalogFile(text: string): { catalog: CatalogFile } | { problems: string[] } {
  let document: unknown;
  try {
    document = parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 });
  } catch (error) {
    return { problems: [`the file is not valid YAML or JSON: ${(error as Error).message.split("\n")[0]}`] };
  }
  if (!document || typeof document !== "object" || Array.isArray(document)) {
    return { problems: ["the file must hold a mapping of sections (data_centers, networks, ...)"] };
  }
  const r = new Reader();
  const root = document as Raw;
  r.known(
    root,
    [
      "data_centers",
      "hosts",
      "packages",
      "disk_io_profiles",
      "network_speed_profiles",
      "disk_templates",
      "networks",
      "virtual_networks",
      "isos",
    ],
    "catalog",
  );

  const catalog: CatalogFile = {
    data_centers: r.list(root.data_centers, "data_centers").map((dc, i) => {
      const p = `data_centers[${i}]`;
      r.known(dc, ["permalink", "name", "country", "zones"], p);
      const country = r.string(dc, "country", p, { optional: true }) || "GB";
      if (!isKnownCountry(country)) r.fail(`${p}.country`, `must be an ISO 3166 code this server knows`);
      return {
        permalink: r.string(dc, "permalink", p, { pattern: PERMALINK }),
        name: r.string(dc, "name", p),
        country,
        zones: r.list(dc.zones, `${p}.zones`).map((z, j) => {
          r.known(z, ["permalink", "name"], `${p}.zones[${j}]`);
          return {
            permalink: r.string(z, "permalink", `${p}.zones[${j}]`, { pattern: PERMALINK }),
            name: r.string(z, "name", `${p}.zones[${j}]`),
          };
        }),
      };
    }),
    hosts: r.list(root.hosts, "hosts").map((h, i) => {
      const p = `hosts[${i}]`;
      r.known(h, ["name", "zone", "driver", "cpu_cores", "memory_in_gb", "disk_in_gb", "namespace"], p);
      return {
        name: r.string(h, "name", p, { pattern: /^[a-z0-9][a-z0-9-]{0,62}$/ }),
        zone: r.string(h, "zone", p),
        driver: hostDriver(r, h, p),
        cpu_cores: r.integer(h, "cpu_cores", p, { min: 1 }),
        memory_in_gb: r.integer(h, "memory_in_gb", p, { min: 1 }),
        disk_in_gb: r.integer(h, "disk_in_gb", p, { min: 1 }),
        namespace: r.optionalString(h, "namespace", p),
      };
    }),
    packages: r.list(root.packages, "packages").map((k, i) => {
      const p = `packages[${i}]`;
      r.known(
        k,
        [
          "permalink",
          "name",
          "cpu_cores",
          "memory_in_gb",
          "storage_in_gb",
          "ipv4_addresses",
          "monthly_bandwidth_allowance_in_gb",
          "group",
          "use_dedicated_cpus",
          "organization",
        ],
        p,
      );
      return {
        permalink: r.string(k, "permalink", p, { pattern: PERMALINK }),
        name: r.string(k, "name", p),
        cpu_cores: r.integer(k, "cpu_cores", p, { min: 1 }),
        memory_in_gb: r.integer(k, "memory_in_gb", p, { min: 1 }),
        storage_in_gb: r.integer(k, "storage_in_gb", p, { min: 1 }),
        ipv4_addresses: r.integer(k, "ipv4_addresses", p, { fallback: 1 }),
        monthly_bandwidth_allowance_in_gb: r.optionalInteger(k, "monthly_bandwidth_allowance_in_gb", p),
        group: r.string(k, "group", p, { optional: true }) || "Standard",
        use_dedicated_cpus: r.boolean(k, "use_dedicated_cpus", p, false),
        organization: r.optionalString(k, "organization", p),
      };
    }),
    disk_io_profiles: r.list(root.disk_io_profiles, "disk_io_profiles").map((d, i) => {
      const p = `disk_io_profiles[${i}]`;
      r.known(d, ["permalink", "name", "speed_in_mb", "iops"], p);
      return {
        permalink: r.string(d, "permalink", p, { pattern: PERMALINK }),
        name: r.string(d, "name", p),
        speed_in_mb: r.optionalInteger(d, "speed_in_mb", p),
        iops: r.optionalInteger(d, "iops", p),
      };
    }),
    network_speed_profiles: r.list(root.network_speed_profiles, "network_speed_profiles").map((s, i) => {
      const p = `network_speed_profiles[${i}]`;
      r.known(s, ["permalink", "name", "upload_speed_in_mbit", "download_speed_in_mbit"], p);
      return {
        permalink: r.string(s, "permalink", p, { pattern: PERMALINK }),
        name: r.string(s, "name", p),
        upload_speed_in_mbit: r.optionalInteger(s, "upload_speed_in_mbit", p),
        download_speed_in_mbit: r.optionalInteger(s, "download_speed_in_mbit", p),
      };
    }),
    disk_templates: r.list(root.disk_templates, "disk_templates").map((t, i) => {
      const p = `disk_templates[${i}]`;
      r.known(t, ["permalink", "name", "description", "operating_system", "organization", "versions"], p);
      return {
        permalink: r.string(t, "permalink", p, { pattern: PERMALINK }),
        name: r.string(t, "name", p),
        description: r.optionalString(t, "description", p),
        operating_system: r.optionalString(t, "operating_system", p),
        organization: r.optionalString(t, "organization", p),
        versions: r.list(t.versions, `${p}.versions`).map((v, j) => {
          const q = `${p}.versions[${j}]`;
          r.known(v, ["number", "stable", "kind", "size_in_gb", "image", "kernel", "initrd", "options"], q);
          const kind = r.string(v, "kind", q, { optional: true }) || "cloud";
          if (kind !== "cloud" && kind !== "kernel") r.fail(`${q}.kind`, "must be cloud or kernel");
          const kernel = r.optionalString(v, "kernel", q);
          if (kind === "kernel" && !kernel) r.fail(`${q}.kernel`, "is required for a kernel template");
          return {
            number: r.integer(v, "number", q, { min: 1 }),
            stable: r.boolean(v, "stable", q, true),
            kind: kind as "cloud" | "kernel",
            size_in_gb: r.integer(v, "size_in_gb", q, { min: 1 }),
            image: r.string(v, "image", q),
            kernel,
            initrd: r.optionalString(v, "initrd", q),
            options: r.list(v.options, `${q}.options`).map((o, k) => {
              const s = `${q}.options[${k}]`;
              r.known(
                o,
                ["name", "type", "label", "description", "required", "placeholder", "prefill", "pattern"],
                s,
              );
              const type = r.string(o, "type", s, { optional: true }) || "Text";
              if (!["Text", "Boolean", "Password", "Keyboard"].includes(type))
                r.fail(`${s}.type`, "must be Text, Boolean, Password or Keyboard");
              const pattern = r.optionalString(o, "pattern", s);
              if (pattern) {
                try {
                  new RegExp(pattern);
                } catch {
                  r.fail(`${s}.pattern`, "is not a valid regular expression");
                }
              }
              const name = r.string(o, "name", s, { pattern: /^[a-z][a-z0-9_]{0,63}$/ });
              return {
                name,
                type: type as TemplateOptionField["type"],
                label: r.string(o, "label", s, { optional: true }) || name,
                description: r.optionalString(o, "description", s),
                required: r.boolean(o, "required", s, false),
                placeholder: r.optionalString(o, "placeholder", s),
                prefill: r.optionalString(o, "prefill", s),
                pattern,
              };
            }),
          };
        }),
      };
    }),
    networks: r.list(root.networks, "networks").map((n, i) => {
      const p = `networks[${i}]`;
      r.known(n, ["permalink", "name", "data_center", "default", "dns_servers", "subnets"], p);
      const dns = Array.isArray(n.dns_servers) ? n.dns_servers : [];
      for (const server of dns)
        if (typeof server !== "string" || !versionOf(server))
          r.fail(`${p}.dns_servers`, "must be IP addresses");
      return {
        permalink: r.string(n, "permalink", p, { pattern: PERMALINK }),
        name: r.string(n, "name", p),
        data_center: r.string(n, "data_center", p),
        default: r.boolean(n, "default", p, false),
        dns_servers: dns as string[],
        subnets: r.list(n.subnets, `${p}.subnets`).map((s, j) => readSubnet(r, s, `${p}.subnets[${j}]`)),
      };
    }),
    virtual_networks: r.list(root.virtual_networks, "virtual_networks").map((v, i) => {
      const p = `virtual_networks[${i}]`;
      r.known(v, ["name", "organization", "data_center"], p);
      return {
        name: r.string(v, "name", p),
        organization: r.string(v, "organization", p),
        data_center: r.string(v, "data_center", p),
      };
    }),
    isos: r.list(root.isos, "isos").map((o, i) => {
      const p = `isos[${i}]`;
      r.known(o, ["name", "path", "operating_system", "organization"], p);
      return {
        name: r.string(o, "name", p),
        path: r.string(o, "path", p),
        operating_system: r.optionalString(o, "operating_system", p),
        organization: r.optionalString(o, "organization", p),
      };
    }),
  };
  return r.problems.length > 0 ? { problems: r.problems } : { catalog };
}

function readSubnet(r: Reader, raw: Raw, path: string): CatalogFile["networks"][number]["subnets"][number] {
  r.known(raw, ["cidr", "gateway", "range"], path);
  const cidrText = r.string(raw, "cidr", path);
  const cidr = parseCidr(cidrText);
  const empty = { cidr: cidrText, gateway: null, range_start: "", range_end: "", version: 4 as IpVersion };
  if (!cidr) return (r.fail(`${path}.cidr`, "is not a CIDR (e.g. 192.0.2.0/24)"), empty);
  const gateway = r.optionalString(raw, "gateway", path);
  const inside = (address: string) => inCidr(address, cidr);
  if (gateway && !inside(gateway)) r.fail(`${path}.gateway`, `must be an address in ${cidrText}`);
  const range = r.string(raw, "range", path, { optional: true });
  let [start, end] = range ? range.split("-").map((s) => s.trim()) : [];
  if (!range) {
    // The whole subnet but its network address, its gateway's neighbourhood and (IPv4) broadcast.
    const offset = 10n;
    const last =
      cidr.version === 4
        ? cidr.last - 1n
        : cidr.first + 0xffffn < cidr.last
          ? cidr.first + 0xffffn
          : cidr.last;
    start = bigIntToAddress(cidr.first + offset, cidr.version);
    end = bigIntToAddress(last, cidr.version);
  }
  if (
    !start ||
    !end ||
    !inside(start) ||
    !inside(end) ||
    keyToBigInt(addressKey(start)) > keyToBigInt(addressKey(end))
  ) {
    r.fail(`${path}.range`, `must read "first-last" with both addresses in ${cidrText}, first <= last`);
    return empty;
  }
  return {
    cidr: `${cidr.network}/${cidr.prefix}`,
    gateway,
    range_start: start,
    range_end: end,
    version: cidr.version,
  };
}

function hostDriver(r: Reader, host: Raw, path: string): string {
  const driver = r.string(host, "driver", path, { optional: true }) || "qemu";
  if (!isDriverName(driver)) r.fail(`${path}.driver`, `must be one of ${DRIVER_NAMES.join(", ")}`);
  return driver;
}
