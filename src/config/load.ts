import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { Ajv, type ErrorObject } from "ajv";
import { LineCounter, parseDocument } from "yaml";
import { configSchema } from "./schema.js";
import { SETTINGS, SETTINGS_BY_KEY, type Setting, type Settings } from "./settings.js";

export const DEFAULT_CONFIG_FILE = "/etc/trebuchet/trebuchet.yaml";

/** Every bad value at once, each naming where it came from, its key and what is expected. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`configuration refused:\n  ${problems.join("\n  ")}`);
  }
}

export interface SettingsInput {
  /** `--config FILE`; else $TREBUCHET_CONFIG; else /etc/trebuchet/trebuchet.yaml if it exists. */
  configFile?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Flags given, as typed: `{ key: "data_dir", flag: "--data", text: "/srv/tb" }`. */
  flags?: readonly { key: string; flag: string; text: string }[];
  /** Whether this process runs as root (decides the data directory's default). */
  root?: boolean;
}

export interface LoadedSettings {
  settings: Settings;
  /** The file read, if any. */
  file: string | undefined;
  /** Where each setting's value came from: `default`, `FILE:LINE`, `ENV_VAR` or `--flag`. */
  sources: Map<string, string>;
}

/** The data directory of a real install: /var/lib/trebuchet as root, else the user's data home. */
export function defaultDataDir(root: boolean, env: NodeJS.ProcessEnv = process.env): string {
  if (root) return "/var/lib/trebuchet";
  const dataHome = env.XDG_DATA_HOME || join(env.HOME || homedir(), ".local", "share");
  return join(dataHome, "trebuchet");
}

type Tree = Record<string, unknown>;

function setIn(tree: Tree, key: string, value: unknown): void {
  const parts = key.split(".");
  let node = tree;
  for (const part of parts.slice(0, -1)) node = (node[part] ??= {}) as Tree;
  node[parts.at(-1)!] = value;
}

function getIn(tree: Tree, key: string): unknown {
  let node: unknown = tree;
  for (const part of key.split(".")) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Tree)[part];
  }
  return node;
}

/** A variable's or flag's text as the setting's type, left as text when it does not read (the schema then says why). */
function fromText(setting: Setting, text: string): unknown {
  const trimmed = text.trim();
  if (setting.envFormat === "list")
    return trimmed
      .split(",")
      .map((part) => part.trim())
      .filter(Boolean);
  if (setting.envFormat === "pairs") {
    const pairs: Tree = {};
    for (const part of trimmed.split(",")) {
      const [name, value, ...rest] = part.split("=").map((s) => s.trim());
      if (!name || value === undefined || rest.length > 0) return text;
      pairs[name] = /^[0-9]{1,15}$/.test(value) ? Number(value) : value;
    }
    return pairs;
  }
  const types = ([] as unknown[]).concat(setting.schema.type ?? []);
  if (types.includes("integer") && /^-?[0-9]{1,15}$/.test(trimmed)) return Number(trimmed);
  return trimmed;
}

const validator = (() => {
  let compiled: ReturnType<Ajv["compile"]> | undefined;
  return () => (compiled ??= new Ajv({ allErrors: true, strict: false }).compile(configSchema()));
})();

/** The setting an error's path falls in (`/http/body_timeout_ms` -> http.body_timeout_ms). */
function settingAt(path: string[]): Setting | undefined {
  for (let length = path.length; length > 0; length--) {
    const setting = SETTINGS_BY_KEY.get(path.slice(0, length).join("."));
    if (setting) return setting;
  }
  return undefined;
}

/** Where a value came from, as an operator would look for it: the variable as set, the flag, or the file's line. */
function describeSource(
  source: string | undefined,
  label: string,
  value: unknown,
  env: NodeJS.ProcessEnv,
): string {
  if (source && /^[A-Z][A-Z0-9_]*$/.test(source))
    return `${source}=${JSON.stringify(env[source] ?? "")} (${label})`;
  if (source?.startsWith("--")) return `${source} ${JSON.stringify(value)} (${label})`;
  return `${source && source !== "default" ? source + ": " : ""}${label} is ${JSON.stringify(value)}`;
}

/** Ajv's findings, once per value, in words an operator can act on. */
function explain(
  errors: ErrorObject[],
  merged: Tree,
  sources: Map<string, string>,
  env: NodeJS.ProcessEnv,
): string[] {
  const problems = new Map<string, string>();
  for (const error of errors) {
    const path = error.instancePath.split("/").filter(Boolean);
    const setting = settingAt(path);
    if (error.keyword === "additionalProperties") {
      const name = String(error.params.additionalProperty);
      if (setting) {
        const names = Object.keys(setting.schema.properties ?? {}).join(", ");
        problems.set(
          `${setting.key}.${name}`,
          `${describeSource(sources.get(setting.key), `${setting.key}.${name}`, (getIn(merged, setting.key) as Tree)[name], env)}: unknown name; expected one of ${names}`,
        );
        continue;
      }
      const unknown = [...path, name].join(".");
      const known = [
        ...new Set(
          SETTINGS.map((s) => s.key)
            .filter((key) => path.length === 0 || key.startsWith(path.join(".") + "."))
            .map((key) => (path.length === 0 ? key.split(".")[0]! : key)),
        ),
      ];
      problems.set(
        unknown,
        `${sources.get(unknown) ?? "configuration"}: unknown setting "${unknown}"; known: ${known.join(", ")}`,
      );
      continue;
    }
    if (!setting) {
      problems.set(path.join(".") || "(top)", `the configuration must be a mapping of settings`);
      continue;
    }
    // A list's item or a limit by name is named itself: cors.origins[1], organization_limits.disk_space.
    const inside = path.slice(setting.key.split(".").length);
    const label =
      setting.key + inside.map((part) => (/^[0-9]+$/.test(part) ? `[${part}]` : `.${part}`)).join("");
    if (problems.has(label)) continue;
    const value = inside.reduce<unknown>((node, part) => (node as Tree)?.[part], getIn(merged, setting.key));
    const expected = inside.length > 0 && setting.itemExpected ? setting.itemExpected : setting.expected;
    problems.set(
      label,
      `${describeSource(sources.get(setting.key), label, value, env)}: expected ${expected}`,
    );
  }
  return [...problems.values()];
}

/** The file's settings as a tree, and the line each came from. */
function readFile(file: string, sources: Map<string, string>): Tree {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new ConfigError([
      `${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
    ]);
  }
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  if (document.errors.length > 0)
    throw new ConfigError(
      document.errors.map((error) => {
        const at = lineCounter.linePos(error.pos[0]);
        return `${file}:${at.line}:${at.col}: ${error.message.split("\n")[0]}`;
      }),
    );
  let tree: unknown;
  try {
    // Aliases would let a small file expand into a large one: none are followed.
    tree = document.toJS({ maxAliasCount: 0 });
  } catch (error) {
    throw new ConfigError([`${file}: ${(error as Error).message} (YAML aliases are not read)`]);
  }
  if (tree === null || tree === undefined) return {};
  if (typeof tree !== "object" || Array.isArray(tree))
    throw new ConfigError([
      `${file}: expected a mapping of settings (key: value), got ${JSON.stringify(tree)}`,
    ]);
  const mark = (node: Tree, prefix: string[]) => {
    for (const [name, value] of Object.entries(node)) {
      const path = [...prefix, name];
      const yamlNode = document.getIn(path, true) as { range?: [number, number, number] } | undefined;
      const line = yamlNode?.range ? lineCounter.linePos(yamlNode.range[0]).line : undefined;
      sources.set(path.join("."), line ? `${file}:${line}` : file);
      if (
        value !== null &&
        typeof value === "object" &&
        !Array.isArray(value) &&
        !SETTINGS_BY_KEY.has(path.join("."))
      )
        mark(value as Tree, path);
    }
  };
  mark(tree as Tree, []);
  return tree as Tree;
}

function configFileOf(input: SettingsInput, env: NodeJS.ProcessEnv): string | undefined {
  const named = input.configFile ?? (env.TREBUCHET_CONFIG || undefined);
  if (named !== undefined) return named;
  return existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined;
}

/**
 * The settings: built-in defaults, then the file, then the environment, then flags; the
 * result is checked against the schema and refused whole, naming every bad value.
 */
export function loadSettings(input: SettingsInput = {}): LoadedSettings {
  const env = input.env ?? process.env;
  const sources = new Map<string, string>();
  const file = configFileOf(input, env);
  const fromFile = file ? readFile(file, sources) : {};

  // The file's tree, unknown keys included (the schema refuses them), with every setting's value set in it.
  const merged: Tree = structuredClone(fromFile);
  const groups = new Set(SETTINGS.filter((s) => s.key.includes(".")).map((s) => s.key.split(".")[0]!));
  const notMappings = [...groups].filter((group) => merged[group] !== undefined && !isTree(merged[group]));
  if (notMappings.length > 0)
    throw new ConfigError(
      notMappings.map(
        (group) =>
          `${sources.get(group) ?? file}: ${group}: expected a mapping of ${group}.* settings, got ${JSON.stringify(merged[group])}`,
      ),
    );
  for (const setting of SETTINGS) {
    const fileValue = getIn(fromFile, setting.key);
    let value: unknown =
      setting.default !== undefined
        ? structuredClone(setting.default)
        : defaultDataDir(input.root ?? isRoot(), env);
    if (!sources.has(setting.key)) sources.set(setting.key, "default");
    // Pairs (limits by name) are merged name by name: a file or variable naming one keeps the others.
    const over = (next: unknown) =>
      setting.envFormat === "pairs" && isTree(value) && isTree(next) ? { ...value, ...next } : next;
    if (fileValue !== undefined) value = over(fileValue);
    const envText = env[setting.env];
    if (envText !== undefined && envText.trim() === "") {
      // An empty variable turns an optional setting off and leaves any other as it was.
      if (([] as unknown[]).concat(setting.schema.type ?? []).includes("null")) {
        value = null;
        sources.set(setting.key, setting.env);
      }
    } else if (envText !== undefined) {
      value = over(fromText(setting, envText));
      sources.set(setting.key, setting.env);
    }
    const flag = input.flags?.find((given) => given.key === setting.key);
    if (flag) {
      value = over(fromText(setting, flag.text));
      sources.set(setting.key, flag.flag);
    }
    setIn(merged, setting.key, value);
  }

  const validate = validator();
  const problems = validate(merged) ? [] : explain(validate.errors ?? [], merged, sources, env);
  const settings = merged as unknown as Settings;
  if (
    problems.length === 0 &&
    settings.oauth.issuer &&
    (!settings.oauth.audience || !settings.oauth.jwks_file)
  )
    problems.push(
      `${describeSource(sources.get("oauth.issuer"), "oauth.issuer", settings.oauth.issuer, env)}: needs oauth.audience and oauth.jwks_file too`,
    );
  if (problems.length > 0) throw new ConfigError(problems);
  return { settings, file, sources };
}

function isTree(value: unknown): value is Tree {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}
