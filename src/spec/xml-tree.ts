import { SaxesParser } from "saxes";
import type { SpecLimits } from "./limits.js";
import type { SpecError } from "./problems.js";

/** One element of the document, with where its start tag begins. */
export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  /** The attributes' names in document order (the reader need not enumerate them again). */
  attributeNames: readonly string[];
  children: XmlElement[];
  /** Character data directly inside the element, joined across comments and CDATA. */
  text: string;
  /** Whether `text` has anything but whitespace (known without flattening a joined text). */
  hasText: boolean;
  line: number;
  column: number;
}

class Stop extends Error {}

/**
 * Reads XML text into an element tree with a strict, non-validating parser:
 * no DOCTYPE at all (so no entity definitions, no XXE, no entity expansion), only the
 * five predefined entities and character references, and caps on depth, element count
 * and text length. Stops at the first error, as libxml2 does with FATAL errors.
 */
export function readXmlTree(text: string, limits: SpecLimits): { root: XmlElement } | { error: SpecError } {
  const parser = new SaxesParser({ position: true });
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  let rootClosed = false;
  let elementCount = 0;
  let error: SpecError | undefined;
  let startLine = 1;
  let startColumn = 1;
  let attributeNames: string[] | undefined;
  let lastClosed: string | undefined;

  const fail = (
    code: SpecError["code"],
    message: string,
    line = parser.line,
    column = parser.column,
  ): never => {
    error = { line, column: Math.max(column, 1), path: pathOf(stack), code, message };
    throw new Stop();
  };

  // saxes stores handlers with keyed property stores, and past seven of them V8 turns the
  // parser into a dictionary-mode object, which parses ~5x slower. So saxes throws its
  // errors (no "error" handler), and the XML declaration is read from `xmlDecl` (no
  // "xmldecl" handler): it can only come first, so its encoding is checked at the next
  // thing the reader sees (a DOCTYPE, the root element, or an error).
  let encodingChecked = false;
  const checkEncoding = () => {
    if (encodingChecked) return;
    encodingChecked = true;
    const encoding = parser.xmlDecl.encoding;
    if (encoding !== undefined && encoding.toLowerCase() !== "utf-8") {
      fail("unsupported_encoding", `encoding "${encoding}" declared but only UTF-8 is supported`, 1, 1);
    }
  };
  const saxesError = (e: Error): void => {
    if (rootClosed) return; // like go-katapult, only the first root element is read
    if (!root) checkEncoding();
    const message = e.message.replace(/^\d+:\d+: /, "");
    if (!root && message.includes("root element")) {
      // No start tag at all is an empty document; a start tag that never completed is malformed.
      if (!/<[A-Za-z_:]/.test(text)) fail("empty_document", "the document has no root element");
      fail("malformed", "unexpected end of document inside a start tag");
    }
    if (message.startsWith("unexpected close tag") && lastClosed) {
      fail("malformed", `element <${lastClosed}> closed by a different end tag`);
    }
    if (message.startsWith("undefined entity"))
      fail(
        "undefined_entity",
        `undefined entity (only &amp; &lt; &gt; &apos; &quot; and character references are allowed)`,
      );
    fail("malformed", message);
  };
  parser.on("doctype", () => {
    checkEncoding(); // the declaration came first
    fail("doctype_forbidden", "a DOCTYPE is not allowed in a spec document");
  });
  parser.on("opentagstart", (tag) => {
    if (rootClosed) return;
    startLine = parser.line;
    // saxes reports the column after the character that ended the name.
    startColumn = parser.column - tag.name.length - 1;
    attributeNames = undefined;
    if (!root) checkEncoding();
    if (++elementCount > limits.maxElements) {
      fail(
        "too_many_elements",
        `the document has more than ${limits.maxElements} elements`,
        startLine,
        startColumn,
      );
    }
    if (stack.length + 1 > limits.maxDepth) {
      fail(
        "nesting_too_deep",
        `elements are nested deeper than ${limits.maxDepth} levels`,
        startLine,
        startColumn,
      );
    }
  });
  parser.on("opentag", (tag) => {
    if (rootClosed) return;
    // Without namespace processing saxes gives attribute values as plain strings.
    const attributes = tag.attributes as Record<string, string>;
    const element: XmlElement = {
      name: tag.name,
      attributes,
      attributeNames: attributeNames ?? NO_NAMES,
      children: [],
      text: "",
      hasText: false,
      line: startLine,
      column: startColumn,
    };
    const parent = stack[stack.length - 1];
    if (parent) parent.children.push(element);
    else root = element;
    stack.push(element);
  });
  // Names as they come, so the element need not enumerate saxes's attribute object (a
  // dictionary, slow to enumerate).
  parser.on("attribute", (attribute) => {
    if (rootClosed) return;
    if (attribute.value.length > limits.maxTextLength) {
      fail("text_too_long", `attribute ${attribute.name} is longer than ${limits.maxTextLength} characters`);
    }
    (attributeNames ??= []).push(attribute.name);
  });
  const appendText = (data: string) => {
    const current = stack[stack.length - 1];
    if (!current) return;
    current.text += data;
    if (!current.hasText && !isBlank(data)) current.hasText = true;
    if (current.text.length > limits.maxTextLength) {
      fail(
        "text_too_long",
        `text inside <${current.name}> is longer than ${limits.maxTextLength} characters`,
      );
    }
  };
  parser.on("text", appendText);
  parser.on("cdata", appendText);
  parser.on("closetag", () => {
    lastClosed = stack.pop()?.name;
    if (stack.length === 0 && root) rootClosed = true;
  });

  try {
    parser.write(text).close();
  } catch (e) {
    if (isSaxesError(e)) {
      try {
        saxesError(e);
      } catch (stop) {
        if (!(stop instanceof Stop)) throw stop;
      }
    } else if (!(e instanceof Stop)) throw e;
  }
  if (error) return { error };
  if (!root) {
    return {
      error: {
        line: parser.line,
        column: Math.max(parser.column, 1),
        path: "",
        code: "empty_document",
        message: "the document has no root element",
      },
    };
  }
  return { root };
}

const NO_NAMES: readonly string[] = [];

const NOT_BLANK = /\S/;

/** Whether the text is all whitespace (as `\s` means it), without a regular expression for plain ASCII. */
function isBlank(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0x20 || (code >= 0x09 && code <= 0x0d)) continue;
    return code < 0x80 ? false : !NOT_BLANK.test(text.slice(i));
  }
  return true;
}

/** An error saxes raised about the document (a plain Error whose message starts `line:column: `). */
function isSaxesError(e: unknown): e is Error {
  return e instanceof Error && e.constructor === Error && /^\d+:\d+: /.test(e.message);
}

function pathOf(stack: readonly XmlElement[]): string {
  return stack.length === 0 ? "" : "/" + stack.map((e) => e.name).join("/");
}
