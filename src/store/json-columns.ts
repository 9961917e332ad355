/**
 * Lists and small documents live in text columns as JSON (`*_json`), the same on SQLite
 * and PostgreSQL. Each such column has one codec, declared once by the module that owns
 * what it holds, and every write and read of the column goes through it: the column's
 * type is written in one place, not recalled by a cast wherever it is read.
 */
export interface JsonColumn<T> {
  /** `table.column`, for messages. */
  readonly column: string;
  encode(value: T): string;
  decode(text: string): T;
}

/** A column whose stored text is malformed: the store was written by something else. */
export class CorruptColumn extends Error {}

export function jsonColumn<T>(column: string, check: (value: unknown) => value is T): JsonColumn<T> {
  return {
    column,
    encode: (value) => JSON.stringify(value),
    decode(text) {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (error) {
        throw new CorruptColumn(`${column} holds text that is not JSON: ${(error as Error).message}`);
      }
      if (!check(value)) throw new CorruptColumn(`${column} holds JSON of another shape`);
      return value;
    },
  };
}

export const isStringArray = (value: unknown): value is string[] =>
  Array.isArray(value) && value.every((item) => typeof item === "string");

export const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);
