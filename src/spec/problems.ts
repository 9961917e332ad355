/** Located problems found in a spec document: errors stop a build, warnings do not. */

export type SpecErrorCode =
  // the document cannot be read at all (400 invalid_spec_xml through the API)
  | "malformed"
  | "empty_document"
  | "invalid_utf8"
  | "nul_byte"
  | "document_too_large"
  | "nesting_too_deep"
  | "too_many_elements"
  | "text_too_long"
  | "doctype_forbidden"
  | "undefined_entity"
  | "unsupported_encoding"
  | "wrong_root_element"
  | "unsupported_lookup"
  | "invalid_integer"
  | "integer_out_of_range"
  | "unknown_field"
  | "wrong_type"
  | "duplicate_key"
  // the document reads, but its values break a structural rule (422 validation_error)
  | "duplicate_element"
  | "conflicting_elements"
  | "missing_element"
  | "missing_attribute"
  | "empty_lookup"
  | "ambiguous_lookup"
  | "invalid_value"
  | "out_of_range"
  | "invalid_hostname"
  | "invalid_ssh_key";

export type SpecWarningCode = "unknown_element" | "unknown_attribute" | "unexpected_text" | "ignored_value";

export interface SpecProblem<Code extends string = SpecErrorCode> {
  line: number;
  column: number;
  /** Element path such as `/VirtualMachineSpec/NetworkInterfaces/NetworkInterface[2]/IPAddressAllocation[1]/Version`. */
  path: string;
  code: Code;
  message: string;
}

export type SpecError = SpecProblem<SpecErrorCode>;
export type SpecWarning = SpecProblem<SpecWarningCode>;

/** Codes that mean the text could not be read into a model; everything else is a rule on a readable model. */
const SYNTAX_CODES: ReadonlySet<SpecErrorCode> = new Set<SpecErrorCode>([
  "malformed",
  "empty_document",
  "invalid_utf8",
  "nul_byte",
  "document_too_large",
  "nesting_too_deep",
  "too_many_elements",
  "text_too_long",
  "doctype_forbidden",
  "undefined_entity",
  "unsupported_encoding",
  "wrong_root_element",
  "unsupported_lookup",
  "invalid_integer",
  "integer_out_of_range",
  "unknown_field",
  "wrong_type",
  "duplicate_key",
]);

export function isSyntaxError(problem: SpecError): boolean {
  return SYNTAX_CODES.has(problem.code);
}

export interface Position {
  line: number;
  column: number;
}

export const ROOT_PATH = "/VirtualMachineSpec";

/**
 * Where each model path was found in the source text. Validation works on the model
 * and looks positions up here, so XML, JSON and YAML report errors the same way.
 */
export class SourceMap {
  // Positions are looked up only when something is wrong: record them in order, and
  // index them (hashing every path) on the first lookup.
  private readonly paths: string[] = [];
  private readonly recorded: Position[] = [];
  private index: Map<string, Position> | undefined;

  /** Records where a path begins; the first position recorded for a path stays. */
  set(path: string, position: Position): void {
    this.paths.push(path);
    this.recorded.push(position);
    if (this.index && !this.index.has(path)) this.index.set(path, position);
  }

  /** The position of the path, or of its nearest recorded ancestor. */
  get(path: string): Position {
    if (!this.index) {
      this.index = new Map();
      this.paths.forEach((recordedPath, i) => {
        if (!this.index!.has(recordedPath)) this.index!.set(recordedPath, this.recorded[i]!);
      });
    }
    let current = path;
    for (;;) {
      // A copy: what was recorded may be a larger object that carries a position (an XML element).
      const found = this.index.get(current);
      if (found) return { line: found.line, column: found.column };
      const cut = current.lastIndexOf("/");
      if (cut <= 0) return { line: 1, column: 1 };
      current = current.slice(0, cut);
    }
  }
}

/** The `invalid_spec_xml` detail string: one `line:column: FATAL: message` line per problem. */
export function formatSyntaxErrors(errors: readonly SpecError[]): string {
  return errors.map((e) => `${e.line}:${e.column}: FATAL: ${e.message}`).join("\n");
}
