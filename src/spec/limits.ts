import type { SpecError } from "./problems.js";

/** Caps that bound the time and memory a hostile document can cost. */
export interface SpecLimits {
  /** Largest document, in bytes of UTF-8. */
  maxBytes: number;
  /** Deepest element nesting (the root is depth 1). */
  maxDepth: number;
  /** Most elements in one document. */
  maxElements: number;
  /** Longest text value or attribute value, in characters. */
  maxTextLength: number;
}

export const DEFAULT_LIMITS: SpecLimits = {
  maxBytes: 256 * 1024,
  maxDepth: 16,
  maxElements: 10_000,
  maxTextLength: 16 * 1024,
};

const fatalDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

function at(line: number, column: number, code: SpecError["code"], message: string): SpecError {
  return { line, column, path: "", code, message };
}

function positionOf(text: string, index: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < index; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: index - lineStart + 1 };
}

/** Where the first byte of invalid UTF-8 sits, as line:column of the valid text before it. */
function invalidUtf8Error(bytes: Uint8Array): SpecError {
  let lo = 0;
  let hi = bytes.length;
  // The longest valid prefix, found by bisection: decoding is linear, so this stays O(n log n).
  while (hi - lo > 4) {
    const mid = (lo + hi) >>> 1;
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, mid), { stream: true });
      lo = mid;
    } catch {
      hi = mid;
    }
  }
  const prefix = new TextDecoder("utf-8").decode(bytes.subarray(0, lo));
  const { line, column } = positionOf(prefix, prefix.length);
  return at(line, column, "invalid_utf8", "the document is not valid UTF-8");
}

/**
 * Turns raw input into text, or says why it cannot be read: over the size cap,
 * invalid UTF-8 (or lone surrogates in an already decoded string), NUL bytes.
 */
export function decodeInput(
  input: string | Uint8Array,
  limits: SpecLimits,
): { text: string } | { error: SpecError } {
  let text: string;
  if (typeof input === "string") {
    // A string's UTF-8 size is at most 3 bytes per UTF-16 unit; only count exactly when near the cap.
    if (input.length * 3 > limits.maxBytes && Buffer.byteLength(input, "utf8") > limits.maxBytes) {
      return { error: tooLarge(limits) };
    }
    const lone = firstLoneSurrogate(input);
    if (lone >= 0) {
      const { line, column } = positionOf(input, lone);
      return { error: at(line, column, "invalid_utf8", "the document contains a lone UTF-16 surrogate") };
    }
    text = input;
  } else {
    if (input.byteLength > limits.maxBytes) return { error: tooLarge(limits) };
    try {
      text = fatalDecoder.decode(input);
    } catch {
      return { error: invalidUtf8Error(input) };
    }
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const nul = text.indexOf("\u0000");
  if (nul >= 0) {
    const { line, column } = positionOf(text, nul);
    return { error: at(line, column, "nul_byte", "the document contains a NUL character") };
  }
  return { text };
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function firstLoneSurrogate(text: string): number {
  return text.search(LONE_SURROGATE);
}

function tooLarge(limits: SpecLimits): SpecError {
  return at(1, 1, "document_too_large", `the document is larger than ${limits.maxBytes} bytes`);
}
