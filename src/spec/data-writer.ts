import { Document, visit, type Scalar } from "yaml";
import type { VirtualMachineSpec } from "./model.js";
import { canonical } from "./schema.js";

export interface JsonStyle {
  /** Indent unit; absent = compact. */
  indent?: string;
  /** Written before every line but the first (Go's MarshalIndent prefix). */
  prefix?: string;
}

/**
 * JSON as go-katapult's encoder writes it: canonical key order, zero values omitted,
 * `<`, `>`, `&`, U+2028 and U+2029 escaped, Go's escapes for control characters.
 */
export function writeJson(spec: VirtualMachineSpec, style: JsonStyle = { indent: "  " }): string {
  return renderJson(canonical(spec), style);
}

export function renderJson(value: unknown, style: JsonStyle = { indent: "  " }): string {
  const indent = style.indent ?? "";
  const prefix = style.prefix ?? "";
  const pretty = indent !== "";
  const write = (v: unknown, depth: number): string => {
    if (typeof v === "string") return goJsonString(v);
    if (typeof v === "number" || typeof v === "boolean") return String(v);
    if (v === null || v === undefined) return "null";
    const open = Array.isArray(v) ? "[" : "{";
    const close = Array.isArray(v) ? "]" : "}";
    const entries = Array.isArray(v)
      ? v.map((item) => write(item, depth + 1))
      : Object.entries(v as Record<string, unknown>).map(
          ([k, item]) => `${goJsonString(k)}:${pretty ? " " : ""}${write(item, depth + 1)}`,
        );
    if (entries.length === 0) return open + close;
    if (!pretty) return open + entries.join(",") + close;
    const inner = "\n" + prefix + indent.repeat(depth + 1);
    return open + inner + entries.join("," + inner) + "\n" + prefix + indent.repeat(depth) + close;
  };
  return write(value, 0);
}

const SHORT_ESCAPES: Record<string, string> = {
  '"': '\\"',
  "\\": "\\\\",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
};

function goJsonString(text: string): string {
  // eslint-disable-next-line no-control-regex
  const escaped = text.replace(/["\\\u0000-\u001f<>&\u2028\u2029]/g, (c) => {
    const short = SHORT_ESCAPES[c];
    return short ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
  return `"${escaped}"`;
}

/**
 * YAML as go-katapult's yaml.v3 encoder writes it: 2-space indent, sequences indented
 * under their key, `{}` for an empty spec, strings plain when they can be, single-quoted
 * when plain is impossible, double-quoted when plain text would read as another type.
 */
export function writeYaml(spec: VirtualMachineSpec): string {
  return renderYaml(canonical(spec));
}

export function renderYaml(value: unknown): string {
  const document = new Document(value);
  visit(document, {
    Scalar(key, node: Scalar) {
      if (key === "key" || typeof node.value !== "string") return;
      if (readsAsOtherType(node.value) || awkwardBlock(node.value)) node.type = "QUOTE_DOUBLE";
    },
  });
  return document.toString({
    indent: 2,
    indentSeq: true,
    lineWidth: 0,
    singleQuote: true,
    flowCollectionPadding: false,
  });
}

const YAML_11_WORDS =
  /^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|null|Null|NULL|~)$/;
const NUMBER_LIKE =
  /^[-+]?(?:\.?[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|0x[0-9a-fA-F_]+|0o?[0-7_]+|0b[01_]+|\.inf|\.Inf|\.INF|\.nan|\.NaN|\.NAN)$/;

/** Multi-line text whose edges are whitespace does not survive a block scalar; quote it instead. */
function awkwardBlock(text: string): boolean {
  return /[\n\r]/.test(text) && /^\s|\s$/.test(text);
}

function readsAsOtherType(text: string): boolean {
  return text === "" || YAML_11_WORDS.test(text) || NUMBER_LIKE.test(text);
}
