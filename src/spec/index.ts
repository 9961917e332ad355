import { DataSpecReader } from "./data-reader.js";
import { writeJson, writeYaml } from "./data-writer.js";
import { decodeInput, DEFAULT_LIMITS, type SpecLimits } from "./limits.js";
import type { SpecFormat, VirtualMachineSpec } from "./model.js";
import { isSyntaxError, ROOT_PATH, SourceMap, type SpecError, type SpecWarning } from "./problems.js";
import { validateSpec } from "./validate.js";
import { XmlSpecReader } from "./xml-reader.js";
import { readXmlTree } from "./xml-tree.js";
import { writeXml } from "./xml-writer.js";

export * from "./model.js";
export * from "./problems.js";
export { canonical } from "./schema.js";
export { DEFAULT_LIMITS, type SpecLimits } from "./limits.js";
export { isValidHostname, sshKeyProblem, VALUE_RANGES } from "./validate.js";
export { writeXml, type XmlStyle } from "./xml-writer.js";
export { writeJson, writeYaml } from "./data-writer.js";

export interface SpecOptions {
  format?: SpecFormat;
  limits?: Partial<SpecLimits>;
}

export interface SpecResult {
  format: SpecFormat;
  /** The model, or null when the document could not be read. */
  spec: VirtualMachineSpec | null;
  errors: SpecError[];
  warnings: SpecWarning[];
  /** Where each element path was found, for callers that report their own located problems. */
  sources: SourceMap;
}

/** The format of a document: from a file name's extension when it has a known one, else from its first character. */
export function detectFormat(text: string, fileName?: string): SpecFormat {
  const extension = fileName?.toLowerCase().match(/\.(xml|json|ya?ml)$/)?.[1];
  if (extension) return extension.startsWith("y") ? "yaml" : (extension as SpecFormat);
  const first = text.replace(/^\uFEFF/, "").trimStart()[0];
  if (first === "<") return "xml";
  if (first === "{" || first === "[") return "json";
  return "yaml";
}

/**
 * Reads a spec document into the model. Only form is checked here (well-formedness,
 * limits, integers, `by=` values, JSON/YAML keys and types): see `checkSpec` for the rules.
 */
export function parseSpec(input: string | Uint8Array, options: SpecOptions = {}): SpecResult {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const decoded = decodeInput(input, limits);
  const sample = "text" in decoded ? decoded.text : "";
  const format = options.format ?? detectFormat(sample);
  if ("error" in decoded) return failed(format, decoded.error);
  const text = decoded.text;

  if (format === "xml") {
    const tree = readXmlTree(text, limits);
    if ("error" in tree) return failed(format, tree.error);
    if (tree.root.name !== "VirtualMachineSpec") {
      return failed(format, {
        line: tree.root.line,
        column: tree.root.column,
        path: `/${tree.root.name}`,
        code: "wrong_root_element",
        message: `the root element must be <VirtualMachineSpec>, not <${tree.root.name}>`,
      });
    }
    const reader = new XmlSpecReader();
    const spec = reader.spec(tree.root, ROOT_PATH);
    return { format, spec, errors: reader.errors, warnings: reader.warnings, sources: reader.sources };
  }

  const reader = new DataSpecReader(format, limits.maxDepth);
  const spec = reader.read(text);
  const readable = spec !== undefined && reader.errors.length === 0;
  return {
    format,
    spec: readable ? spec : null,
    errors: reader.errors,
    warnings: [],
    sources: reader.sources,
  };
}

/** Reads a spec and applies every structural rule, collecting all problems. */
export function checkSpec(
  input: string | Uint8Array,
  options: SpecOptions = {},
): SpecResult & { valid: boolean } {
  const result = parseSpec(input, options);
  // A document with form errors is not a usable model; only rule-level reader errors keep it.
  if (result.spec && !result.errors.some(isSyntaxError)) {
    for (const error of validateSpec(result.spec, result.sources)) result.errors.push(error);
    if (result.errors.length > 1) result.errors.sort((a, b) => a.line - b.line || a.column - b.column);
  } else {
    result.spec = null;
  }
  return Object.assign(result, { valid: result.errors.length === 0 });
}

/** Writes the model in the given form, as go-katapult would. */
export function writeSpec(spec: VirtualMachineSpec, format: SpecFormat): string {
  switch (format) {
    case "xml":
      return writeXml(spec, { style: "katapult", indent: "  ", declaration: true }) + "\n";
    case "json":
      return writeJson(spec) + "\n";
    case "yaml":
      return writeYaml(spec);
  }
}

function failed(format: SpecFormat, error: SpecError): SpecResult {
  return { format, spec: null, errors: [error], warnings: [], sources: new SourceMap() };
}
