import type { FastifyInstance } from "fastify";
import { buildApp, type Api } from "./api/app.js";
import type { HttpLimits } from "./api/http-limits.js";
import type { CorsOptions } from "./api/cors.js";
import type { LoadShedding } from "./api/load-shedding.js";
import { hotQueries } from "./api/hot-queries.js";
import { RenderedBodies } from "./api/rendered-bodies.js";
import { OPERATIONS } from "./api/operations.js";
import { Metrics } from "./metrics/metrics.js";
import { registerRecordedGauges } from "./metrics/gauges.js";
import { Authenticator } from "./auth/authenticate.js";
import { OAuthVerifier, type OAuthConfig } from "./auth/oauth.js";
import { SnapshotLoader } from "./catalog/snapshot.js";
import { HostAgent } from "./engine/agent.js";
import {
  DEFAULT_ORGANIZATION_LIMITS,
  deleteDueBackupPolicies,
  OneAtATime,
  purgeExpiredTrash,
  type OrganizationLimits,
} from "./lifecycle/index.js";
import type { HostDriver, StepTimeouts } from "./hosts/driver.js";
import { RateLimiter, type RateLimits, DEFAULT_RATE_LIMITS } from "./auth/rate-limit.js";
import {
  HOUSEKEEPING_INTERVAL_MS,
  openStore,
  purgeExpired,
  type Store,
  type StoreOptions,
} from "./store/index.js";

export type Role = "api" | "worker" | "all";

export interface ServerConfig {
  store: StoreOptions;
  /** `api` serves HTTP only, `worker` runs the host agent only, `all` both (the default). */
  role?: Role;
  /** The host agent: which catalog host, and the data directory of its templates and VMs. */
  agent?: {
    hostName?: string;
    dataDir: string;
    timeouts?: Partial<StepTimeouts>;
    leaseSeconds?: number;
    pollMs?: number;
    instrument?: (driver: HostDriver) => HostDriver;
  };
  /** Organizations' infrastructure domains are `<sub_domain>.<baseDomain>`. */
  baseDomain: string;
  rateLimits?: RateLimits;
  trustedProxies?: string[];
  oauth?: OAuthConfig;
  bodyLimit?: number;
  /** Time, connection and size limits of the HTTP server. */
  httpLimits?: Partial<HttpLimits>;
  /** Origins browsers may call the API from (default: none). */
  cors?: CorsOptions;
  /** When a saturated process refuses new requests (default: never; `serve` passes the configuration's). */
  loadShedding?: LoadShedding;
  /** Limits of organizations that have none of their own; missing ones are the built-in defaults. */
  organizationLimits?: Partial<OrganizationLimits>;
  /** How often expired idempotency keys and trash are purged (ms). */
  housekeepingMs?: number;
  /** How long a deleted object stays in the trash before it is purged (seconds; default 1 day). */
  trashKeepSeconds?: number;
  /** How long a token or an organization's state may be served from memory (ms; 0 = never). */
  authCacheMs?: number;
  logger?: boolean | { level: string; stream?: NodeJS.WritableStream };
  /** Count requests, builds, tasks and statements for Prometheus (default: off; `serve` turns it on with metrics_listen). */
  metrics?: boolean;
}

export const DEFAULT_BASE_DOMAIN = "trebuchet.internal";
export const DEFAULT_TRASH_KEEP_SECONDS = 24 * 3600;

/** The configured limits over the built-in ones; a limit given as undefined keeps its default. */
function withDefaults(limits: Partial<OrganizationLimits> = {}): OrganizationLimits {
  const given = Object.entries(limits).filter(([, value]) => value !== undefined);
  return { ...DEFAULT_ORGANIZATION_LIMITS, ...Object.fromEntries(given) };
}
const DRAIN_GRACE_MS = 15_000;

export interface RunningServer {
  api: Api;
  app: FastifyInstance;
  store: Store;
  agent: HostAgent | undefined;
  /** What /metrics serves, when config.metrics is on (see metrics/listen.ts). */
  metrics: Metrics | undefined;
  /** Drains in-flight requests (new ones get 503), then closes the listener and the database. */
  stop(): Promise<void>;
}

/** Opens the store (migrating it) and assembles the API on it; the caller listens. */
export async function createServer(config: ServerConfig): Promise<RunningServer> {
  const metrics = config.metrics ? new Metrics() : undefined;
  const store = await openStore(metrics ? { ...config.store, statements: metrics } : config.store);
  const role = config.role ?? "all";
  const closing = new AbortController();
  const agent =
    role !== "api" && config.agent
      ? new HostAgent({
          db: store.db,
          dataDir: config.agent.dataDir,
          log: (message, fields) => api.app.log.info(fields ?? {}, message),
          ...(config.agent.hostName ? { hostName: config.agent.hostName } : {}),
          ...(config.agent.timeouts ? { timeouts: config.agent.timeouts } : {}),
          ...(config.agent.leaseSeconds ? { leaseSeconds: config.agent.leaseSeconds } : {}),
          ...(config.agent.pollMs ? { pollMs: config.agent.pollMs } : {}),
          ...(config.agent.instrument ? { instrument: config.agent.instrument } : {}),
          ...(metrics ? { events: metrics } : {}),
        })
      : undefined;
  if (metrics) registerRecordedGauges(metrics, store.db, agent ? () => agent.processes() : undefined);
  let api: Api;
  try {
    api = await buildApp({
      services: {
        db: store.db,
        groupCommit: store.groupCommit,
        baseDomain: config.baseDomain,
        snapshots: new SnapshotLoader(store.db),
        queries: hotQueries(store.db, config.authCacheMs),
        renderedBodies: new RenderedBodies(),
        idempotentRequests: new OneAtATime(),
        now: () => Math.floor(Date.now() / 1000),
        trashKeepSeconds: config.trashKeepSeconds ?? DEFAULT_TRASH_KEEP_SECONDS,
        organizationLimits: withDefaults(config.organizationLimits),
        closing: closing.signal,
        ...(agent ? { notifyWork: () => agent.poke(), consoles: (vmId: string) => agent.console(vmId) } : {}),
      },
      authenticator: new Authenticator(
        store.db,
        config.oauth ? new OAuthVerifier(config.oauth) : undefined,
        config.authCacheMs,
      ),
      rateLimiter: new RateLimiter(store.db, config.rateLimits ?? DEFAULT_RATE_LIMITS),
      operations: OPERATIONS,
      ...(config.bodyLimit ? { bodyLimit: config.bodyLimit } : {}),
      ...(config.httpLimits ? { httpLimits: config.httpLimits } : {}),
      ...(config.cors ? { cors: config.cors } : {}),
      ...(config.loadShedding ? { loadShedding: config.loadShedding } : {}),
      ...(config.trustedProxies ? { trustedProxies: config.trustedProxies } : {}),
      ...(config.logger !== undefined ? { logger: config.logger } : {}),
      ...(agent ? { health: { agent: () => agent.health() } } : {}),
      ...(metrics ? { observer: metrics } : {}),
    });
    void agent
      ?.start()
      .catch((error: Error) => api.app.log.error({ err: error }, "the host agent could not start"));
    const housekeeping = setInterval(() => {
      const now = Math.floor(Date.now() / 1000);
      void (async () => {
        await purgeExpired(store.db, now);
        await deleteDueBackupPolicies(store.db, now);
        if ((await purgeExpiredTrash(store.db, now)) > 0) agent?.poke();
      })().catch((error: Error) =>
        api.app.log.warn({ err: error }, "housekeeping failed; trying again later"),
      );
    }, config.housekeepingMs ?? HOUSEKEEPING_INTERVAL_MS);
    housekeeping.unref();
    let stopping: Promise<void> | undefined;
    return {
      api,
      app: api.app,
      store,
      agent,
      metrics,
      stop() {
        stopping ??= (async () => {
          api.startDraining();
          closing.abort();
          clearInterval(housekeeping);
          await agent?.stop();
          // In-flight requests get a grace period; connections still open after it are cut.
          const grace = setTimeout(() => api.app.server.closeAllConnections(), DRAIN_GRACE_MS);
          try {
            await api.app.close();
          } finally {
            clearTimeout(grace);
          }
          await store.close();
        })();
        return stopping;
      },
    };
  } catch (error) {
    await store.close();
    throw error;
  }
}
