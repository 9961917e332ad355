/**
 * Organization limits (Katapult's "policy limits"): how much of what all tenants share one
 * organization may hold. Pure: the numbers, their defaults, and what a request would pass.
 */

export const LIMIT_NAMES = [
  "virtual_machines",
  "virtual_machine_memory",
  "disk_space",
  "unallocated_ip_addresses",
] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

/** A limit per resource; null = unlimited. */
export type OrganizationLimits = Record<LimitName, number | null>;

/** What an organization holds, or what a request would add, per resource. */
export type Usage = Record<LimitName, number>;

/** The unit each limit is counted in, as Katapult's `PolicyLimit.unit` names it. */
export const LIMIT_UNITS: Record<LimitName, string | null> = {
  virtual_machines: null,
  virtual_machine_memory: "GB",
  disk_space: "GB",
  unallocated_ip_addresses: null,
};

/** What each limit counts, for people (error messages, the CLI). */
export const LIMIT_DESCRIPTIONS: Record<LimitName, string> = {
  virtual_machines: "virtual machines",
  virtual_machine_memory: "GB of virtual machine memory",
  disk_space: "GB of disk space",
  unallocated_ip_addresses: "unallocated IP addresses",
};

/**
 * Limits of an organization nobody set any for: enough for a team's real work, small
 * enough that one organization cannot take a host's worth of memory or a network's pool
 * by itself. Operators change them in the configuration, or per organization.
 */
export const DEFAULT_ORGANIZATION_LIMITS: OrganizationLimits = {
  virtual_machines: 50,
  virtual_machine_memory: 256,
  disk_space: 4_000,
  unallocated_ip_addresses: 16,
};

export const NO_LIMITS: OrganizationLimits = {
  virtual_machines: null,
  virtual_machine_memory: null,
  disk_space: null,
  unallocated_ip_addresses: null,
};

export interface LimitBreach {
  limit: LimitName;
  /** The organization's limit. */
  maximum: number;
  /** What it holds now. */
  current: number;
  /** What the request adds. */
  requested: number;
  unit: string | null;
}

/** Every limit the request would take the organization past (only what it adds is checked). */
export function limitBreaches(
  limits: OrganizationLimits,
  current: Usage,
  requested: Partial<Usage>,
): LimitBreach[] {
  const breaches: LimitBreach[] = [];
  for (const name of LIMIT_NAMES) {
    const adds = requested[name] ?? 0;
    const maximum = limits[name];
    if (adds <= 0 || maximum === null) continue;
    if (current[name] + adds > maximum)
      breaches.push({
        limit: name,
        maximum,
        current: current[name],
        requested: adds,
        unit: LIMIT_UNITS[name],
      });
  }
  return breaches;
}

/** One breach in words: "virtual_machine_memory: 8 GB requested, 250 of 256 GB in use". */
export function describeBreach(breach: LimitBreach): string {
  const unit = breach.unit ? ` ${breach.unit}` : "";
  return (
    `${breach.limit}: ${breach.requested}${unit} requested, ` +
    `${breach.current} of ${breach.maximum}${unit} in use (limit of ${LIMIT_DESCRIPTIONS[breach.limit]})`
  );
}

/**
 * Reads limits written as `virtual_machines=50,disk_space=unlimited` (the configuration's
 * and the CLI's form). Names not given keep `base`'s values. Throws with what is wrong.
 */
export function parseLimits(text: string, base: OrganizationLimits): OrganizationLimits {
  const limits = { ...base };
  for (const part of text.split(",")) {
    const item = part.trim();
    if (item === "") continue;
    const [name, value, ...rest] = item.split("=").map((s) => s.trim());
    if (!isLimitName(name ?? "") || value === undefined || rest.length > 0)
      throw new Error(
        `"${item}" is not a limit: write name=value, where name is one of ${LIMIT_NAMES.join(", ")}`,
      );
    limits[name as LimitName] = parseLimitValue(value);
  }
  return limits;
}

/** A limit's value: a whole number from 0, or `unlimited`. */
export function parseLimitValue(value: string): number | null {
  if (value === "unlimited") return null;
  if (!/^\d{1,9}$/.test(value))
    throw new Error(`"${value}" is not a limit: give a whole number or unlimited`);
  return Number(value);
}

export function isLimitName(name: string): name is LimitName {
  return (LIMIT_NAMES as readonly string[]).includes(name);
}
