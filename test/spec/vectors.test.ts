/**
 * The 257 golden vectors of go-katapult's buildspec package (test/fixtures/spec-vectors):
 * cross-format equality, writer round trip and byte-exact output.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DataSpecReader } from "../../src/spec/data-reader.js";
import { renderJson, renderYaml, writeJson, writeYaml } from "../../src/spec/data-writer.js";
import { DEFAULT_LIMITS } from "../../src/spec/limits.js";
import { canonicalValue, SPEC_SCHEMA, type FieldType } from "../../src/spec/schema.js";
import { XmlSpecReader } from "../../src/spec/xml-reader.js";
import { readXmlTree, type XmlElement } from "../../src/spec/xml-tree.js";
import * as W from "../../src/spec/xml-writer.js";
import { parseSpec, type VirtualMachineSpec } from "../../src/spec/index.js";

const VECTORS = new URL("../fixtures/spec-vectors/", import.meta.url).pathname;

function field(...keys: string[]): FieldType {
  let type: FieldType = SPEC_SCHEMA;
  for (const key of keys) {
    if (type.kind === "list") type = type.item;
    if (type.kind !== "object") throw new Error(`no field ${key}`);
    type = type.fields[key]!.type;
  }
  return type.kind === "list" ? type.item : type;
}

interface Thing {
  type: FieldType;
  read: (r: XmlSpecReader, e: XmlElement) => unknown;
  write: (name: string, value: never) => W.XmlNode | undefined;
}

const lookupThing = (type: FieldType, kind: Parameters<typeof W.lookupNode>[1]): Thing => ({
  type,
  read: (r, e) => r.lookup(e, "/x", kind),
  write: (name, value) => W.lookupNode(name, kind, value),
});

const THINGS: Record<string, Thing> = {
  VirtualMachineSpec: { type: SPEC_SCHEMA, read: (r, e) => r.spec(e), write: (_n, v) => W.specNode(v) },
  Zone: lookupThing(field("zone"), "Zone"),
  DataCenter: lookupThing(field("data_center"), "DataCenter"),
  Package: lookupThing(field("resources", "package"), "Package"),
  DiskIOProfile: lookupThing(field("system_disks", "io_profile"), "DiskIOProfile"),
  NetworkSpeedProfile: lookupThing(field("network_interfaces", "speed_profile"), "NetworkSpeedProfile"),
  Network: lookupThing(field("network_interfaces", "network"), "Network"),
  IPAddress: lookupThing(field("network_interfaces", "ip_address_allocations", "ip_address"), "IPAddress"),
  Subnet: lookupThing(field("network_interfaces", "ip_address_allocations", "subnet"), "Subnet"),
  Group: lookupThing(field("group"), "Group"),
  User: lookupThing(field("authorized_keys", "users"), "User"),
  SharedDisk: lookupThing(field("shared_disks"), "SharedDisk"),
  VirtualNetwork: {
    type: field("network_interfaces", "virtual_network"),
    read: (r, e) =>
      r.networkInterface({ ...e, name: "NetworkInterface", children: [e], text: "" }, "/x").virtual_network,
    write: (name, value) => W.lookupNode(name, "VirtualNetwork", value),
  },
  Resources: { type: field("resources"), read: (r, e) => r.resources(e, "/x"), write: W.resourcesNode },
  DiskTemplate: {
    type: field("disk_template"),
    read: (r, e) => r.diskTemplate(e, "/x"),
    write: W.diskTemplateNode,
  },
  SystemDisk: { type: field("system_disks"), read: (r, e) => r.systemDisk(e, "/x"), write: W.systemDiskNode },
  NetworkInterface: {
    type: field("network_interfaces"),
    read: (r, e) => r.networkInterface(e, "/x"),
    write: W.networkInterfaceNode,
  },
  IPAddressAllocation: {
    type: field("network_interfaces", "ip_address_allocations"),
    read: (r, e) => r.allocation(e, "/x"),
    write: W.allocationNode,
  },
  AuthorizedKeys: {
    type: field("authorized_keys"),
    read: (r, e) => r.authorizedKeys(e, "/x"),
    write: (name, value) => W.authorizedKeysNode(name, value, "when-set"),
  },
  BackupPolicy: {
    type: field("backup_policies"),
    read: (r, e) => r.backupPolicy(e, "/x"),
    write: W.backupPolicyNode,
  },
  Schedule: {
    type: field("backup_policies", "schedule"),
    read: (r, e) => r.schedule(e, "/x"),
    write: W.schedule,
  },
};

function tree(text: string): XmlElement {
  const result = readXmlTree(text, DEFAULT_LIMITS);
  if ("error" in result) throw new Error(result.error.message);
  return result.root;
}

function readXml(thing: Thing, text: string): unknown {
  const reader = new XmlSpecReader();
  const value = thing.read(reader, tree(text));
  expect(reader.errors).toEqual([]);
  return canonicalValue(value, thing.type);
}

function readData(thing: Thing, text: string, format: "json" | "yaml"): unknown {
  const reader = new DataSpecReader(format);
  const value = reader.readAs(text, thing.type, "/x");
  expect(reader.errors).toEqual([]);
  return canonicalValue(value, thing.type);
}

function writeXmlFragment(thing: Thing, name: string, value: unknown): string {
  return W.renderXml(thing.write(name, value as never)!, { style: "katapult", indent: "  " });
}

const read = (folder: string, file: string) => readFileSync(join(VECTORS, folder, file), "utf8");

const marshalingFolders = readdirSync(VECTORS).filter((f) => /^Test[A-Z]\w*_Marshaling$/.test(f));

describe("spec vectors: Test<Thing>_Marshaling", () => {
  it("covers every folder of the reference", () => {
    expect(marshalingFolders.length).toBe(21);
  });

  for (const folder of marshalingFolders) {
    const thingName = folder.replace(/^Test/, "").replace(/_Marshaling$/, "");
    const rootName = thingName;
    const thing = THINGS[thingName];
    const cases = readdirSync(join(VECTORS, folder))
      .filter((f) => f.startsWith("json_"))
      .map((f) => f.slice(5, -".golden".length));

    describe(folder, () => {
      it("has a reader and writer for its type", () => expect(thing).toBeDefined());
      for (const name of cases) {
        it(name, () => {
          const json = read(folder, `json_${name}.golden`);
          const yaml = read(folder, `yaml_${name}.golden`);
          const xml = read(folder, `xml_${name}.golden`);
          const fromJson = readData(thing!, json, "json");
          const fromYaml = readData(thing!, yaml, "yaml");
          const fromXml = readXml(thing!, xml);

          // 1. cross-format equality; XML carries what its writer can say of the JSON model
          expect(fromYaml).toEqual(fromJson);
          const xmlOfJson = readXml(thing!, writeXmlFragment(thing!, rootName, fromJson));
          expect(fromXml).toEqual(xmlOfJson);

          // 2. byte-exact writers
          expect(renderJson(fromJson, { indent: "  " })).toBe(json);
          expect(renderYaml(fromJson)).toBe(yaml);
          expect(writeXmlFragment(thing!, rootName, fromXml)).toBe(xml);

          // 3. round trip through every writer gives the same model
          expect(readData(thing!, renderJson(fromJson, {}), "json")).toEqual(fromJson);
          expect(readData(thing!, renderYaml(fromYaml), "yaml")).toEqual(fromJson);
          expect(readXml(thing!, writeXmlFragment(thing!, rootName, fromXml))).toEqual(fromXml);
        });
      }
    });
  }
});

describe("spec vectors: Test_xml<Wrapper>_Marshaling", () => {
  const wrappers: Record<string, (r: XmlSpecReader, e: XmlElement) => W.XmlNode | undefined> = {
    xmlBackupPolicies: (r, e) => W.backupPoliciesNode("xmlBackupPolicies", r.backupPolicies(e, "/x")),
    xmlHostname: (r, e) =>
      W.hostnameNode("xmlHostname", e.children.length === 0 ? undefined : r.hostname(e, "/x")),
    xmlName: (r, e) => ({ name: "xmlName", text: r.name(e, "/x") }),
    xmlNetworkInterfaces: (r, e) =>
      W.listNode(
        "xmlNetworkInterfaces",
        fragmentList(r, e, "NetworkInterface", (c) => r.networkInterface(c, "/x")),
        (n) => W.networkInterfaceNode("NetworkInterface", n),
      ),
    xmlSSHKeys: (r, e) =>
      W.listNode(
        "xmlSSHKeys",
        fragmentList(r, e, "SSHKey", (c) => c.text),
        (k) => ({ name: "SSHKey", text: k }),
      ),
    xmlSharedDisks: (r, e) =>
      W.listNode(
        "xmlSharedDisks",
        fragmentList(r, e, "Disk", (c) => r.lookup(c, "/x", "SharedDisk")),
        (d) => W.lookupNode("Disk", "SharedDisk", d)!,
      ),
    xmlSystemDisks: (r, e) =>
      W.listNode(
        "xmlSystemDisks",
        fragmentList(r, e, "Disk", (c) => r.systemDisk(c, "/x")),
        (d) => W.systemDiskNode("Disk", d),
      ),
    xmlTags: (r, e) =>
      W.listNode(
        "xmlTags",
        fragmentList(r, e, "Tag", (c) => c.text),
        (t) => ({ name: "Tag", text: t }),
      ),
    xmlUsers: (r, e) =>
      W.listNode(
        "xmlUsers",
        fragmentList(r, e, "User", (c) => r.lookup(c, "/x", "User")),
        (u) => W.lookupNode("User", "User", u)!,
      ),
  };
  const folders = readdirSync(VECTORS).filter((f) => f.startsWith("Test_xml"));
  it("covers every wrapper folder", () => expect(folders.length).toBe(Object.keys(wrappers).length));
  for (const folder of folders) {
    const wrapper = folder.slice("Test_".length, -"_Marshaling".length);
    for (const file of readdirSync(join(VECTORS, folder))) {
      it(`${folder}/${file}`, () => {
        const xml = read(folder, file);
        const reader = new XmlSpecReader();
        const node = wrappers[wrapper]!(reader, tree(xml)) ?? { name: wrapper, children: [] };
        expect(reader.errors).toEqual([]);
        expect(W.renderXml(node, { style: "katapult", indent: "  " })).toBe(xml);
      });
    }
  }
});

function fragmentList<T>(_r: XmlSpecReader, e: XmlElement, name: string, read: (c: XmlElement) => T): T[] {
  return e.children.filter((c) => c.name === name).map(read);
}

describe("spec vectors: whole documents (ToFromJSON / ToFromXML / ToFromYAML)", () => {
  const specOf = (format: "xml" | "json" | "yaml", file: string): VirtualMachineSpec => {
    const folder = `TestVirtualMachineSpec_ToFrom${format === "xml" ? "XML" : format.toUpperCase()}`;
    const text = read(folder, file);
    const result = parseSpec(file.includes(".indented.") ? text.replace(/^ {4}/gm, "") : text, { format });
    expect(result.errors).toEqual([]);
    return result.spec!;
  };

  for (const name of ["basic_spec", "empty_spec"]) {
    it(`${name}: the three folders describe the same spec`, () => {
      const json = specOf("json", `${name}.golden`);
      expect(specOf("yaml", `${name}.golden`)).toEqual(json);
      expect(specOf("xml", `${name}.golden`)).toEqual(json);
      expect(specOf("xml", `${name}.indented.golden`)).toEqual(json);
      expect(specOf("json", `${name}.indented.golden`)).toEqual(json);
    });

    it(`${name}: writers match the vectors byte for byte`, () => {
      const spec = specOf("json", `${name}.golden`);
      expect(writeJson(spec, {}) + "\n").toBe(read("TestVirtualMachineSpec_ToFromJSON", `${name}.golden`));
      expect(writeJson(spec, { indent: "  ", prefix: "    " }) + "\n").toBe(
        read("TestVirtualMachineSpec_ToFromJSON", `${name}.indented.golden`),
      );
      expect(W.writeXml(spec)).toBe(read("TestVirtualMachineSpec_ToFromXML", `${name}.golden`));
      expect(W.writeXml(spec, { style: "katapult", indent: "  ", prefix: "    " })).toBe(
        read("TestVirtualMachineSpec_ToFromXML", `${name}.indented.golden`),
      );
      expect(writeYaml(spec)).toBe(read("TestVirtualMachineSpec_ToFromYAML", `${name}.golden`));
    });
  }
});
