/**
 * Property: any document built from the format's own names, names that collide with
 * Object.prototype's members, and stray ones, nested at random, is read without an
 * exception: every outcome is a model, or located problems.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkSpec, type SpecError, type SpecWarning } from "../../src/spec/index.js";

const PROTOTYPE_NAMES = ["__proto__", "constructor", "toString", "valueOf", "hasOwnProperty", "prototype"];
const ELEMENTS = [
  ...["VirtualMachineSpec", "Zone", "DataCenter", "Resources", "Package", "Memory", "CPUCores"],
  ...["DiskTemplate", "Version", "Option", "SystemDisks", "SharedDisks", "Disk", "Name", "Size", "Speed"],
  ...["IOProfile", "FileSystemType", "BackupPolicies", "BackupPolicy", "Retention", "Schedule", "Interval"],
  ...["Frequency", "Time", "NetworkInterfaces", "NetworkInterface", "Network", "VirtualNetwork"],
  ...["SpeedProfile", "IPAddressAllocation", "IPAddress", "Subnet", "Hostname", "Description", "Group"],
  ...["AuthorizedKeys", "Users", "User", "SSHKeys", "SSHKey", "Tags", "Tag", "ISO", "Stray"],
  ...PROTOTYPE_NAMES,
];
const ATTRIBUTES = ["by", "key", "type", "all", "continuous_management", "xmlns", ...PROTOTYPE_NAMES];
const KEYS = [
  ...["zone", "data_center", "resources", "package", "memory", "cpu_cores", "disk_template", "version"],
  ...["options", "key", "value", "system_disks", "name", "size", "speed", "io_profile", "backup_policies"],
  ...["retention", "schedule", "interval", "network_interfaces", "network", "ip_address_allocations"],
  ...["type", "authorized_keys", "users", "all_users", "ssh_keys", "tags", "id", "permalink", "stray"],
  ...PROTOTYPE_NAMES,
];
const VALUES = [
  "",
  " ",
  "1",
  "-0",
  "99999999999999999999",
  "yes",
  "no",
  "random",
  "permalink",
  "id",
  "toString",
  "x&amp;y",
  "2001:db8::1",
];

interface Element {
  name: string;
  attributes: [string, string][];
  text: string;
  children: Element[];
}
const { element } = fc.letrec<{ element: Element }>((tie) => ({
  element: fc.record({
    name: fc.constantFrom(...ELEMENTS),
    attributes: fc.uniqueArray(fc.tuple(fc.constantFrom(...ATTRIBUTES), fc.constantFrom(...VALUES)), {
      maxLength: 2,
      selector: ([name]) => name,
    }),
    text: fc.constantFrom(...VALUES),
    children: fc.oneof(
      { maxDepth: 5, depthIdentifier: "xml" },
      fc.constant<Element[]>([]),
      fc.array(tie("element") as fc.Arbitrary<Element>, { maxLength: 3 }),
    ),
  }),
}));
const xml = (e: Element): string =>
  `<${e.name}${e.attributes.map(([k, v]) => ` ${k}="${v}"`).join("")}>${e.text}${e.children.map(xml).join("")}</${e.name}>`;

const { value } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { maxDepth: 5, depthIdentifier: "data" },
    fc.constantFrom<unknown>(...VALUES, 0, 1, -1, true, false, null),
    fc.array(tie("value"), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom(...KEYS), tie("value"), { maxKeys: 3 }),
  ),
}));

function expectLocated(problems: (SpecError | SpecWarning)[]): void {
  for (const problem of problems) {
    expect(problem.line).toBeGreaterThanOrEqual(1);
    expect(problem.column).toBeGreaterThanOrEqual(1);
    expect(typeof problem.message).toBe("string");
  }
}

describe("arbitrary documents", () => {
  it("XML trees of the format's names, prototype names and strays read without an exception", () => {
    fc.assert(
      fc.property(element, (root) => {
        const result = checkSpec(xml({ ...root, name: "VirtualMachineSpec" }), { format: "xml" });
        expect(result.valid).toBe(result.errors.length === 0);
        expectLocated([...result.errors, ...result.warnings]);
      }),
      { numRuns: 2000 },
    );
  });

  it.each(["json", "yaml"] as const)(
    "%s documents of the format's keys, prototype names and strays read without an exception",
    (format) => {
      fc.assert(
        fc.property(value, (document) => {
          // JSON text keeps "__proto__" as a key; YAML gets the same tree as JSON (YAML 1.2 is a superset).
          const result = checkSpec(JSON.stringify(document), { format });
          expectLocated([...result.errors, ...result.warnings]);
        }),
        { numRuns: 2000 },
      );
    },
  );
});
