import { InvalidArgumentError, Option, type Command } from "commander";
import { DEFAULT_SCOPE_PREFIX, type OAuthConfig } from "../auth/oauth.js";
import type { HttpLimits } from "../api/http-limits.js";
import { parseRateLimits } from "../auth/rate-limit.js";
import { DEFAULT_ORGANIZATION_LIMITS, parseLimits, type OrganizationLimits } from "../lifecycle/quota.js";
import { createServer, DEFAULT_BASE_DOMAIN, type Role, type ServerConfig } from "../server.js";
import { storeOptionsFromEnv } from "../store/index.js";

export interface ListenAddress {
  host: string;
  port: number;
}

/** `HOST:PORT`, `[IPv6]:PORT` or `:PORT`. */
export function parseListen(text: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65_535) throw new InvalidArgumentError(`expected HOST:PORT, got "${text}"`);
  return { host: match[1] ?? (match[2] || "127.0.0.1"), port };
}

/** Server settings from flags and the environment (documented in the README). */
export function serverConfigFromEnv(
  dataDir: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): ServerConfig {
  let oauth: OAuthConfig | undefined;
  if (env.TREBUCHET_OAUTH_ISSUER) {
    if (!env.TREBUCHET_OAUTH_AUDIENCE || !env.TREBUCHET_OAUTH_JWKS) {
      throw new Error(
        "TREBUCHET_OAUTH_ISSUER needs TREBUCHET_OAUTH_AUDIENCE and TREBUCHET_OAUTH_JWKS (a JWKS file)",
      );
    }
    oauth = {
      issuer: env.TREBUCHET_OAUTH_ISSUER,
      audience: env.TREBUCHET_OAUTH_AUDIENCE,
      jwksFile: env.TREBUCHET_OAUTH_JWKS,
      scopePrefix: env.TREBUCHET_OAUTH_SCOPE_PREFIX ?? DEFAULT_SCOPE_PREFIX,
    };
  }
  const proxies =
    env.TREBUCHET_TRUSTED_PROXIES?.split(",")
      .map((s) => s.trim())
      .filter(Boolean) ?? [];
  return {
    store: storeOptionsFromEnv(dataDir, env),
    baseDomain: env.TREBUCHET_BASE_DOMAIN ?? DEFAULT_BASE_DOMAIN,
    rateLimits: parseRateLimits(env.TREBUCHET_RATE_LIMITS),
    trustedProxies: proxies,
    ...(oauth ? { oauth } : {}),
    logger: { level: env.TREBUCHET_LOG_LEVEL ?? "info" },
    ...(env.TREBUCHET_AUTH_CACHE_MS !== undefined
      ? { authCacheMs: nonNegativeInteger("TREBUCHET_AUTH_CACHE_MS", env.TREBUCHET_AUTH_CACHE_MS) }
      : {}),
    ...httpLimitsFromEnv(env),
    organizationLimits: organizationLimitsFromEnv(env),
    ...(env.TREBUCHET_TRASH_KEEP_SECONDS !== undefined
      ? {
          trashKeepSeconds: nonNegativeInteger(
            "TREBUCHET_TRASH_KEEP_SECONDS",
            env.TREBUCHET_TRASH_KEEP_SECONDS,
          ),
        }
      : {}),
  };
}

/**
 * Limits of organizations that have none of their own: the built-in defaults, changed by
 * TREBUCHET_ORGANIZATION_LIMITS (`virtual_machines=20,disk_space=unlimited`).
 */
export function organizationLimitsFromEnv(env: NodeJS.ProcessEnv): OrganizationLimits {
  const text = env.TREBUCHET_ORGANIZATION_LIMITS;
  if (text === undefined) return { ...DEFAULT_ORGANIZATION_LIMITS };
  try {
    return parseLimits(text, DEFAULT_ORGANIZATION_LIMITS);
  } catch (error) {
    throw new Error(`TREBUCHET_ORGANIZATION_LIMITS: ${(error as Error).message}`);
  }
}

/** The environment variable of each HTTP limit (README: "Limits"). */
export const HTTP_LIMIT_VARIABLES: Record<keyof HttpLimits, string> = {
  headersTimeoutMs: "TREBUCHET_HEADERS_TIMEOUT_MS",
  bodyTimeoutMs: "TREBUCHET_BODY_TIMEOUT_MS",
  keepAliveTimeoutMs: "TREBUCHET_KEEP_ALIVE_TIMEOUT_MS",
  maxRequestsPerConnection: "TREBUCHET_MAX_REQUESTS_PER_CONNECTION",
  maxConnections: "TREBUCHET_MAX_CONNECTIONS",
  maxConnectionsPerAddress: "TREBUCHET_MAX_CONNECTIONS_PER_ADDRESS",
  maxUrlBytes: "TREBUCHET_MAX_URL_BYTES",
  maxHeaderBytes: "TREBUCHET_MAX_HEADER_BYTES",
};

function httpLimitsFromEnv(env: NodeJS.ProcessEnv): { httpLimits?: Partial<HttpLimits> } {
  const limits: Partial<HttpLimits> = {};
  for (const [key, name] of Object.entries(HTTP_LIMIT_VARIABLES) as [keyof HttpLimits, string][]) {
    const text = env[name];
    if (text === undefined) continue;
    const value = nonNegativeInteger(name, text);
    if (value === 0) throw new Error(`${name} must be at least 1, got "${text}"`);
    limits[key] = value;
  }
  return Object.keys(limits).length > 0 ? { httpLimits: limits } : {};
}

function nonNegativeInteger(name: string, text: string): number {
  if (!/^[0-9]{1,9}$/.test(text.trim())) throw new Error(`${name} must be a whole number, got "${text}"`);
  return Number(text.trim());
}

/** Step timeouts from the environment, in seconds (defaults suit TCG). */
function stepTimeouts(env: NodeJS.ProcessEnv = process.env) {
  const seconds = (name: string) =>
    env[name] && /^[0-9]+$/.test(env[name]!) ? Number(env[name]) * 1000 : undefined;
  const ready = seconds("TREBUCHET_READY_TIMEOUT");
  const shutdown = seconds("TREBUCHET_SHUTDOWN_TIMEOUT");
  const timeouts = { ...(ready ? { ready } : {}), ...(shutdown ? { shutdown } : {}) };
  return Object.keys(timeouts).length > 0 ? { timeouts } : {};
}

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("Run the API (PostgreSQL when DATABASE_URL is set, else SQLite in the data directory)")
    .option(
      "--listen <host:port>",
      "address to listen on",
      parseListen,
      parseListen(process.env.TREBUCHET_LISTEN ?? "127.0.0.1:8080"),
    )
    .option("--data <dir>", "data directory (default: $TREBUCHET_DATA or .data)")
    .addOption(
      new Option("--role <role>", "api: HTTP only; worker: the host agent only; all: both")
        .choices(["api", "worker", "all"])
        .default("all"),
    )
    .option(
      "--host <name>",
      "the catalog host this process's agent runs (default: the catalog's only host)",
      process.env.TREBUCHET_HOST,
    )
    .action(async (flags: { listen: ListenAddress; data?: string; role: Role; host?: string }) => {
      const config = serverConfigFromEnv(flags.data);
      const server = await createServer({
        ...config,
        role: flags.role,
        agent: {
          dataDir: config.store.dataDir ?? ".data",
          ...(flags.host ? { hostName: flags.host } : {}),
          ...stepTimeouts(),
        },
      });
      if (flags.role !== "worker")
        await server.app.listen({ host: flags.listen.host, port: flags.listen.port });
      let signals = 0;
      const stop = async (signal: string) => {
        if (++signals > 1) process.exit(130); // a second Ctrl-C does not wait
        server.app.log.info({ signal }, "draining in-flight requests, then stopping");
        await server.stop();
        process.exit(0);
      };
      process.on("SIGINT", () => void stop("SIGINT"));
      process.on("SIGTERM", () => void stop("SIGTERM"));
    });
}
