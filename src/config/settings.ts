/**
 * Every setting of `trebuchet serve` and the admin commands: its key in the configuration
 * file, the environment variable that overrides it, its schema and its default. The
 * JSON Schema of the file (`trebuchet config schema`) and the README's table are made
 * from this list, so the three cannot disagree.
 */

/** The subset of JSON Schema the settings use. */
export interface ValueSchema {
  type?: "string" | "integer" | "number" | "boolean" | "array" | "object" | ("string" | "integer" | "null")[];
  enum?: readonly (string | number | null)[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  pattern?: string;
  items?: ValueSchema;
  properties?: Record<string, ValueSchema>;
  additionalProperties?: boolean;
  anyOf?: ValueSchema[];
  description?: string;
  default?: unknown;
}

export interface Setting {
  /** Dotted path in the file, e.g. `http.headers_timeout_ms`. */
  key: string;
  /** The environment variable that overrides the file. */
  env: string;
  description: string;
  schema: ValueSchema;
  /** What the value must be, in words, for error messages. */
  expected: string;
  /** What one item of a list or one named value must be. */
  itemExpected?: string;
  /** The default; undefined when it depends on the machine (then `defaultNote` says how). */
  default: unknown;
  defaultNote?: string;
  /** How the variable's text reads: a list (`a,b`), `name=value` pairs, or one value. */
  envFormat?: "list" | "pairs";
}

const LISTEN_PATTERN =
  "^(\\[[0-9a-fA-F:.]+\\]|[^:\\[\\]\\s]*):([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$";
const wholeNumber = (minimum: number, unit: string): Pick<Setting, "schema" | "expected"> => ({
  schema: { type: "integer", minimum },
  expected: `a whole number of ${unit}, at least ${minimum}`,
});
const optionalWholeNumber = (minimum: number, unit: string): Pick<Setting, "schema" | "expected"> => ({
  schema: { type: ["integer", "null"], minimum },
  expected: `a whole number of ${unit}, at least ${minimum}, or null (off)`,
});

const LIMIT_VALUE: ValueSchema = {
  anyOf: [{ type: "integer", minimum: 0 }, { enum: ["unlimited"] }],
};

export const SETTINGS: readonly Setting[] = [
  {
    key: "listen",
    env: "TREBUCHET_LISTEN",
    description: "Address of the API: HOST:PORT, [IPv6]:PORT or :PORT.",
    schema: { type: "string", pattern: LISTEN_PATTERN },
    expected: "HOST:PORT, [IPv6]:PORT or :PORT",
    default: "127.0.0.1:8080",
  },
  {
    key: "metrics_listen",
    env: "TREBUCHET_METRICS_LISTEN",
    description:
      "Address of GET /metrics (Prometheus), apart from the API so tenants never see it; null: no metrics.",
    schema: { type: ["string", "null"], pattern: LISTEN_PATTERN },
    expected: "HOST:PORT, [IPv6]:PORT, :PORT or null",
    default: null,
  },
  {
    key: "data_dir",
    env: "TREBUCHET_DATA",
    description:
      "Data directory: the SQLite database (when database_url is not set), disk templates and VM files.",
    schema: { type: "string", minLength: 1 },
    expected: "a directory",
    default: undefined,
    defaultNote: "/var/lib/trebuchet as root, else $XDG_DATA_HOME/trebuchet or ~/.local/share/trebuchet",
  },
  {
    key: "database_url",
    env: "DATABASE_URL",
    description: "postgres://... to use PostgreSQL instead of SQLite in the data directory; null: SQLite.",
    schema: { type: ["string", "null"], pattern: "^postgres(ql)?://" },
    expected: "a postgres:// URL or null",
    default: null,
  },
  {
    key: "role",
    env: "TREBUCHET_ROLE",
    description: "api: HTTP only; worker: the host agent only; all: both.",
    schema: { enum: ["api", "worker", "all"] },
    expected: "one of api, worker, all",
    default: "all",
  },
  {
    key: "host",
    env: "TREBUCHET_HOST",
    description: "The catalog host this process's agent runs; null: the catalog's only host.",
    schema: { type: ["string", "null"], minLength: 1 },
    expected: "a host name from the catalog, or null",
    default: null,
  },
  {
    key: "base_domain",
    env: "TREBUCHET_BASE_DOMAIN",
    description:
      "Organizations' infrastructure domain is <sub_domain>.<base_domain>; a VM's FQDN is <hostname>.<sub_domain>.<base_domain>.",
    schema: { type: "string", pattern: "^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$" },
    expected: "a DNS domain in lower case",
    default: "trebuchet.internal",
  },
  {
    key: "log_level",
    env: "TREBUCHET_LOG_LEVEL",
    description: "Level of the JSON log lines (pino).",
    schema: { enum: ["fatal", "error", "warn", "info", "debug", "trace", "silent"] },
    expected: "one of fatal, error, warn, info, debug, trace, silent",
    default: "info",
  },
  {
    key: "trusted_proxies",
    env: "TREBUCHET_TRUSTED_PROXIES",
    description: "Addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed.",
    schema: { type: "array", items: { type: "string", minLength: 1 } },
    expected: "a list of addresses or CIDRs",
    itemExpected: "an address or a CIDR",
    default: [],
    envFormat: "list",
  },
  {
    key: "cors.origins",
    env: "TREBUCHET_CORS_ORIGINS",
    description:
      'Origins whose browser pages may call the API (https://console.example.com); "*" allows any, as Katapult does. Empty: none.',
    schema: { type: "array", items: { type: "string", pattern: "^(\\*|https?://[^/\\s]+)$" } },
    expected: 'a list of origins (scheme://host[:port]) or "*"',
    itemExpected: 'an origin (http:// or https://, a host and maybe a port, no path) or "*"',
    default: [],
    envFormat: "list",
  },
  {
    key: "rate_limits",
    env: "TREBUCHET_RATE_LIMITS",
    description: "Requests per minute per identity, by bucket (read, write, build).",
    schema: {
      type: "object",
      properties: {
        read: { type: "integer", minimum: 1 },
        write: { type: "integer", minimum: 1 },
        build: { type: "integer", minimum: 1 },
      },
      additionalProperties: false,
    },
    expected: "read, write and build: whole numbers of requests per minute, at least 1",
    itemExpected: "a whole number of requests per minute, at least 1",
    default: { read: 1000, write: 1000, build: 1000 },
    envFormat: "pairs",
  },
  {
    key: "organization_limits",
    env: "TREBUCHET_ORGANIZATION_LIMITS",
    description:
      "Limits of organizations that have none of their own: a whole number or unlimited (memory and disk space in GB).",
    schema: {
      type: "object",
      properties: {
        virtual_machines: LIMIT_VALUE,
        virtual_machine_memory: LIMIT_VALUE,
        disk_space: LIMIT_VALUE,
        unallocated_ip_addresses: LIMIT_VALUE,
      },
      additionalProperties: false,
    },
    expected:
      "virtual_machines, virtual_machine_memory, disk_space, unallocated_ip_addresses: a whole number or unlimited",
    itemExpected: "a whole number or unlimited",
    default: {
      virtual_machines: 50,
      virtual_machine_memory: 256,
      disk_space: 4000,
      unallocated_ip_addresses: 16,
    },
    envFormat: "pairs",
  },
  {
    key: "trash_keep_seconds",
    env: "TREBUCHET_TRASH_KEEP_SECONDS",
    description: "How long a deleted VM waits in the trash before housekeeping purges it.",
    ...wholeNumber(0, "seconds"),
    default: 86_400,
  },
  {
    key: "auth_cache_ms",
    env: "TREBUCHET_AUTH_CACHE_MS",
    description: "How long a checked token and an organization's state are trusted from memory (0: never).",
    ...wholeNumber(0, "milliseconds"),
    default: 1000,
  },
  {
    key: "oauth.issuer",
    env: "TREBUCHET_OAUTH_ISSUER",
    description:
      "Accept OAuth2 access tokens (JWTs) from this issuer; null: off. Needs audience and jwks_file.",
    schema: { type: ["string", "null"], minLength: 1 },
    expected: "an issuer URL or null",
    default: null,
  },
  {
    key: "oauth.audience",
    env: "TREBUCHET_OAUTH_AUDIENCE",
    description: "The audience OAuth2 access tokens must name.",
    schema: { type: ["string", "null"], minLength: 1 },
    expected: "a string or null",
    default: null,
  },
  {
    key: "oauth.jwks_file",
    env: "TREBUCHET_OAUTH_JWKS",
    description: "A JWKS file with the issuer's public keys.",
    schema: { type: ["string", "null"], minLength: 1 },
    expected: "a file or null",
    default: null,
  },
  {
    key: "oauth.scope_prefix",
    env: "TREBUCHET_OAUTH_SCOPE_PREFIX",
    description: "Prefix of the tokens' scopes.",
    schema: { type: "string" },
    expected: "a string",
    default: "api.katapult.io/core/v1/",
  },
  {
    key: "http.headers_timeout_ms",
    env: "TREBUCHET_HEADERS_TIMEOUT_MS",
    description: "Longest time to receive a request's headers.",
    ...wholeNumber(1, "milliseconds"),
    default: 10_000,
  },
  {
    key: "http.body_timeout_ms",
    env: "TREBUCHET_BODY_TIMEOUT_MS",
    description: "Longest time to receive a request's body after its headers.",
    ...wholeNumber(1, "milliseconds"),
    default: 10_000,
  },
  {
    key: "http.keep_alive_timeout_ms",
    env: "TREBUCHET_KEEP_ALIVE_TIMEOUT_MS",
    description: "How long an idle connection is kept open.",
    ...wholeNumber(1, "milliseconds"),
    default: 10_000,
  },
  {
    key: "http.max_requests_per_connection",
    env: "TREBUCHET_MAX_REQUESTS_PER_CONNECTION",
    description: "Requests on one connection before it is closed.",
    ...wholeNumber(1, "requests"),
    default: 10_000,
  },
  {
    key: "http.max_connections",
    env: "TREBUCHET_MAX_CONNECTIONS",
    description: "Open connections in all.",
    ...wholeNumber(1, "connections"),
    default: 1_024,
  },
  {
    key: "http.max_connections_per_address",
    env: "TREBUCHET_MAX_CONNECTIONS_PER_ADDRESS",
    description: "Open connections from one client address.",
    ...wholeNumber(1, "connections"),
    default: 128,
  },
  {
    key: "http.max_url_bytes",
    env: "TREBUCHET_MAX_URL_BYTES",
    description: "Longest request line's URL.",
    ...wholeNumber(1, "bytes"),
    default: 8_192,
  },
  {
    key: "http.max_header_bytes",
    env: "TREBUCHET_MAX_HEADER_BYTES",
    description: "Largest request head (all headers).",
    ...wholeNumber(1, "bytes"),
    default: 16_384,
  },
  {
    key: "load_shedding.max_event_loop_delay_ms",
    env: "TREBUCHET_SHED_EVENT_LOOP_DELAY_MS",
    description:
      "Refuse requests with 503 service_unavailable while the event loop's mean delay is above this; null: never.",
    ...optionalWholeNumber(1, "milliseconds"),
    default: 1000,
  },
  {
    key: "load_shedding.max_heap_used_bytes",
    env: "TREBUCHET_SHED_HEAP_USED_BYTES",
    description:
      "Refuse requests with 503 while the JavaScript heap in use is above this; null: 90% of the heap's limit.",
    ...optionalWholeNumber(1, "bytes"),
    default: null,
  },
  {
    key: "load_shedding.max_rss_bytes",
    env: "TREBUCHET_SHED_RSS_BYTES",
    description: "Refuse requests with 503 while the process's resident memory is above this; null: never.",
    ...optionalWholeNumber(1, "bytes"),
    default: null,
  },
  {
    key: "agent.ready_timeout_seconds",
    env: "TREBUCHET_READY_TIMEOUT",
    description: "Longest wait for a started guest to report ready.",
    ...wholeNumber(1, "seconds"),
    default: 120,
  },
  {
    key: "agent.shutdown_timeout_seconds",
    env: "TREBUCHET_SHUTDOWN_TIMEOUT",
    description: "How long an ACPI shutdown may take before the VM is powered off.",
    ...wholeNumber(1, "seconds"),
    default: 30,
  },
];

export const SETTINGS_BY_KEY: ReadonlyMap<string, Setting> = new Map(SETTINGS.map((s) => [s.key, s]));

/** The settings once read and checked (the file's shape, every key present). */
export interface Settings {
  listen: string;
  metrics_listen: string | null;
  data_dir: string;
  database_url: string | null;
  role: "api" | "worker" | "all";
  host: string | null;
  base_domain: string;
  log_level: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  trusted_proxies: string[];
  cors: { origins: string[] };
  rate_limits: { read: number; write: number; build: number };
  organization_limits: Record<
    "virtual_machines" | "virtual_machine_memory" | "disk_space" | "unallocated_ip_addresses",
    number | "unlimited"
  >;
  trash_keep_seconds: number;
  auth_cache_ms: number;
  oauth: { issuer: string | null; audience: string | null; jwks_file: string | null; scope_prefix: string };
  http: {
    headers_timeout_ms: number;
    body_timeout_ms: number;
    keep_alive_timeout_ms: number;
    max_requests_per_connection: number;
    max_connections: number;
    max_connections_per_address: number;
    max_url_bytes: number;
    max_header_bytes: number;
  };
  load_shedding: {
    max_event_loop_delay_ms: number | null;
    max_heap_used_bytes: number | null;
    max_rss_bytes: number | null;
  };
  agent: { ready_timeout_seconds: number; shutdown_timeout_seconds: number };
}
