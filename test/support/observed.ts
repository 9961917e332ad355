/**
 * Real exchanges with api.katapult.io (test/fixtures/observed/, verbatim copies; see
 * test/fixtures/README.md), and the tools to replay them against Trebuchet and compare
 * the shapes of the answers key by key.
 */
import { readdirSync, readFileSync } from "node:fs";

export const OBSERVED_DIR = new URL("../fixtures/observed/", import.meta.url).pathname;

export interface Exchange {
  source: string;
  request: { method: string; url: string; headers: Record<string, string[]>; body: unknown };
  response: { status: number; headers: Record<string, string[]>; body: unknown };
}

export const observedFiles = (): string[] =>
  readdirSync(OBSERVED_DIR)
    .filter((f) => f.endsWith(".json"))
    .sort();

export function observed(file: string): Exchange[] {
  return JSON.parse(readFileSync(`${OBSERVED_DIR}${file}`, "utf8")) as Exchange[];
}

const kind = (value: unknown) => (value === null ? "null" : Array.isArray(value) ? "array" : typeof value);

/**
 * How the shape of `ours` differs from the real answer `theirs`, as `missing <pointer>`,
 * `extra <pointer>`, `type <pointer> ...`, `null <pointer>` (ours is null where theirs is an
 * object or a non-empty list, so nothing below it was compared) and `empty <pointer>`;
 * `*` in a pointer stands for any element. Objects must have the same keys, recursively;
 * arrays, elements of the same shape (each of ours against each of theirs). A null of theirs
 * shows no shape and matches anything; values are not compared.
 */
export function shapeDifferences(theirs: unknown, ours: unknown, at = ""): string[] {
  const [k1, k2] = [kind(theirs), kind(ours)];
  if (k1 === "null") return [];
  if (k2 === "null")
    return k1 === "object" || (k1 === "array" && (theirs as unknown[]).length > 0) ? [`null ${at}`] : [];
  if (k1 !== k2) return [`type ${at}: ${k1} observed, ${k2} here`];
  if (Array.isArray(theirs) && Array.isArray(ours)) {
    if (theirs.length === 0) return [];
    if (ours.length === 0) return [`empty ${at}`];
    const out = new Set<string>();
    for (const t of theirs)
      for (const o of ours) for (const d of shapeDifferences(t, o, `${at}/*`)) out.add(d);
    return [...out];
  }
  if (k1 !== "object") return [];
  const [t, o] = [theirs as Record<string, unknown>, ours as Record<string, unknown>];
  const out: string[] = [];
  for (const key of Object.keys(t)) if (!Object.hasOwn(o, key)) out.push(`missing ${at}/${key}`);
  for (const key of Object.keys(o)) if (!Object.hasOwn(t, key)) out.push(`extra ${at}/${key}`);
  for (const key of Object.keys(t))
    if (Object.hasOwn(o, key)) out.push(...shapeDifferences(t[key], o[key], `${at}/${key}`));
  return out;
}

/**
 * The IDs of the real answer's objects (every `id` outside lists) mapped to the IDs of ours
 * at the same place, so that later requests of the recording can name our objects.
 */
export function learnIds(theirs: unknown, ours: unknown, into: Map<string, string>): void {
  if (!theirs || !ours || typeof theirs !== "object" || typeof ours !== "object") return;
  if (Array.isArray(theirs) || Array.isArray(ours)) return;
  const [t, o] = [theirs as Record<string, unknown>, ours as Record<string, unknown>];
  if (typeof t.id === "string" && typeof o.id === "string" && !into.has(t.id)) into.set(t.id, o.id);
  for (const key of Object.keys(t)) if (Object.hasOwn(o, key)) learnIds(t[key], o[key], into);
}

/** `text` with every known real value (IDs, sub-domain) replaced by ours. */
export function substitute(text: string, values: Map<string, string>): string {
  let out = text;
  for (const [theirs, ours] of values) out = out.split(theirs).join(ours);
  return out;
}
