import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, type Scalar } from "yaml";
import { LOOKUP_KINDS, type VirtualMachineSpec } from "./model.js";
import { field, SPEC_SCHEMA, str, type Field, type FieldType } from "./schema.js";
import { DEFAULT_LIMITS } from "./limits.js";
import { ROOT_PATH, SourceMap, type SpecError } from "./problems.js";

// A Map: the words come from the document, and "toString" must not find Object.prototype's.
const YAML_BOOLEANS = new Map<string, boolean>();
for (const word of ["y", "yes", "true", "on"]) for (const w of variants(word)) YAML_BOOLEANS.set(w, true);
for (const word of ["n", "no", "false", "off"]) for (const w of variants(word)) YAML_BOOLEANS.set(w, false);

function variants(word: string): string[] {
  return [word, word[0]!.toUpperCase() + word.slice(1), word.toUpperCase()];
}

function joinPath(base: string, element: string): string {
  return element === "" ? base : `${base}/${element}`;
}

/** Reads the JSON or YAML form into the model; unknown keys and wrong types are errors, as in go-katapult. */
export class DataSpecReader {
  readonly errors: SpecError[] = [];
  readonly sources = new SourceMap();
  private readonly lines = new LineCounter();

  constructor(
    private readonly format: "json" | "yaml",
    private readonly maxDepth = DEFAULT_LIMITS.maxDepth,
  ) {}

  read(text: string): VirtualMachineSpec | undefined {
    return this.readAs(text, SPEC_SCHEMA, ROOT_PATH) as VirtualMachineSpec | undefined;
  }

  /** Reads a document holding one value of the given type (a whole spec, or a fragment in tests). */
  readAs(text: string, type: FieldType, rootPath: string): unknown {
    if (text.trim() === "") {
      this.errors.push({
        line: 1,
        column: 1,
        path: "",
        code: "empty_document",
        message: "the document is empty",
      });
      return undefined;
    }
    const depth = flowDepth(text, this.maxDepth);
    if (depth > this.maxDepth) {
      this.errors.push({
        ...positionIn(text, depth),
        path: "",
        code: "nesting_too_deep",
        message: `brackets are nested deeper than ${this.maxDepth} levels`,
      });
      return undefined;
    }
    if (this.format === "json") {
      try {
        JSON.parse(text);
      } catch (e) {
        const message = (e as Error).message;
        const at = /position (\d+)/.exec(message);
        const offset = at ? Number(at[1]) : text.length;
        this.errors.push({ ...positionIn(text, offset), path: "", code: "malformed", message });
        return undefined;
      }
    }
    let document;
    try {
      document = parseDocument(text, {
        lineCounter: this.lines,
        uniqueKeys: true,
        intAsBigInt: true,
        prettyErrors: false,
        strict: true,
      });
    } catch (e) {
      // A parser can only throw here on pathological nesting (stack exhaustion).
      const message = e instanceof RangeError ? "the document is nested too deeply" : String(e);
      this.errors.push({ line: 1, column: 1, path: "", code: "nesting_too_deep", message });
      return undefined;
    }
    const fatal = document.errors[0];
    if (fatal) {
      const [line, column] = fatal.linePos ? [fatal.linePos[0].line, fatal.linePos[0].col] : [1, 1];
      const code = fatal.code === "DUPLICATE_KEY" ? "duplicate_key" : "malformed";
      this.errors.push({ line, column, path: "", code, message: fatal.message.split("\n")[0]! });
      return undefined;
    }
    const contents = document.contents;
    if (contents === null || (isScalar(contents) && contents.value === null)) return {};
    return this.value(contents, type, rootPath, "spec") ?? {};
  }

  private value(node: Node, type: FieldType, path: string, key: string): unknown {
    this.sources.set(path, this.position(node));
    if (isScalar(node) && node.value === null) return undefined;
    switch (type.kind) {
      case "string":
        return this.string(node, path, key);
      case "int":
        return this.integer(node, path, key);
      case "bool":
        return this.boolean(node, path, key);
      case "lookup": {
        const keys = LOOKUP_KINDS[type.lookup] as readonly string[];
        const fields = Object.fromEntries(keys.map((k) => [k, field(str, "")]));
        return this.object(node, fields, path, key);
      }
      case "object":
        return this.object(node, type.fields, path, key);
      case "list": {
        if (!isSeq(node)) return this.wrongType(node, path, `${key} must be a list`);
        const items: unknown[] = [];
        node.items.forEach((item, i) => {
          const itemPath = `${path}/${type.itemElement}[${i + 1}]`;
          if (!item || typeof item !== "object" || !("range" in item)) return;
          const value = this.value(item as Node, type.item, itemPath, key);
          items.push(value === undefined && type.item.kind === "string" ? "" : (value ?? {}));
        });
        return items.length > 0 ? items : undefined;
      }
    }
  }

  private object(node: Node, fields: Record<string, Field>, path: string, key: string): object | undefined {
    if (!isMap(node)) return this.wrongType(node, path, `${key} must be an object`);
    const result: Record<string, unknown> = {};
    for (const pair of node.items) {
      const keyNode = pair.key as Node | null;
      const name = isScalar(keyNode) ? String(keyNode.value) : "";
      // Own fields only: a key such as "constructor" is unknown, not Object.prototype's.
      const spec = Object.hasOwn(fields, name) ? fields[name] : undefined;
      if (!spec) {
        this.errors.push({
          ...this.position(keyNode ?? node),
          path,
          code: "unknown_field",
          message: `unknown field "${name}"`,
        });
        continue;
      }
      if (!pair.value) continue;
      const value = this.value(pair.value as Node, spec.type, joinPath(path, spec.element), name);
      if (!isZero(value)) result[name] = value;
    }
    // A template option always has its key and value, even when empty.
    if (fields.key && fields.value) {
      result.key ??= "";
      result.value ??= "";
    }
    return result;
  }

  private string(node: Node, path: string, key: string): string | undefined {
    if (!isScalar(node)) return this.wrongType(node, path, `${key} must be a string`);
    if (typeof node.value === "string") return node.value;
    // yaml.v3 copies the literal text of any scalar into a string field (`name: 42` gives "42").
    if (this.format === "yaml") return (node as Scalar).source ?? String(node.value);
    return this.wrongType(node, path, `${key} must be a string, got ${describe(node.value)}`);
  }

  private integer(node: Node, path: string, key: string): number | undefined {
    if (!isScalar(node) || typeof node.value !== "bigint") {
      const got = isScalar(node) ? describe(node.value) : "a collection";
      return this.wrongType(node, path, `${key} must be an integer, got ${got}`);
    }
    if (node.value < -(2n ** 63n) || node.value > 2n ** 63n - 1n) {
      this.errors.push({
        ...this.position(node),
        path,
        code: "integer_out_of_range",
        message: `${key} is out of range: ${node.value}`,
      });
      return undefined;
    }
    return Number(node.value);
  }

  private boolean(node: Node, path: string, key: string): boolean | undefined {
    if (isScalar(node) && typeof node.value === "boolean") return node.value;
    if (this.format === "yaml" && isScalar(node) && node.type === "PLAIN" && typeof node.value === "string") {
      const word = YAML_BOOLEANS.get(node.value);
      if (word !== undefined) return word;
    }
    return this.wrongType(node, path, `${key} must be a boolean`);
  }

  private wrongType(node: Node, path: string, message: string): undefined {
    this.errors.push({ ...this.position(node), path, code: "wrong_type", message });
    return undefined;
  }

  private position(node: Node): { line: number; column: number } {
    const offset = node.range?.[0] ?? 0;
    const { line, col } = this.lines.linePos(offset);
    return { line, column: col };
  }
}

/**
 * How deeply `[` and `{` nest outside quoted strings and comments; returns the offset
 * of the first bracket past `max` (a number above `max`), else the depth reached. Run
 * before parsing so that no parser recurses through a hostile document.
 */
function flowDepth(text: string, max: number): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"' || c === "'") {
      for (i++; i < text.length && text[i] !== c; i++) if (c === '"' && text[i] === "\\") i++;
    } else if (c === "#" && (i === 0 || /\s/.test(text[i - 1]!))) {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (c === "[" || c === "{") {
      if (++depth > max) return Math.max(i, max + 1);
      deepest = Math.max(deepest, depth);
    } else if (c === "]" || c === "}") {
      depth--;
    }
  }
  return deepest;
}

function isZero(value: unknown): boolean {
  return value === undefined || value === 0 || value === "" || value === false;
}

function describe(value: unknown): string {
  if (typeof value === "string") return `the string "${value}"`;
  if (typeof value === "number") return `the number ${value}`;
  if (typeof value === "bigint") return `the number ${value}`;
  return String(value);
}

function positionIn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      start = i + 1;
    }
  }
  return { line, column: offset - start + 1 };
}
