import qs from "qs";
import { invalidArgument, missingArgument } from "../errors.js";

/**
 * The arguments of one request as Apia reads them: the query string (Rack bracket
 * notation) deep-merged with a JSON object body, the body winning on conflicts.
 * Typed readers turn hostile input into `400 invalid_argument` / `missing_required_argument`.
 */
export type ArgumentValue =
  string | number | boolean | null | ArgumentValue[] | { [key: string]: ArgumentValue };
export type ArgumentBag = Record<string, ArgumentValue>;

const QUERY_LIMITS = {
  depth: 4,
  arrayLimit: 100,
  parameterLimit: 200,
  allowPrototypes: false,
  plainObjects: true,
};

/**
 * The one shape nearly every lookup sends (`virtual_machine_build[id]=vmbuild_...`): a
 * single `name[key]=value` pair with nothing to decode. It skips qs's generality, which
 * is a tenth of a GET's cost; anything else goes to qs, which gives the same result.
 */
const SINGLE_LOOKUP = /^([a-z][a-z0-9_]*)\[([a-z][a-z0-9_]*)\]=([A-Za-z0-9_.~-]*)$/;

export function parseQuery(query: string): ArgumentBag {
  if (query === "") return Object.create(null) as ArgumentBag;
  const single = SINGLE_LOOKUP.exec(query);
  if (single) {
    const inner = Object.create(null) as ArgumentBag;
    inner[single[2]!] = single[3]!;
    const bag = Object.create(null) as ArgumentBag;
    bag[single[1]!] = inner;
    return bag;
  }
  return qs.parse(query, QUERY_LIMITS) as unknown as ArgumentBag;
}

export function mergeArguments(query: ArgumentBag, body: unknown): ArgumentBag {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return query;
  return deepMerge(query, body as ArgumentBag);
}

/**
 * A NUL character anywhere in the arguments or the path: never part of a real value,
 * and PostgreSQL cannot store one in text, so it is refused before any lookup. Walked
 * without recursion (the body's shape limits bound the work).
 */
export function nulCharacterRefusal(
  args: ArgumentBag,
  segments: Record<string, string>,
  documentArgument?: string,
) {
  for (const [name, value] of Object.entries(segments))
    if (value.includes("\u0000")) return invalidArgument([name], "parse_error", [NUL_MESSAGE]);
  // A document's own reader says where in it a NUL is (line and column).
  const checked =
    documentArgument && typeof args[documentArgument] === "string"
      ? Object.fromEntries(Object.entries(args).filter(([name]) => name !== documentArgument))
      : args;
  const pending: [string[], ArgumentValue][] = [[[], checked]];
  while (pending.length > 0) {
    const [path, value] = pending.pop()!;
    if (typeof value === "string") {
      if (value.includes("\u0000")) return invalidArgument(path, "parse_error", [NUL_MESSAGE]);
    } else if (Array.isArray(value)) {
      value.forEach((item, index) => pending.push([[...path, String(index)], item]));
    } else if (value !== null && typeof value === "object") {
      for (const [key, item] of Object.entries(value)) {
        if (key.includes("\u0000")) return invalidArgument(path, "parse_error", [NUL_MESSAGE]);
        pending.push([[...path, key], item]);
      }
    }
  }
  return undefined;
}

const NUL_MESSAGE = "NUL characters are not allowed in arguments";

function isObject(value: unknown): value is Record<string, ArgumentValue> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function deepMerge(base: ArgumentBag, over: ArgumentBag): ArgumentBag {
  const out: ArgumentBag = Object.assign(Object.create(null) as ArgumentBag, base);
  for (const [key, value] of Object.entries(over)) {
    if (key === "__proto__" || key === "constructor" || key === "prototype") continue;
    const existing = out[key];
    out[key] = isObject(existing) && isObject(value) ? deepMerge(existing, value) : value;
  }
  return out;
}

export interface LookupResult<K extends string> {
  key: K;
  value: string;
}

/**
 * Reads a lookup argument (`organization[id]=...`). When the request has none, the
 * path segment names the lookup's first field (`/tasks/task_abc` = `task[id]=task_abc`);
 * `_`, the placeholder word and `:word` name nothing, so they fall through to a lookup
 * of that literal text, which finds nothing.
 */
export function lookupArgument<K extends string>(
  args: ArgumentBag,
  name: string,
  keys: readonly K[],
  segment?: string,
): LookupResult<K> | undefined {
  const raw = args[name];
  if (raw === undefined || raw === null) {
    if (segment === undefined) return undefined;
    return { key: keys[0]!, value: segment };
  }
  if (!isObject(raw)) throw invalidArgument([name], "object_expected");
  const given = keys.filter((k) => raw[k] !== undefined && raw[k] !== null && raw[k] !== "");
  const unknown = Object.keys(raw).filter((k) => !(keys as readonly string[]).includes(k));
  if (unknown.length > 0)
    throw invalidArgument([name, unknown[0]!], "invalid_scalar", [`unknown lookup key ${unknown[0]}`]);
  if (given.length === 0) throw invalidArgument([name], "missing_lookup_value");
  if (given.length > 1) throw invalidArgument([name], "ambiguous_lookup_values");
  const key = given[0]!;
  const value = raw[key];
  if (typeof value !== "string") {
    if (typeof value === "number" && Number.isFinite(value)) return { key, value: String(value) };
    throw invalidArgument([name, key], "invalid_scalar");
  }
  return { key, value };
}

export function requireLookup<K extends string>(
  args: ArgumentBag,
  name: string,
  keys: readonly K[],
  segment?: string,
): LookupResult<K> {
  const found = lookupArgument(args, name, keys, segment);
  if (!found) throw missingArgument([name]);
  return found;
}

export function stringArgument(
  args: ArgumentBag,
  name: string,
  options: { maxLength?: number } = {},
): string | undefined {
  const value = args[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw invalidArgument([name], "invalid_scalar");
  if (options.maxLength !== undefined && value.length > options.maxLength) {
    throw invalidArgument([name], "validation_errors", [`longer than ${options.maxLength} characters`]);
  }
  return value;
}

/** A nested object argument (`properties`), or undefined when absent. */
export function objectArgument(args: ArgumentBag, name: string): ArgumentBag | undefined {
  const value = args[name];
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw invalidArgument([name], "object_expected");
  return value;
}

/** An array of strings (`tag_names`), each at most `maxLength` long. */
export function stringListArgument(
  args: ArgumentBag,
  name: string,
  options = { maxItems: 50, maxLength: 255 },
): string[] | undefined {
  const value = args[name];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw invalidArgument([name], "array_expected");
  if (value.length > options.maxItems)
    throw invalidArgument([name], "validation_errors", [`at most ${options.maxItems} items`]);
  return value.map((item, index) => {
    if (typeof item !== "string") throw invalidArgument([name], "invalid_scalar", [], index);
    if (item.length === 0 || item.length > options.maxLength)
      throw invalidArgument([name], "validation_errors", [`1 to ${options.maxLength} characters`], index);
    return item;
  });
}

export function requireString(args: ArgumentBag, name: string, options: { maxLength?: number } = {}): string {
  const value = stringArgument(args, name, options);
  if (value === undefined) throw missingArgument([name]);
  return value;
}

export function integerArgument(
  args: ArgumentBag,
  name: string,
  path: string[] = [name],
): number | undefined {
  const value = args[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value === "number" && Number.isSafeInteger(value)) return value;
  if (typeof value === "string" && /^-?[0-9]{1,15}$/.test(value)) return Number(value);
  throw invalidArgument(path, typeof value === "string" ? "parse_error" : "invalid_scalar");
}

const TRUE_WORDS = new Set<ArgumentValue>([true, "true", "yes", 1, "1"]);
const FALSE_WORDS = new Set<ArgumentValue>([false, "false", "no", 0, "0"]);

export function booleanArgument(args: ArgumentBag, name: string): boolean | undefined {
  const value = args[name];
  if (value === undefined || value === null) return undefined;
  if (TRUE_WORDS.has(value)) return true;
  if (FALSE_WORDS.has(value)) return false;
  throw invalidArgument([name], "invalid_scalar");
}

export function enumArgument<T extends string>(
  args: ArgumentBag,
  name: string,
  allowed: readonly T[],
): T | undefined {
  const value = stringArgument(args, name);
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw invalidArgument([name], "invalid_enum_value");
  return value as T;
}

export interface KeyValue {
  key: string;
  value: string;
}

/** `annotations` as an array of {key, value}: the only shape accepted. */
export function keyValueArray(
  args: ArgumentBag,
  name: string,
  options = { maxItems: 50, maxLength: 255 },
): KeyValue[] {
  const value = args[name];
  if (value === undefined || value === null) return [];
  const items = Array.isArray(value) ? value : isObject(value) ? Object.values(value) : undefined;
  if (!items) throw invalidArgument([name], "array_expected");
  if (items.length > options.maxItems) {
    throw invalidArgument([name], "validation_errors", [`at most ${options.maxItems} items`]);
  }
  return items.map((item, index) => {
    if (!isObject(item)) throw invalidArgument([name], "object_expected", [], index);
    const key = item.key;
    const v = item.value ?? "";
    if (typeof key !== "string" || key === "")
      throw invalidArgument(
        [name, "key"],
        key === undefined ? "missing_lookup_value" : "invalid_scalar",
        [],
        index,
      );
    if (typeof v !== "string") throw invalidArgument([name, "value"], "invalid_scalar", [], index);
    if (key.length > options.maxLength || v.length > options.maxLength) {
      throw invalidArgument(
        [name],
        "validation_errors",
        [`keys and values are at most ${options.maxLength} characters`],
        index,
      );
    }
    return { key, value: v };
  });
}

export interface Page {
  page: number;
  perPage: number;
}

export function pagination(args: ArgumentBag): Page {
  const page = integerArgument(args, "page") ?? 1;
  const perPage = integerArgument(args, "per_page") ?? 30;
  if (page < 1) throw invalidArgument(["page"], "validation_errors", ["greater_than_zero"]);
  if (perPage < 1 || perPage > 200)
    throw invalidArgument(["per_page"], "validation_errors", ["between 1 and 200"]);
  return { page, perPage };
}

export interface PaginationObject {
  current_page: number;
  total_pages: number | null;
  total: number | null;
  per_page: number;
  large_set: boolean;
}

export function paginationObject(page: Page, total: number): PaginationObject {
  return {
    current_page: page.page,
    total_pages: Math.max(1, Math.ceil(total / page.perPage)),
    total,
    per_page: page.perPage,
    large_set: false,
  };
}
