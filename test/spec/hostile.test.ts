/**
 * Hostile documents: each must be refused with the right error, quickly and without
 * expanding anything. The time bound is generous (a correct refusal takes milliseconds);
 * it catches exponential or quadratic behaviour, not small slowdowns.
 */
import { describe, expect, it } from "vitest";
import { parseSpec, type SpecErrorCode } from "../../src/spec/index.js";

const BOUND_MS = 1000;

/** Block-style YAML of string-valued objects, as nested as given. */
function yamlOf(value: Record<string, unknown>, indent = ""): string {
  return Object.entries(value)
    .map(([k, v]) =>
      typeof v === "string"
        ? `${indent}${k}: ${v}\n`
        : `${indent}${k}:\n${yamlOf(v as Record<string, unknown>, indent + "  ")}`,
    )
    .join("");
}

const billionLaughs = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<VirtualMachineSpec><Name>&lol9;</Name></VirtualMachineSpec>`;

const xxe = `<?xml version="1.0"?>
<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<VirtualMachineSpec><Description>&xxe;</Description></VirtualMachineSpec>`;

const quadratic = `<!DOCTYPE q [<!ENTITY a "${"x".repeat(50_000)}">]><VirtualMachineSpec><Name>${"&a;".repeat(50_000)}</Name></VirtualMachineSpec>`;

const cases: [string, string | Uint8Array, SpecErrorCode, "xml" | "json" | "yaml"][] = [
  ["billion laughs", billionLaughs, "doctype_forbidden", "xml"],
  ["external entity (XXE)", xxe, "doctype_forbidden", "xml"],
  ["quadratic blowup", quadratic.slice(0, 200_000), "doctype_forbidden", "xml"],
  [
    "entity used without a DOCTYPE",
    "<VirtualMachineSpec><Name>&lol;</Name></VirtualMachineSpec>",
    "undefined_entity",
    "xml",
  ],
  [
    "oversized document",
    `<VirtualMachineSpec><Description>${"a".repeat(300_000)}</Description></VirtualMachineSpec>`,
    "document_too_large",
    "xml",
  ],
  ["deep nesting", "<a>".repeat(50_000), "nesting_too_deep", "xml"],
  [
    "element flood",
    `<VirtualMachineSpec>${"<x/>".repeat(60_000)}</VirtualMachineSpec>`,
    "too_many_elements",
    "xml",
  ],
  [
    "attribute flood",
    `<VirtualMachineSpec>${'<Tags a="1"/>'.repeat(15_000)}</VirtualMachineSpec>`,
    "too_many_elements",
    "xml",
  ],
  [
    "overlong text",
    `<VirtualMachineSpec><Description>${"a".repeat(100_000)}</Description></VirtualMachineSpec>`,
    "text_too_long",
    "xml",
  ],
  [
    "overlong attribute",
    `<VirtualMachineSpec><Zone by="${"p".repeat(100_000)}">z</Zone></VirtualMachineSpec>`,
    "text_too_long",
    "xml",
  ],
  [
    "invalid UTF-8",
    Uint8Array.from([
      ...Buffer.from("<VirtualMachineSpec><Name>"),
      0xc3,
      0x28,
      ...Buffer.from("</Name></VirtualMachineSpec>"),
    ]),
    "invalid_utf8",
    "xml",
  ],
  ["overlong UTF-8 encoding", Uint8Array.from([0x3c, 0xc0, 0xbc]), "invalid_utf8", "xml"],
  ["lone surrogate", "<VirtualMachineSpec><Name>\ud800</Name></VirtualMachineSpec>", "invalid_utf8", "xml"],
  ["NUL byte", "<VirtualMachineSpec><Name>a\u0000b</Name></VirtualMachineSpec>", "nul_byte", "xml"],
  ["control character", "<VirtualMachineSpec><Name>a\u0001b</Name></VirtualMachineSpec>", "malformed", "xml"],
  [
    "character reference to NUL",
    "<VirtualMachineSpec><Name>&#0;</Name></VirtualMachineSpec>",
    "malformed",
    "xml",
  ],
  [
    "processing instruction flood",
    `<VirtualMachineSpec>${"<?x y?>".repeat(40_000)}</VirtualMachineSpec>`,
    "document_too_large",
    "xml",
  ],
  ["deep JSON", "[".repeat(200_000), "nesting_too_deep", "json"],
  [
    "deep JSON under the cap",
    `{"name": ${"[".repeat(100_000)}${"]".repeat(100_000)}}`,
    "nesting_too_deep",
    "json",
  ],
  [
    "YAML alias bomb",
    `a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n`,
    "unknown_field",
    "yaml",
  ],
  ["YAML alias where a value belongs", `name: &n x\ndescription: *n\n`, "wrong_type", "yaml"],
  ["deep YAML flow", `name: ${"[".repeat(60_000)}`, "nesting_too_deep", "yaml"],
  [
    "brackets in YAML comments and strings do not count",
    `# ${"[".repeat(500)}\nname: "${"{".repeat(500)}"\nrocket: 1\n`,
    "unknown_field",
    "yaml",
  ],
];

describe("hostile input", () => {
  for (const [name, input, code, format] of cases) {
    it(`${name} -> ${code}`, () => {
      const started = performance.now();
      const result = parseSpec(input, { format });
      const elapsed = performance.now() - started;
      expect(result.spec).toBeNull();
      expect(result.errors[0]?.code).toBe(code);
      expect(result.errors[0]!.line).toBeGreaterThanOrEqual(1);
      expect(elapsed).toBeLessThan(BOUND_MS);
    });
  }

  // Names from the document must never reach Object.prototype's members.
  const PROTOTYPE_NAMES = ["__proto__", "constructor", "toString", "valueOf", "hasOwnProperty"];

  it("reads elements and attributes named like Object.prototype members as unknown ones", () => {
    const elements = PROTOTYPE_NAMES.map((n) => `<${n}>1</${n}>`).join("");
    const attributes = PROTOTYPE_NAMES.map((n) => `${n}="x"`).join(" ");
    const result = parseSpec(
      `<VirtualMachineSpec>${elements}<Zone ${attributes} by="permalink">z</Zone><Resources>${elements}</Resources><Tags>${elements}</Tags></VirtualMachineSpec>`,
    );
    expect(result.errors).toEqual([]);
    expect(result.spec).toEqual({ zone: { permalink: "z" }, resources: {} });
    const warned = (code: string) => result.warnings.filter((w) => w.code === code).map((w) => w.path);
    expect(warned("unknown_element")).toEqual(
      ["", "/Resources", "/Tags"].flatMap((at) =>
        PROTOTYPE_NAMES.map((n) => `/VirtualMachineSpec${at}/${n}`),
      ),
    );
    expect(warned("unknown_attribute")).toHaveLength(PROTOTYPE_NAMES.length);
  });

  it.each(["json", "yaml"] as const)(
    "refuses %s keys named like Object.prototype members as unknown fields",
    (format) => {
      const keys = PROTOTYPE_NAMES.filter((n) => format === "yaml" || n !== "__proto__");
      const object = (inner: string) => Object.fromEntries(keys.map((k) => [k, inner]));
      const doc = { ...object("x"), resources: object("x"), zone: { ...object("x"), permalink: "z" } };
      const text = format === "json" ? JSON.stringify(doc) : yamlOf(doc);
      const result = parseSpec(text, { format });
      expect(result.spec).toBeNull();
      expect(result.errors.map((e) => e.code)).toEqual(Array(keys.length * 3).fill("unknown_field"));
    },
  );

  it("reads a YAML boolean named like an Object.prototype member as a wrong type", () => {
    const result = parseSpec("authorized_keys:\n  all_users: toString\n", { format: "yaml" });
    expect(result.errors[0]).toMatchObject({ code: "wrong_type" });
  });

  it("never expands an entity into the model or the error", () => {
    const result = parseSpec(billionLaughs);
    expect(JSON.stringify(result)).not.toContain("lollol");
  });
});
