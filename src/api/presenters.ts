import { createHash } from "node:crypto";
import { parseCidr } from "../catalog/addresses.js";
import { country, currency, stableId } from "../catalog/reference-data.js";
import type { Row } from "../store/index.js";
import { templateOptionsColumn } from "../catalog/columns.js";

/** Database rows -> the Katapult API's objects. Every field is present; absent values are null. */

const bool = (flag: number) => flag === 1;
/** Objects we do not store (operating systems, package groups) get stable IDs derived from their names. */
export const derivedId = stableId;

export function organizationSummary(org: Row<"organizations">) {
  return {
    id: org.id,
    name: org.name,
    sub_domain: org.sub_domain,
    infrastructure_domain: org.infrastructure_domain,
    created_at: org.created_at,
    activated_at: org.activated_at,
    suspended: org.state === "suspended",
    managed: bool(org.managed),
  };
}

/**
 * An organization's UUID, which Katapult shows beside its ID: derived from the ID (a
 * version 8 UUID of its SHA-256), so it is stable and needs no column.
 */
export function organizationUuid(id: string): string {
  const hex = createHash("sha256").update(`organization:${id}`).digest("hex");
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

export function organization(org: Row<"organizations">) {
  return {
    ...organizationSummary(org),
    uuid: organizationUuid(org.id),
    billing_name: null,
    address1: null,
    address2: null,
    address3: null,
    address4: null,
    postcode: null,
    vat_number: null,
    phone_number: null,
    currency: currency(org.currency_iso_code),
    country: org.country_iso_code ? country(org.country_iso_code) : null,
    country_state: null,
  };
}

export function dataCenter(dc: Row<"data_centers">, options: { country?: boolean } = { country: true }) {
  const base = { id: dc.id, name: dc.name, permalink: dc.permalink };
  return options.country === false
    ? base
    : { ...base, country: country(dc.country_iso_code, dc.country_name) };
}

export function zone(z: Row<"zones">, dc: Row<"data_centers">, options: { country?: boolean } = {}) {
  return {
    id: z.id,
    name: z.name,
    permalink: z.permalink,
    data_center: dataCenter(dc, { country: options.country ?? true }),
  };
}

export function network(n: Row<"networks">, dc: Row<"data_centers">, options: { country?: boolean } = {}) {
  return {
    id: n.id,
    name: n.name,
    permalink: n.permalink,
    default: bool(n.is_default),
    data_center: dataCenter(dc, { country: options.country ?? true }),
  };
}

/** Its data center with the country, except in the list of available networks (schema, observed/11). */
export function virtualNetwork(
  v: Row<"virtual_networks">,
  dc: Row<"data_centers">,
  options: { country?: boolean } = {},
) {
  return { id: v.id, name: v.name, data_center: dataCenter(dc, { country: options.country ?? true }) };
}

export function virtualMachinePackage(p: Row<"packages">) {
  return {
    id: p.id,
    name: p.name,
    permalink: p.permalink,
    cpu_cores: p.cpu_cores,
    ipv4_addresses: p.ipv4_addresses,
    memory_in_gb: p.memory_in_gb,
    storage_in_gb: p.storage_in_gb,
    monthly_bandwidth_allowance_in_gb: p.monthly_bandwidth_allowance_in_gb,
    privacy: p.privacy,
    icon: null,
    use_dedicated_cpus: bool(p.use_dedicated_cpus),
    group: { id: derivedId("vmpkgrp", p.group_name), name: p.group_name },
  };
}

export function operatingSystem(name: string | null) {
  return name ? { id: derivedId("os", name), name, badge: null } : null;
}

export function diskTemplate(t: Row<"disk_templates">, latest: Row<"disk_template_versions"> | undefined) {
  return {
    id: t.id,
    name: t.name,
    description: t.description,
    permalink: t.permalink,
    universal: bool(t.universal),
    size_in_gb: latest?.size_in_gb ?? null,
    latest_version: latest ? { id: latest.id, number: latest.number } : null,
    operating_system: operatingSystem(t.operating_system_name),
  };
}

export function diskTemplateVersion(v: Row<"disk_template_versions">, t: Row<"disk_templates">) {
  return {
    id: v.id,
    number: v.number,
    stable: bool(v.stable),
    size_in_gb: v.size_in_gb,
    disk_template: { id: t.id, name: t.name, permalink: t.permalink },
  };
}

export function diskTemplateVersionSpec(v: Row<"disk_template_versions">) {
  const fields = templateOptionsColumn.decode(v.options_json);
  return {
    fields: fields.map((f) => ({
      name: f.name,
      type: f.type,
      label: f.label,
      description: f.description,
      required: f.required,
      placeholder: f.placeholder,
      prefill: f.prefill,
    })),
  };
}

export function diskIOProfile(p: Row<"disk_io_profiles">) {
  return { id: p.id, name: p.name, permalink: p.permalink, speed_in_mb: p.speed_in_mb, iops: p.iops };
}

export function networkSpeedProfile(p: Row<"network_speed_profiles">) {
  return {
    id: p.id,
    name: p.name,
    upload_speed_in_mbit: p.upload_speed_in_mbit,
    download_speed_in_mbit: p.download_speed_in_mbit,
    permalink: p.permalink,
  };
}

export function reverseDnsFor(address: string, baseDomain: string): string {
  return `${address.replace(/[.:]/g, "-")}.rdns.${baseDomain}`;
}

export function subnet(s: Row<"subnets">) {
  const cidr = parseCidr(s.cidr);
  return {
    id: s.id,
    address: cidr?.network ?? s.cidr,
    gateway: s.gateway,
    mask: cidr?.prefix ?? null,
    billable: false,
    version: s.ip_version,
  };
}

export function ipAddress(
  ip: Row<"ip_addresses">,
  s: Row<"subnets">,
  n: Row<"networks">,
  dc: Row<"data_centers">,
  baseDomain: string,
) {
  const cidr = parseCidr(s.cidr);
  return {
    id: ip.id,
    address: ip.address,
    reverse_dns: ip.reverse_dns ?? reverseDnsFor(ip.address, baseDomain),
    vip: bool(ip.vip),
    label: ip.label,
    address_with_mask: `${ip.address}/${cidr?.prefix ?? (ip.ip_version === 4 ? 32 : 128)}`,
    network: network(n, dc),
    subnet: subnet(s),
    allocation_id: ip.allocation_id,
    allocation_type: ip.allocation_type,
  };
}

export function ipAddressListItem(ip: Row<"ip_addresses">, baseDomain: string) {
  return {
    id: ip.id,
    address: ip.address,
    reverse_dns: ip.reverse_dns ?? reverseDnsFor(ip.address, baseDomain),
    vip: bool(ip.vip),
    allocation_id: ip.allocation_id,
    allocation_type: ip.allocation_type,
  };
}

export function sshKey(k: Row<"ssh_keys">) {
  return { id: k.id, name: k.name, fingerprint: k.fingerprint };
}

export function virtualMachineGroup(g: Row<"virtual_machine_groups">) {
  return {
    id: g.id,
    name: g.name,
    segregate: bool(g.segregate),
    auto_segregate: bool(g.auto_segregate),
    created_at: g.created_at,
  };
}

export function tag(t: Row<"tags">) {
  return { id: t.id, name: t.name, color: t.color, created_at: t.created_at };
}

export function iso(i: Row<"isos">) {
  return { id: i.id, name: i.name, operating_system: operatingSystem(i.operating_system_name) };
}

const DISK_STATES: Record<Row<"disks">["state"], string> = {
  pending: "not_built",
  ready: "built",
  attached: "built",
  deleting: "built",
  deleted: "built",
  failed: "failed",
};

/** Where a disk a VM has stands with the VM's machine (Katapult's VirtualMachineDisk state). */
export function diskAttachmentState(d: Pick<Row<"disks">, "state" | "path">): string {
  if (d.state === "failed") return "failed";
  if (d.state === "attached") return "attached";
  // Assigned standalone disks wait detached; a new VM's own disks are being attached.
  return d.path !== null && d.state === "ready" ? "detached" : "attaching";
}

/** A disk in an organization's list: the schema's shape, with the VM it is attached to. */
export function disk(d: Row<"disks">, vm: { id: string; fqdn: string } | undefined) {
  return {
    id: d.id,
    name: d.name,
    size_in_gb: d.size_in_gb,
    // A stable World Wide Name derived from the ID, as a real array would report one.
    wwn: `0x${createHash("sha256").update(d.id).digest("hex").slice(0, 16)}`,
    state: DISK_STATES[d.state],
    virtual_machine_disk: vm ? { virtual_machine: vm } : null,
  };
}

export function task(
  t: Pick<
    Row<"tasks">,
    "id" | "name" | "status" | "progress" | "error" | "created_at" | "started_at" | "finished_at"
  >,
) {
  return {
    id: t.id,
    name: t.name,
    status: t.status,
    created_at: t.created_at,
    started_at: t.started_at,
    finished_at: t.finished_at,
    progress: t.progress,
    // Beyond the schema: why a failed task failed.
    error: t.error,
  };
}

export function trashObject(t: Row<"trash_objects">) {
  return { id: t.id, keep_until: t.keep_until, object_id: t.object_id, object_type: t.object_type };
}

export function taskSummary(t: Pick<Row<"tasks">, "id" | "name" | "status">) {
  return { id: t.id, name: t.name, status: t.status };
}

export function virtualMachineSummary(vm: Row<"virtual_machines">) {
  return { id: vm.id, name: vm.name, hostname: vm.hostname, fqdn: vm.fqdn, state: vm.state };
}

type PresentedBuild = Pick<Row<"builds">, "id" | "state" | "created_at" | "failure_reason">;

/**
 * What of `build`'s output may change over a build's life (the ID, creation time and
 * spec XML never do): a response rendered with the same fingerprint is still current.
 */
export function buildFingerprint(b: PresentedBuild, vm: Row<"virtual_machines"> | undefined): string {
  // Unambiguous without escaping: the free-text values are length-prefixed or last.
  const reason = b.failure_reason === null ? "-" : `${b.failure_reason.length}:${b.failure_reason}`;
  const shown =
    vm && b.state !== "pending" ? `${vm.id} ${vm.hostname} ${vm.fqdn} ${vm.state} ${vm.name}` : "";
  return `${b.state} ${reason} ${shown}`;
}

export function build(b: PresentedBuild, specXml: string, vm: Row<"virtual_machines"> | undefined) {
  return {
    id: b.id,
    spec_xml: specXml,
    state: b.state,
    // The VM appears once the engine has started building it, as in the recordings.
    virtual_machine: vm && b.state !== "pending" ? virtualMachineSummary(vm) : null,
    created_at: b.created_at,
    // Beyond the schema: why a failed build failed.
    failure_reason: b.failure_reason,
  };
}
