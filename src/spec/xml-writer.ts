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

/** A node of the document to write: an element with attributes and either children or text. */
export interface XmlNode {
  name: string;
  attributes?: [string, string][];
  children?: XmlNode[];
  text?: string;
}

/**
 * Two house styles:
 * - `katapult`: byte-compatible with go-katapult's writer (the golden vectors): `<X></X>`
 *   for empty elements, Go's text escaping, compact or indented with a line prefix.
 * - `server`: the normalised copy the Katapult server stores as `spec_xml`:
 *   `<?xml version="1.0"?>`, 2-space indent, self-closing empty elements, trailing newline.
 */
export type XmlStyle =
  { style: "katapult"; indent?: string; prefix?: string; declaration?: boolean } | { style: "server" };

const el = (
  name: string,
  children: (XmlNode | undefined)[] = [],
  attributes?: [string, string][],
): XmlNode => ({
  name,
  children: children.filter((c): c is XmlNode => c !== undefined),
  ...(attributes ? { attributes } : {}),
});
const leaf = (name: string, text: string | number | undefined, attributes?: [string, string][]) =>
  text === undefined || text === "" || text === 0
    ? undefined
    : { name, text: String(text), ...(attributes ? { attributes } : {}) };
const nonEmpty = <T>(items: T[] | undefined): items is T[] => items !== undefined && items.length > 0;

export function lookupNode(name: string, kind: LookupKind, lookup: Lookup | undefined): XmlNode | undefined {
  if (lookup === undefined) return undefined;
  for (const key of LOOKUP_KINDS[kind]) {
    const value = lookup[key];
    if (value !== undefined && value !== "") {
      return { name, text: value, ...(key === "id" ? {} : { attributes: [["by", key]] }) };
    }
  }
  return { name, text: "" };
}

export function resourcesNode(name: string, resources: Resources | undefined): XmlNode | undefined {
  if (!resources) return undefined;
  return el(name, [
    lookupNode("Package", "Package", resources.package),
    leaf("Memory", resources.memory),
    leaf("CPUCores", resources.cpu_cores),
  ]);
}

export function diskTemplateNode(name: string, template: DiskTemplateSpec | undefined): XmlNode | undefined {
  if (!template) return undefined;
  const hasRef = Boolean(template.id || template.permalink);
  return el(name, [
    hasRef
      ? lookupNode("DiskTemplate", "DiskTemplate", { id: template.id, permalink: template.permalink })
      : undefined,
    leaf("Version", template.version, [["by", "number"]]),
    ...(template.options ?? []).map(
      (o) => ({ name: "Option", attributes: [["key", o.key]], text: o.value }) as XmlNode,
    ),
  ]);
}

export function schedule(name: string, value: Schedule | undefined): XmlNode | undefined {
  if (!value) return undefined;
  return el(name, [
    leaf("Interval", value.interval),
    leaf("Frequency", value.frequency),
    leaf("Time", value.time),
  ]);
}

export function backupPolicyNode(name: string, policy: BackupPolicy): XmlNode {
  return el(name, [leaf("Retention", policy.retention), schedule("Schedule", policy.schedule)]);
}

export function backupPoliciesNode(name: string, policies: BackupPolicy[] | undefined): XmlNode | undefined {
  if (!nonEmpty(policies)) return undefined;
  return el(
    name,
    policies.map((p) => backupPolicyNode("BackupPolicy", p)),
  );
}

export function systemDiskNode(name: string, disk: SystemDisk): XmlNode {
  return el(name, [
    leaf("Name", disk.name),
    leaf("Size", disk.size),
    leaf("Speed", disk.speed),
    lookupNode("IOProfile", "DiskIOProfile", disk.io_profile),
    leaf("FileSystemType", disk.file_system_type),
    backupPoliciesNode("BackupPolicies", disk.backup_policies),
  ]);
}

export function allocationNode(name: string, allocation: IPAddressAllocation): XmlNode {
  return el(
    name,
    [
      lookupNode("IPAddress", "IPAddress", allocation.ip_address),
      leaf("Version", allocation.version),
      lookupNode("Subnet", "Subnet", allocation.subnet),
    ],
    allocation.type ? [["type", allocation.type]] : undefined,
  );
}

export function networkInterfaceNode(name: string, nic: NetworkInterface): XmlNode {
  return el(name, [
    lookupNode("Network", "Network", nic.network),
    lookupNode("VirtualNetwork", "VirtualNetwork", nic.virtual_network),
    lookupNode("SpeedProfile", "NetworkSpeedProfile", nic.speed_profile),
    ...(nic.ip_address_allocations ?? []).map((a) => allocationNode("IPAddressAllocation", a)),
  ]);
}

export function listNode<T>(
  name: string,
  items: T[] | undefined,
  item: (value: T) => XmlNode,
): XmlNode | undefined {
  return nonEmpty(items) ? el(name, items.map(item)) : undefined;
}

/** `undefined` writes an empty wrapper; `""` asks the server to pick a name (`type="random"`). */
export function hostnameNode(name: string, hostname: string | undefined): XmlNode {
  if (hostname === undefined) return el(name);
  return el(name, [
    hostname === ""
      ? { name: "Hostname", text: "", attributes: [["type", "random"]] }
      : { name: "Hostname", text: hostname },
  ]);
}

export function authorizedKeysNode(
  name: string,
  keys: AuthorizedKeys | undefined,
  management: "when-set" | "always",
): XmlNode | undefined {
  if (!keys) return undefined;
  const users = keys.all_users
    ? { name: "Users", attributes: [["all", "yes"]] as [string, string][], children: [] }
    : listNode("Users", keys.users, (u) => lookupNode("User", "User", u)!);
  const sshKeys = keys.all_ssh_keys
    ? { name: "SSHKeys", attributes: [["all", "yes"]] as [string, string][], children: [] }
    : listNode("SSHKeys", keys.ssh_keys, (k) => ({ name: "SSHKey", text: k }));
  const attributes: [string, string][] | undefined =
    management === "always" || keys.continuous_management
      ? [["continuous_management", keys.continuous_management ? "yes" : "no"]]
      : undefined;
  return el(name, [users, sshKeys], attributes);
}

export function specNode(spec: VirtualMachineSpec, management: "when-set" | "always" = "when-set"): XmlNode {
  return el("VirtualMachineSpec", [
    lookupNode("Zone", "Zone", spec.zone),
    lookupNode("DataCenter", "DataCenter", spec.data_center),
    resourcesNode("Resources", spec.resources),
    diskTemplateNode("DiskTemplate", spec.disk_template),
    listNode("SystemDisks", spec.system_disks, (d) => systemDiskNode("Disk", d)),
    listNode("SharedDisks", spec.shared_disks, (d) => lookupNode("Disk", "SharedDisk", d)!),
    listNode("NetworkInterfaces", spec.network_interfaces, (n) =>
      networkInterfaceNode("NetworkInterface", n),
    ),
    hostnameNode("Hostname", spec.hostname ?? ""),
    leaf("Name", spec.name),
    leaf("Description", spec.description),
    lookupNode("Group", "Group", spec.group),
    authorizedKeysNode("AuthorizedKeys", spec.authorized_keys, management),
    backupPoliciesNode("BackupPolicies", spec.backup_policies),
    listNode("Tags", spec.tags, (t) => ({ name: "Tag", text: t })),
    leaf("ISO", spec.iso),
  ]);
}

/** Writes a whole spec document. */
export function writeXml(spec: VirtualMachineSpec, style: XmlStyle = { style: "katapult" }): string {
  if (style.style === "server") {
    return `<?xml version="1.0"?>\n${renderXml(specNode(spec, "always"), { style: "server" })}\n`;
  }
  const body = renderXml(specNode(spec), style);
  const declaration = style.declaration ?? style.indent === undefined;
  return declaration ? `<?xml version="1.0" encoding="UTF-8"?>\n${body}` : body;
}

/** Writes one node (a document or a fragment) in the given style. */
export function renderXml(node: XmlNode, style: XmlStyle = { style: "katapult" }): string {
  const server = style.style === "server";
  const indent = server ? "  " : (style.indent ?? "");
  const prefix = server ? "" : (style.prefix ?? "");
  const pretty = server || style.indent !== undefined;
  const escapeText = server ? escapeServerText : escapeGo;
  const escapeAttribute = server ? escapeServerAttribute : escapeGo;
  const margins: string[] = [];
  const margin = (depth: number) => (margins[depth] ??= prefix + indent.repeat(depth));
  // One string grown by concatenation: V8 joins the pieces once, when the result is read.
  let out = "";

  const write = (n: XmlNode, depth: number, first: boolean) => {
    if (pretty) out += first ? margin(depth) : "\n" + margin(depth);
    out += "<" + n.name;
    for (const [key, value] of n.attributes ?? []) out += " " + key + '="' + escapeAttribute(value) + '"';
    const children = n.children ?? [];
    if (children.length === 0) {
      const text = n.text ?? "";
      if (server && text === "") out += "/>";
      else out += ">" + escapeText(text) + "</" + n.name + ">";
      return;
    }
    out += ">";
    for (const child of children) write(child, depth + 1, false);
    if (pretty) out += "\n" + margin(depth);
    out += "</" + n.name + ">";
  };
  write(node, 0, true);
  return out;
}

const GO_ESCAPES: Record<string, string> = {
  '"': "&#34;",
  "'": "&#39;",
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  "\t": "&#x9;",
  "\n": "&#xA;",
  "\r": "&#xD;",
};

/** Go's encoding/xml EscapeText, which go-katapult uses for text and attributes alike. */
function escapeGo(text: string): string {
  return text.replace(/["'&<>\t\n\r]/g, (c) => GO_ESCAPES[c]!);
}

function escapeServerText(text: string): string {
  return text.replace(/[&<>\r]/g, (c) =>
    c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : "&#13;",
  );
}

function escapeServerAttribute(text: string): string {
  return text.replace(/[&<"\t\n\r]/g, (c) =>
    c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === '"' ? "&quot;" : `&#${c.charCodeAt(0)};`,
  );
}
