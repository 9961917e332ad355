import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv } from "ajv";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { ConfigError, defaultDataDir, loadSettings, type SettingsInput } from "../../src/config/load.js";
import { exampleConfig } from "../../src/config/example.js";
import { configSchema } from "../../src/config/schema.js";
import { serveConfigOf } from "../../src/config/server-config.js";
import { SETTINGS } from "../../src/config/settings.js";
import { DEFAULT_HTTP_LIMITS } from "../../src/api/http-limits.js";
import { DEFAULT_ORGANIZATION_LIMITS } from "../../src/lifecycle/quota.js";

const dir = mkdtempSync(join(tmpdir(), "trebuchet-config-"));
let files = 0;
function file(text: string): string {
  const path = join(dir, `config-${++files}.yaml`);
  writeFileSync(path, text);
  return path;
}

/** Settings with no file but the one given and no environment but the one given. */
function load(input: SettingsInput = {}) {
  return loadSettings({ env: {}, root: true, configFile: input.configFile ?? file(""), ...input });
}

function problems(input: SettingsInput): string[] {
  try {
    load(input);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("the settings were accepted");
}

describe("settings: defaults, the file, the environment, flags", () => {
  it("defaults fit a real install, and the server's own defaults are the settings' defaults", () => {
    const { settings, sources } = load();
    expect(settings.data_dir).toBe("/var/lib/trebuchet");
    expect(settings.listen).toBe("127.0.0.1:8080");
    expect(settings.cors.origins).toEqual([]);
    expect(sources.get("listen")).toBe("default");
    const serve = serveConfigOf(settings);
    expect(serve.server.httpLimits).toEqual(DEFAULT_HTTP_LIMITS);
    expect(serve.server.organizationLimits).toEqual(DEFAULT_ORGANIZATION_LIMITS);
    expect(serve.server.store).toEqual({ databaseUrl: undefined, dataDir: "/var/lib/trebuchet" });
    expect(defaultDataDir(false, { HOME: "/home/ann" })).toBe("/home/ann/.local/share/trebuchet");
    expect(defaultDataDir(false, { XDG_DATA_HOME: "/x" })).toBe("/x/trebuchet");
  });

  it("layers the file, then the environment, then flags, and says where each value came from", () => {
    const path = file(
      "listen: 0.0.0.0:8080\nbase_domain: cloud.example\nhttp:\n  body_timeout_ms: 7000\norganization_limits:\n  disk_space: unlimited\n",
    );
    const {
      settings,
      sources,
      file: read,
    } = load({
      configFile: path,
      env: {
        TREBUCHET_LISTEN: "127.0.0.2:8081",
        TREBUCHET_ORGANIZATION_LIMITS: "virtual_machines=5",
        TREBUCHET_CORS_ORIGINS: "https://console.example.com, https://other.example",
      },
      flags: [{ key: "listen", flag: "--listen", text: "[::1]:8082" }],
    });
    expect(read).toBe(path);
    expect(settings.listen).toBe("[::1]:8082");
    expect(sources.get("listen")).toBe("--listen");
    expect(settings.base_domain).toBe("cloud.example");
    expect(sources.get("base_domain")).toBe(`${path}:2`);
    expect(settings.http.body_timeout_ms).toBe(7000);
    expect(sources.get("http.body_timeout_ms")).toBe(`${path}:4`);
    // Limits by name merge: the file's disk_space and the variable's virtual_machines both hold.
    expect(settings.organization_limits).toEqual({
      ...DEFAULT_ORGANIZATION_LIMITS,
      virtual_machines: 5,
      disk_space: "unlimited",
    });
    expect(settings.cors.origins).toEqual(["https://console.example.com", "https://other.example"]);
    const serve = serveConfigOf(settings);
    expect(serve.listen).toEqual({ host: "::1", port: 8082 });
    expect(serve.server.baseDomain).toBe("cloud.example");
    expect(serve.server.organizationLimits).toMatchObject({ virtual_machines: 5, disk_space: null });
    expect(serve.server.httpLimits?.bodyTimeoutMs).toBe(7000);
  });

  it("reads every HTTP limit and step timeout from its variable", () => {
    const { settings } = load({
      env: {
        TREBUCHET_HEADERS_TIMEOUT_MS: "5000",
        TREBUCHET_BODY_TIMEOUT_MS: "7000",
        TREBUCHET_KEEP_ALIVE_TIMEOUT_MS: "3000",
        TREBUCHET_MAX_REQUESTS_PER_CONNECTION: "100",
        TREBUCHET_MAX_CONNECTIONS: "500",
        TREBUCHET_MAX_CONNECTIONS_PER_ADDRESS: "50",
        TREBUCHET_MAX_URL_BYTES: "2048",
        TREBUCHET_MAX_HEADER_BYTES: "8192",
        TREBUCHET_READY_TIMEOUT: "300",
        TREBUCHET_SHUTDOWN_TIMEOUT: "10",
      },
    });
    const serve = serveConfigOf(settings);
    expect(serve.server.httpLimits).toEqual({
      headersTimeoutMs: 5000,
      bodyTimeoutMs: 7000,
      keepAliveTimeoutMs: 3000,
      maxRequestsPerConnection: 100,
      maxConnections: 500,
      maxConnectionsPerAddress: 50,
      maxUrlBytes: 2048,
      maxHeaderBytes: 8192,
    });
    expect(serve.server.agent?.timeouts).toEqual({ ready: 300_000, shutdown: 10_000 });
  });

  it("an empty variable turns an optional setting off (DATABASE_URL= means SQLite) and leaves others alone", () => {
    const path = file("database_url: postgres://db/trebuchet\nlisten: 127.0.0.1:9000\n");
    const { settings } = load({ configFile: path, env: { DATABASE_URL: "", TREBUCHET_LISTEN: " " } });
    expect(settings.database_url).toBeNull();
    expect(settings.listen).toBe("127.0.0.1:9000");
  });

  it("an empty file, or one of comments only, is the defaults", () => {
    expect(load({ configFile: file("# nothing\n") }).settings).toEqual(load().settings);
  });
});

describe("settings: every bad value is refused, naming where it came from and what is expected", () => {
  it("TREBUCHET_READY_TIMEOUT=2m is refused, not ignored", () => {
    expect(problems({ env: { TREBUCHET_READY_TIMEOUT: "2m" } })).toEqual([
      'TREBUCHET_READY_TIMEOUT="2m" (agent.ready_timeout_seconds): expected a whole number of seconds, at least 1',
    ]);
  });

  it("reports all of a file's problems at once, each with its line", () => {
    const path = file(
      [
        "listen: 0.0.0.0:99999", // 1
        "http:", // 2
        "  body_timeout_ms: 5s", // 3
        "  bogus: 1", // 4
        "colour: red", // 5
        "organization_limits:", // 6
        "  virtual_machines: lots", // 7
        "cors:", // 8
        "  origins: [https://ok.example, ftp://x]", // 9
        "role: boss", // 10
      ].join("\n"),
    );
    expect(problems({ configFile: path }).sort()).toEqual(
      [
        `${path}:1: listen is "0.0.0.0:99999": expected HOST:PORT, [IPv6]:PORT or :PORT`,
        `${path}:3: http.body_timeout_ms is "5s": expected a whole number of milliseconds, at least 1`,
        `${path}:4: unknown setting "http.bogus"; known: http.headers_timeout_ms, http.body_timeout_ms, http.keep_alive_timeout_ms, http.max_requests_per_connection, http.max_connections, http.max_connections_per_address, http.max_url_bytes, http.max_header_bytes`,
        `${path}:5: unknown setting "colour"; known: listen, metrics_listen, data_dir, database_url, role, host, base_domain, log_level, trusted_proxies, cors, rate_limits, organization_limits, trash_keep_seconds, auth_cache_ms, oauth, http, load_shedding, agent`,
        `${path}:7: organization_limits.virtual_machines is "lots": expected a whole number or unlimited`,
        `${path}:9: cors.origins[1] is "ftp://x": expected an origin (http:// or https://, a host and maybe a port, no path) or "*"`,
        `${path}:10: role is "boss": expected one of api, worker, all`,
      ].sort(),
    );
  });

  it("refuses variables and flags the same way", () => {
    expect(
      problems({
        env: {
          TREBUCHET_BODY_TIMEOUT_MS: "5s",
          TREBUCHET_MAX_CONNECTIONS: "0",
          TREBUCHET_ORGANIZATION_LIMITS: "memory=5",
          TREBUCHET_RATE_LIMITS: "read=fast",
          DATABASE_URL: "mysql://db",
        },
        flags: [{ key: "data_dir", flag: "--data", text: "" }],
      }).sort(),
    ).toEqual(
      [
        '--data "" (data_dir): expected a directory',
        'DATABASE_URL="mysql://db" (database_url): expected a postgres:// URL or null',
        'TREBUCHET_BODY_TIMEOUT_MS="5s" (http.body_timeout_ms): expected a whole number of milliseconds, at least 1',
        'TREBUCHET_MAX_CONNECTIONS="0" (http.max_connections): expected a whole number of connections, at least 1',
        'TREBUCHET_ORGANIZATION_LIMITS="memory=5" (organization_limits.memory): unknown name; expected one of virtual_machines, virtual_machine_memory, disk_space, unallocated_ip_addresses',
        'TREBUCHET_RATE_LIMITS="read=fast" (rate_limits.read): expected a whole number of requests per minute, at least 1',
      ].sort(),
    );
  });

  it("refuses YAML that is not a mapping of settings, duplicate keys, and a missing named file", () => {
    expect(problems({ configFile: file("a: 1\na: 2\n") })[0]).toMatch(
      /config-\d+\.yaml:2:1: Map keys must be unique/,
    );
    expect(problems({ configFile: file("- listen\n") })[0]).toMatch(/expected a mapping of settings/);
    expect(problems({ configFile: file("http: 5\n") })[0]).toMatch(
      /:1: http: expected a mapping of http\.\* settings, got 5/,
    );
    expect(problems({ configFile: file("listen: [unclosed\n") })[0]).toMatch(/config-\d+\.yaml:\d+:\d+: /);
    expect(problems({ configFile: join(dir, "missing.yaml") })).toEqual([
      `${join(dir, "missing.yaml")}: cannot be read (ENOENT)`,
    ]);
    // Aliases would let a small file expand into a large one: none are followed.
    expect(problems({ configFile: file("a: &x [1]\nb: *x\n") })[0]).toMatch(/YAML aliases are not read/);
  });

  it("OAuth needs its audience and key file", () => {
    expect(problems({ env: { TREBUCHET_OAUTH_ISSUER: "https://id.example" } })).toEqual([
      'TREBUCHET_OAUTH_ISSUER="https://id.example" (oauth.issuer): needs oauth.audience and oauth.jwks_file too',
    ]);
  });
});

describe("the schema documents the file", () => {
  it("every default is valid under the schema, and the example file reads as the defaults", () => {
    const schema = configSchema();
    const validate = new Ajv({ strict: false }).compile(schema);
    const defaults: Record<string, unknown> = {};
    for (const setting of SETTINGS) {
      const [first, second] = setting.key.split(".") as [string, string | undefined];
      const value = setting.default === undefined ? "/var/lib/trebuchet" : setting.default;
      if (second) ((defaults[first] ??= {}) as Record<string, unknown>)[second] = value;
      else defaults[first] = value;
    }
    expect(validate(defaults), JSON.stringify(validate.errors)).toBe(true);
    expect(parse(exampleConfig())).toBeNull();
    // Uncommenting every setting of the example gives a valid file equal to the defaults.
    const uncommented = exampleConfig()
      .split("\n")
      .filter((line) => /^#( {2})?[a-z_]+:( .*)?$/.test(line))
      .map((line) => line.slice(1))
      .join("\n")
      .replace("data_dir:", "data_dir: /var/lib/trebuchet");
    expect(load({ configFile: file(uncommented) }).settings).toEqual(load().settings);
  });

  it("every setting is in the README with its variable", async () => {
    const { readFileSync } = await import("node:fs");
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    for (const setting of SETTINGS) {
      expect(readme, setting.key).toContain(`\`${setting.key}\``);
      expect(readme, setting.env).toContain(setting.env);
    }
  });
});
