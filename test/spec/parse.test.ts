import { describe, expect, it } from "vitest";
import { checkSpec, detectFormat, formatSyntaxErrors, parseSpec, writeSpec } from "../../src/spec/index.js";

const wrap = (inner: string) => `<VirtualMachineSpec>${inner}</VirtualMachineSpec>`;
const KEY =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINnocG4sbDGKKucxVOvxwSbcm+hGxjWdupyDNkDq7Vxv ops@example.org";

const VALID = `<?xml version="1.0" encoding="UTF-8"?>
<VirtualMachineSpec>
  <DataCenter by="permalink">uk-lon-01</DataCenter>
  <Resources>
    <Package by="permalink">rock-3</Package>
  </Resources>
  <DiskTemplate>
    <DiskTemplate by="permalink">templates/debian-12</DiskTemplate>
  </DiskTemplate>
  <NetworkInterfaces>
    <NetworkInterface>
      <Network by="permalink">uk-lon-01-public</Network>
      <IPAddressAllocation type="new"><Version>4</Version></IPAddressAllocation>
    </NetworkInterface>
    <NetworkInterface>
      <Network by="permalink">uk-lon-01-private</Network>
      <IPAddressAllocation type="new">
        <Version>5</Version>
      </IPAddressAllocation>
    </NetworkInterface>
  </NetworkInterfaces>
  <Hostname><Hostname>Web-01</Hostname></Hostname>
  <AuthorizedKeys><SSHKeys><SSHKey>${KEY}</SSHKey></SSHKeys></AuthorizedKeys>
</VirtualMachineSpec>`;

describe("reading XML: form errors as go-katapult raises them", () => {
  it("reports malformed XML with line and column, in the invalid_spec_xml detail form", () => {
    const result = parseSpec(wrap("<Name>x</Nam>"));
    expect(result.spec).toBeNull();
    expect(result.errors).toHaveLength(1);
    expect(result.errors[0]).toMatchObject({ code: "malformed", line: 1 });
    expect(formatSyntaxErrors(result.errors)).toMatch(
      /^1:\d+: FATAL: element <Name> closed by a different end tag$/,
    );
  });

  it("reports an unclosed document", () => {
    const result = parseSpec("<VirtualMachineSpec>\n  <Name>x</Name>\n");
    expect(result.errors[0]).toMatchObject({ code: "malformed" });
    expect(result.errors[0]!.line).toBeGreaterThanOrEqual(2);
  });

  it.each(["", "   ", '<?xml version="1.0"?>'])("treats %j as an empty document", (text) => {
    const result = parseSpec(text, { format: "xml" });
    expect(result.errors[0]!.code).toBe("empty_document");
  });

  it("rejects an unsupported by= value with the lookup kind in the message", () => {
    const result = parseSpec(
      wrap('<Zone by="other">z</Zone><Resources><Package by="Permalink">p</Package></Resources>'),
    );
    expect(result.errors.map((e) => [e.code, e.path, e.message])).toEqual([
      ["unsupported_lookup", "/VirtualMachineSpec/Zone", 'Zone by="other" is not supported'],
      [
        "unsupported_lookup",
        "/VirtualMachineSpec/Resources/Package",
        'Package by="Permalink" is not supported',
      ],
    ]);
  });

  it("accepts by=id as a synonym of no attribute, and reads each lookup kind", () => {
    const result = parseSpec(
      wrap(
        '<Zone by="id">zone_a</Zone><DataCenter by="name">London</DataCenter><Group by="name">g</Group>' +
          '<SharedDisks><Disk by="name">d</Disk></SharedDisks>' +
          '<AuthorizedKeys><Users><User by="email_address">a@b.c</User></Users></AuthorizedKeys>',
      ),
    );
    expect(result.errors).toEqual([]);
    expect(result.spec).toMatchObject({
      zone: { id: "zone_a" },
      data_center: { name: "London" },
      group: { name: "g" },
      shared_disks: [{ name: "d" }],
      authorized_keys: { users: [{ email_address: "a@b.c" }] },
    });
  });

  it.each([
    ["lots", "invalid_integer"],
    ["2.0", "invalid_integer"],
    ["0x10", "invalid_integer"],
    ["99999999999999999999", "integer_out_of_range"],
  ])("rejects the integer %s", (value, code) => {
    const result = parseSpec(wrap(`<Resources><Memory>${value}</Memory></Resources>`));
    expect(result.errors[0]).toMatchObject({ code, path: "/VirtualMachineSpec/Resources/Memory", line: 1 });
  });

  it("reads integers with whitespace and signs, and empty content as absent", () => {
    const result = parseSpec(wrap("<Resources><Memory> +8 </Memory><CPUCores></CPUCores></Resources>"));
    expect(result.spec?.resources).toEqual({ memory: 8 });
  });

  it("rejects an encoding other than UTF-8 and accepts a byte-order mark", () => {
    expect(parseSpec(`<?xml version="1.0" encoding="ISO-8859-1"?>${wrap("")}`).errors[0]!.code).toBe(
      "unsupported_encoding",
    );
    // The declaration comes first, so its error comes before any later one.
    for (const after of ["<!DOCTYPE x>", "", "<1bad/>", wrap("<Tags><Tag>a</Tags>")]) {
      expect(parseSpec(`<?xml version="1.0" encoding="latin1"?>${after}`).errors[0]!.code).toBe(
        "unsupported_encoding",
      );
    }
    expect(parseSpec(`\uFEFF<?xml version="1.0" encoding="utf-8"?>${wrap("<Name>n</Name>")}`).spec).toEqual({
      name: "n",
    });
  });

  it("expands only the predefined entities, character references and CDATA", () => {
    const result = parseSpec(
      wrap("<Description>a &amp; b &#x41;&#66; <![CDATA[<raw>]]> n<!-- x -->m</Description>"),
    );
    expect(result.spec?.description).toBe("a & b AB <raw> nm");
    const undefinedEntity = parseSpec(wrap("<Description>&example;</Description>"));
    expect(undefinedEntity.errors[0]!.code).toBe("undefined_entity");
  });

  it("refuses any DOCTYPE", () => {
    const result = parseSpec(`<!DOCTYPE VirtualMachineSpec>${wrap("")}`);
    expect(result.errors[0]!.code).toBe("doctype_forbidden");
  });

  it("ignores unknown elements and attributes, with warnings that name them", () => {
    const result = parseSpec(
      wrap('<Rocket fuel="yes"/><Resources size="xl"><Memory>4</Memory>text</Resources>'),
    );
    expect(result.errors).toEqual([]);
    expect(result.warnings.map((w) => [w.code, w.path])).toEqual([
      ["unknown_element", "/VirtualMachineSpec/Rocket"],
      ["unknown_attribute", "/VirtualMachineSpec/Resources"],
      ["unexpected_text", "/VirtualMachineSpec/Resources"],
    ]);
    expect(result.spec).toEqual({ resources: { memory: 4 } });
  });

  it("rejects a singular element given twice", () => {
    const result = parseSpec(wrap("<Name>a</Name>\n<Name>b</Name>"));
    expect(result.errors[0]).toMatchObject({ code: "duplicate_element", line: 2, column: 1 });
  });

  it("rejects a root other than VirtualMachineSpec", () => {
    expect(parseSpec("<Spec/>").errors[0]!.code).toBe("wrong_root_element");
  });

  it("reads Name flat and nested, Hostname nested and flat, random hostnames as absent", () => {
    expect(parseSpec(wrap("<Name><Name>in</Name></Name>")).spec).toEqual({ name: "in" });
    expect(parseSpec(wrap("<Name>flat</Name>")).spec).toEqual({ name: "flat" });
    expect(parseSpec(wrap("<Hostname>flat-host</Hostname>")).spec).toEqual({ hostname: "flat-host" });
    expect(parseSpec(wrap('<Hostname><Hostname type="random"></Hostname></Hostname>')).spec).toEqual({});
    expect(parseSpec(wrap('<Hostname><Hostname type="random">x</Hostname></Hostname>')).errors[0]!.code).toBe(
      "conflicting_elements",
    );
  });

  it("keeps text values untrimmed, and empty lookups present", () => {
    expect(parseSpec(wrap('<Zone by="permalink"> east-1 </Zone><Group/>')).spec).toEqual({
      zone: { permalink: " east-1 " },
      group: {},
    });
  });
});

describe("structural validation", () => {
  it("collects every problem with line, column, element path, code and message", () => {
    const result = checkSpec(VALID);
    expect(result.valid).toBe(false);
    expect(result.errors).toEqual([
      {
        line: 18,
        column: 9,
        path: "/VirtualMachineSpec/NetworkInterfaces/NetworkInterface[2]/IPAddressAllocation[1]/Version",
        code: "invalid_value",
        message: "Version must be 4 or 6, got 5",
      },
    ]);
  });

  it("accepts a valid spec and returns the model", () => {
    const result = checkSpec(VALID.replace("<Version>5</Version>", "<Version>6</Version>"));
    expect(result.errors).toEqual([]);
    expect(result.valid).toBe(true);
    expect(result.spec?.hostname).toBe("Web-01");
  });

  it("requires a location, resources and a template", () => {
    const result = checkSpec(wrap(""));
    expect(result.errors.map((e) => e.code)).toEqual([
      "missing_element",
      "missing_element",
      "missing_element",
    ]);
    expect(result.errors.map((e) => e.message).join(" ")).toMatch(
      /Zone or a DataCenter.*Resources.*DiskTemplate/,
    );
  });

  it("requires a package or both memory and CPU cores, within range", () => {
    const base =
      "<DataCenter>dc_a</DataCenter><DiskTemplate><DiskTemplate>dtpl_a</DiskTemplate></DiskTemplate>";
    const memoryOnly = checkSpec(wrap(`${base}<Resources><Memory>4</Memory></Resources>`));
    expect(memoryOnly.errors.map((e) => e.code)).toEqual(["missing_element"]);
    const tooBig = checkSpec(
      wrap(`${base}<Resources><Memory>5000</Memory><CPUCores>-1</CPUCores></Resources>`),
    );
    expect(tooBig.errors.map((e) => [e.code, e.path])).toEqual([
      ["out_of_range", "/VirtualMachineSpec/Resources/Memory"],
      ["out_of_range", "/VirtualMachineSpec/Resources/CPUCores"],
    ]);
  });

  it("checks enums, hostnames, SSH keys, allocations and empty lookups", () => {
    const result = checkSpec(
      wrap(
        "<DataCenter/><Resources><Package>p</Package></Resources><DiskTemplate><DiskTemplate>t</DiskTemplate></DiskTemplate>" +
          "<SystemDisks><Disk><Speed>floppy</Speed><FileSystemType>fat</FileSystemType></Disk><Disk></Disk></SystemDisks>" +
          "<NetworkInterfaces><NetworkInterface><Network>n</Network><VirtualNetwork>v</VirtualNetwork>" +
          '<IPAddressAllocation type="existing"><Version>4</Version></IPAddressAllocation>' +
          "<IPAddressAllocation><Version>4</Version></IPAddressAllocation></NetworkInterface></NetworkInterfaces>" +
          "<Hostname><Hostname>-bad_host</Hostname></Hostname>" +
          "<AuthorizedKeys><SSHKeys><SSHKey>ssh-ed25519 notbase64!</SSHKey></SSHKeys></AuthorizedKeys>" +
          "<BackupPolicies><BackupPolicy><Schedule><Interval>yearly</Interval><Time>24</Time></Schedule></BackupPolicy></BackupPolicies>" +
          "<Tags><Tag>a</Tag><Tag>a</Tag></Tags>",
      ),
    );
    const codes = result.errors.map((e) => `${e.code} ${e.path}`);
    expect(codes).toEqual(
      expect.arrayContaining([
        "empty_lookup /VirtualMachineSpec/DataCenter",
        "invalid_value /VirtualMachineSpec/SystemDisks/Disk[1]/Speed",
        "invalid_value /VirtualMachineSpec/SystemDisks/Disk[1]/FileSystemType",
        "missing_element /VirtualMachineSpec/SystemDisks/Disk[2]",
        "conflicting_elements /VirtualMachineSpec/NetworkInterfaces/NetworkInterface[1]",
        "missing_element /VirtualMachineSpec/NetworkInterfaces/NetworkInterface[1]/IPAddressAllocation[1]",
        "conflicting_elements /VirtualMachineSpec/NetworkInterfaces/NetworkInterface[1]/IPAddressAllocation[1]/Version",
        "missing_attribute /VirtualMachineSpec/NetworkInterfaces/NetworkInterface[1]/IPAddressAllocation[2]",
        "invalid_hostname /VirtualMachineSpec/Hostname/Hostname",
        "invalid_ssh_key /VirtualMachineSpec/AuthorizedKeys/SSHKeys/SSHKey[1]",
        "invalid_value /VirtualMachineSpec/BackupPolicies/BackupPolicy[1]/Schedule/Interval",
        "out_of_range /VirtualMachineSpec/BackupPolicies/BackupPolicy[1]/Schedule/Time",
        "duplicate_element /VirtualMachineSpec/Tags/Tag[2]",
      ]),
    );
    // Sorted by position in the document.
    const positions = result.errors.map((e) => e.line * 100_000 + e.column);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
  });

  it("reports the same paths for the JSON form", () => {
    const json = JSON.stringify({
      data_center: { permalink: "uk-lon-01" },
      resources: { package: { permalink: "rock-3" } },
      disk_template: { permalink: "templates/debian-12" },
      network_interfaces: [
        { network: { id: "netw_a" } },
        {
          network: { id: "netw_b", permalink: "two" },
          ip_address_allocations: [{ type: "new", version: 5 }],
        },
      ],
    });
    const result = checkSpec(json);
    expect(result.format).toBe("json");
    expect(result.errors.map((e) => [e.code, e.path])).toEqual([
      ["ambiguous_lookup", "/VirtualMachineSpec/NetworkInterfaces/NetworkInterface[2]/Network"],
      [
        "invalid_value",
        "/VirtualMachineSpec/NetworkInterfaces/NetworkInterface[2]/IPAddressAllocation[1]/Version",
      ],
    ]);
  });
});

describe("reading JSON and YAML", () => {
  it.each([
    ['{"rocket_fuel": 1}', "unknown_field"],
    ['{"resources": {"memory": "16"}}', "wrong_type"],
    ['{"resources": {"memory": 1.5}}', "wrong_type"],
    ['{"disk_template": {"version": "4"}}', "wrong_type"],
    ['{"authorized_keys": {"all_users": "yes"}}', "wrong_type"],
    ['{"zone": "zone_a"}', "wrong_type"],
    ['{"name": 5}', "wrong_type"],
    ['{"name": "a",}', "malformed"],
    ["", "empty_document"],
  ])("JSON %s -> %s", (text, code) => {
    const result = parseSpec(text, { format: "json" });
    expect(result.spec).toBeNull();
    expect(result.errors[0]!.code).toBe(code);
  });

  it("accepts null as absent, in JSON and YAML", () => {
    expect(parseSpec('{"zone": null, "name": "x"}', { format: "json" }).spec).toEqual({ name: "x" });
    expect(parseSpec("null", { format: "json" }).spec).toEqual({});
    expect(parseSpec("zone:\nname: x\n", { format: "yaml" }).spec).toEqual({ name: "x" });
  });

  it.each([
    ["rocket_fuel: 1\n", "unknown_field"],
    ["name: a\nname: b\n", "duplicate_key"],
    ['resources:\n  memory: "16"\n', "wrong_type"],
    ["name: [1, 2\n", "malformed"],
  ])("YAML %j -> %s", (text, code) => {
    expect(parseSpec(text, { format: "yaml" }).errors[0]!.code).toBe(code);
  });

  it("follows yaml.v3 where it is lenient: scalar text for strings, yes/no for booleans", () => {
    const result = parseSpec("name: 42\nauthorized_keys:\n  all_users: yes\n  all_ssh_keys: Off\n", {
      format: "yaml",
    });
    expect(result.spec).toEqual({ name: "42", authorized_keys: { all_users: true } });
  });

  it("locates errors in YAML by line and column", () => {
    const result = parseSpec("resources:\n  memory: lots\n", { format: "yaml" });
    expect(result.errors[0]).toMatchObject({
      line: 2,
      column: 11,
      path: "/VirtualMachineSpec/Resources/Memory",
    });
  });

  it("detects the format from the extension or the content", () => {
    expect(detectFormat("{}", "spec.yaml")).toBe("yaml");
    expect(detectFormat("<X/>", "spec.JSON")).toBe("json");
    expect(detectFormat("  <VirtualMachineSpec/>")).toBe("xml");
    expect(detectFormat('{"a":1}')).toBe("json");
    expect(detectFormat("zone:\n  id: x")).toBe("yaml");
  });

  it("converts between the three forms without loss", () => {
    const xml = checkSpec(VALID.replace("<Version>5</Version>", "<Version>6</Version>")).spec!;
    for (const format of ["xml", "json", "yaml"] as const) {
      const again = checkSpec(writeSpec(xml, format), { format });
      expect(again.errors).toEqual([]);
      expect(again.spec).toEqual(xml);
    }
  });
});
