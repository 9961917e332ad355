import type { ListenAddress } from "../api/listen.js";
import { parseListen } from "../api/listen.js";
import type { OrganizationLimits } from "../lifecycle/quota.js";
import type { ServerConfig } from "../server.js";
import type { StoreOptions } from "../store/index.js";
import type { Settings } from "./settings.js";

/** The database the settings choose: PostgreSQL at database_url, else SQLite in the data directory. */
export function storeOptionsOf(settings: Settings): StoreOptions {
  return { databaseUrl: settings.database_url ?? undefined, dataDir: settings.data_dir };
}

/** What `trebuchet serve` runs, from checked settings. */
export interface ServeConfig {
  server: ServerConfig;
  listen: ListenAddress;
  /** Where GET /metrics is served; undefined: metrics are off. */
  metricsListen: ListenAddress | undefined;
}

/** Limits of organizations without their own; `unlimited` is null there. */
export function organizationLimitsOf(settings: Settings): OrganizationLimits {
  return Object.fromEntries(
    Object.entries(settings.organization_limits).map(([name, value]) => [
      name,
      value === "unlimited" ? null : value,
    ]),
  ) as unknown as OrganizationLimits;
}

export function serveConfigOf(settings: Settings): ServeConfig {
  const organizationLimits = organizationLimitsOf(settings);
  const { issuer, audience, jwks_file: jwksFile, scope_prefix: scopePrefix } = settings.oauth;
  const http = settings.http;
  const shedding = settings.load_shedding;
  return {
    listen: parseListen(settings.listen),
    metricsListen: settings.metrics_listen === null ? undefined : parseListen(settings.metrics_listen),
    server: {
      metrics: settings.metrics_listen !== null,
      store: storeOptionsOf(settings),
      role: settings.role,
      agent: {
        dataDir: settings.data_dir,
        ...(settings.host ? { hostName: settings.host } : {}),
        timeouts: {
          ready: settings.agent.ready_timeout_seconds * 1000,
          shutdown: settings.agent.shutdown_timeout_seconds * 1000,
        },
      },
      baseDomain: settings.base_domain,
      rateLimits: { ...settings.rate_limits },
      trustedProxies: [...settings.trusted_proxies],
      cors: { origins: [...settings.cors.origins] },
      ...(issuer && audience && jwksFile ? { oauth: { issuer, audience, jwksFile, scopePrefix } } : {}),
      logger: { level: settings.log_level },
      authCacheMs: settings.auth_cache_ms,
      httpLimits: {
        headersTimeoutMs: http.headers_timeout_ms,
        bodyTimeoutMs: http.body_timeout_ms,
        keepAliveTimeoutMs: http.keep_alive_timeout_ms,
        maxRequestsPerConnection: http.max_requests_per_connection,
        maxConnections: http.max_connections,
        maxConnectionsPerAddress: http.max_connections_per_address,
        maxUrlBytes: http.max_url_bytes,
        maxHeaderBytes: http.max_header_bytes,
      },
      loadShedding: {
        maxEventLoopDelayMs: shedding.max_event_loop_delay_ms,
        maxHeapUsedBytes: shedding.max_heap_used_bytes,
        maxRssBytes: shedding.max_rss_bytes,
      },
      organizationLimits,
      trashKeepSeconds: settings.trash_keep_seconds,
    },
  };
}
