import { ApiError } from "../errors.js";

/**
 * Bounds on the shape of a JSON body's arguments, checked once it is parsed and before
 * anything walks it recursively (argument merging, the idempotency fingerprint). The
 * walk here keeps its own stack, so a body nested thousands deep costs a loop, not the
 * call stack. Every argument of the Katapult API fits well inside them.
 */
export interface JsonLimits {
  /** Objects and arrays inside one another. */
  depth: number;
  /** Elements of one array. */
  arrayLength: number;
  /** Keys of one object. */
  keys: number;
  /** Values in the whole body. */
  values: number;
}

export const JSON_LIMITS: JsonLimits = { depth: 32, arrayLength: 10_000, keys: 1_000, values: 100_000 };

/**
 * A JSON body's arguments, or the error to answer with. The error is returned, not
 * thrown: a body parser's error makes Fastify close the connection, and a body that was
 * read to its end leaves the connection fit for the next request.
 */
export function readJsonBody(text: string): unknown {
  if (text.trim() === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return new ApiError("invalid_json_body", { details: (error as Error).message });
  }
  const passed = jsonLimitPassed(parsed);
  return passed === null ? parsed : new ApiError("invalid_json_body", { details: passed });
}

/** What of `limits` the value passes, said for its client (null: within them all). */
export function jsonLimitPassed(value: unknown, limits: JsonLimits = JSON_LIMITS): string | null {
  const stack: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  let values = 0;
  while (stack.length > 0) {
    const next = stack.pop()!;
    if (++values > limits.values) return `the body holds more than ${limits.values} values`;
    if (next.value === null || typeof next.value !== "object") continue;
    const depth = next.depth + 1;
    if (depth > limits.depth) return `the body nests objects and arrays deeper than ${limits.depth} levels`;
    if (Array.isArray(next.value)) {
      if (next.value.length > limits.arrayLength)
        return `an array of the body has more than ${limits.arrayLength} elements`;
      for (const element of next.value) stack.push({ value: element, depth });
    } else {
      const children = Object.values(next.value);
      if (children.length > limits.keys) return `an object of the body has more than ${limits.keys} keys`;
      for (const child of children) stack.push({ value: child, depth });
    }
  }
  return null;
}
