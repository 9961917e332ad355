import { randomUUID } from "node:crypto";
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from "fastify";
import type { Authenticator } from "../auth/authenticate.js";
import type { Identity } from "../auth/identity.js";
import type { RateLimiter, RateLimitResult } from "../auth/rate-limit.js";
import { isInMaintenance } from "../catalog/accounts.js";
import { ApiError, routeNotFound } from "../errors.js";
import { isDatabaseUnavailable, shareReadsUntilTurnEnds } from "../store/index.js";
import { LimitReached } from "../lifecycle/index.js";
import { limitReachedError } from "./refusals.js";
import { BodyDeadlines, encodingRefusal } from "./body-guards.js";
import type { AgentHealth } from "../engine/agent.js";
import { readinessChecks } from "./health.js";
import { registerOpenApiRoutes } from "./openapi/routes.js";
import { preflightRefusal, registerCors, type CorsOptions } from "./cors.js";
import { registerLoadShedding, type LoadShedding } from "./load-shedding.js";
import {
  ConnectionCaps,
  DEFAULT_HTTP_LIMITS,
  TIMEOUT_CHECK_INTERVAL_MS,
  type HttpLimits,
} from "./http-limits.js";
import { readJsonBody } from "./json-limits.js";
import { onClientError, onConnectMethod, onUnmetExpectation } from "./raw-answers.js";
import { mergeArguments, nulCharacterRefusal, parseQuery, type ArgumentBag } from "./arguments.js";
import type { Operation, Services } from "./operation.js";
import { routePath } from "./operation.js";

export const BASE_PATH = "/core/v1";
export const DEFAULT_BODY_LIMIT = 512 * 1024;

export interface AppOptions {
  services: Services;
  authenticator: Authenticator;
  rateLimiter: RateLimiter;
  operations: readonly Operation[];
  bodyLimit?: number;
  /** Time, connection and size limits of the HTTP server (defaults: DEFAULT_HTTP_LIMITS). */
  httpLimits?: Partial<HttpLimits>;
  /** Addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed. */
  trustedProxies?: string[];
  logger?: boolean | { level: string; stream?: NodeJS.WritableStream };
  /** How long the maintenance flag is cached per process (ms). */
  maintenanceCacheMs?: number;
  /** What /readyz asks besides the database: the in-process host agent, if any. */
  health?: { agent?: () => AgentHealth; databaseTimeoutMs?: number };
  /** Origins browsers may call the API from (default: none). */
  cors?: CorsOptions;
  /** When a saturated process refuses new requests (default: never; `serve` passes the configuration's). */
  loadShedding?: LoadShedding;
  /** Told of every answer and every rate-limit refusal (metrics; default: nobody). */
  observer?: RequestObserver;
}

export interface RequestObserver {
  /** `operation` is the Katapult operation's name, or what else answered (`healthz`, `route_not_found`). */
  request(operation: string, status: number, seconds: number): void;
  rateLimited(bucket: string): void;
}

/** The name requests to a route are counted under: set in each route's config. */
interface RouteConfig {
  operation?: string;
}

declare module "fastify" {
  interface FastifyRequest {
    rateLimit?: RateLimitResult;
    /** Who is calling, set before the body is read (see the routes' onRequest). */
    identity?: Identity;
  }
}

/** How long the database may take to answer /readyz's query before the server is not ready. */
const READY_DATABASE_TIMEOUT_MS = 2_000;

// Katapult also answers Access-Control-Allow-Origin: * on every response; here CORS is
// the operator's choice (cors.ts).
const COMMON_HEADERS = {
  "cache-control": "max-age=0, private, must-revalidate",
};

/**
 * The HTTP front door: Katapult paths under /core/v1, arguments from the query string
 * and JSON bodies, authentication, scopes, rate limits, and the documented error
 * envelope for every failure, including the framework's own (unknown route, bad JSON,
 * wrong content type, oversized body).
 */
export interface Api {
  app: FastifyInstance;
  /** From now on, new requests get 503 while in-flight ones finish. */
  startDraining(): void;
}

export async function buildApp(options: AppOptions): Promise<Api> {
  const { services, authenticator, rateLimiter } = options;
  const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS, ...options.httpLimits };
  const requestTimeout = limits.headersTimeoutMs + limits.bodyTimeoutMs;
  const app = Fastify({
    logger:
      options.logger === undefined ? false : options.logger === true ? { level: "info" } : options.logger,
    genReqId: () => randomUUID(),
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    trustProxy: options.trustedProxies && options.trustedProxies.length > 0 ? options.trustedProxies : false,
    return503OnClosing: false,
    forceCloseConnections: "idle",
    // Node's parser cuts slow headers and slow requests (a body refused before it is read
    // is still read to its end, within the request's time) and answers through clientError.
    http: {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
      maxHeaderSize: limits.maxHeaderBytes,
      // A missing Host is answered in the envelope (onRequest below), not by Node.
      requireHostHeader: false,
    },
    requestTimeout,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    maxRequestsPerSocket: limits.maxRequestsPerConnection,
    clientErrorHandler: onClientError(limits),
    frameworkErrors: (error, request, reply) => {
      void reply.headers(COMMON_HEADERS).header("x-request-id", request.id);
      return sendError(
        reply,
        error.code === "FST_ERR_MAX_PARAM_LENGTH"
          ? new ApiError("uri_too_long", { limit_in_bytes: limits.maxUrlBytes })
          : error.code === "FST_ERR_BAD_URL"
            ? new ApiError("malformed_request", { details: "the path holds an invalid percent-escape" })
            : new ApiError("malformed_request", { details: error.message }),
      );
    },
    // The router parses every query string anyway: have it parse Apia's way, once. Path
    // segments are as long as the URL allows, so a long ID reads as it does in the query.
    routerOptions: {
      ignoreTrailingSlash: true,
      maxParamLength: limits.maxUrlBytes,
      querystringParser: parseQuery,
    },
  });
  const caps = new ConnectionCaps(limits, options.trustedProxies);
  caps.attach(app.server);
  app.server.on("checkExpectation", onUnmetExpectation);
  app.server.on("connect", onConnectMethod);
  const bodyDeadlines = new BodyDeadlines(limits.bodyTimeoutMs);

  let draining = false;
  let maintenance = { on: false, checkedAt: 0 };
  const maintenanceCacheMs = options.maintenanceCacheMs ?? 1000;

  // Bodies: JSON only, on every method (GET too, as Apia reads them). Empty bodies are no
  // arguments; anything else must parse. A body read to its end but refused becomes the
  // request's error (thrown by the handler), so its connection stays open for the next.
  app.addHttpMethod("GET", { hasBody: true, overrideExisting: true });
  app.removeAllContentTypeParsers();
  // (No preParsing hook: every request would pay for it. The encoding is checked here,
  // where only requests with a body go.)
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    done(null, encodingRefusal(request.headers["content-encoding"]) ?? readJsonBody(body as string));
  });
  app.addContentTypeParser("*", { parseAs: "buffer" }, (request, body, done) => {
    if ((body as Buffer).length === 0) return done(null, {});
    done(
      null,
      encodingRefusal(request.headers["content-encoding"]) ?? new ApiError("unsupported_media_type"),
    );
  });

  // GETs that arrive from the network in one poll phase may share a read snapshot (see
  // store/snapshot-reader.ts). Other methods write, and a write ends the snapshot
  // anyway. Injected requests (tests) do not arrive in a poll phase.
  // Properties set on every request are declared up front, so requests keep one shape.
  app.decorateRequest("rateLimit", undefined);
  app.decorateRequest("identity", undefined);

  app.server.prependListener("request", (request: { method?: string }) => {
    if (request.method === "GET") shareReadsUntilTurnEnds(services.db);
  });

  // Hooks every request passes through take callbacks: an async hook costs a promise each time.
  app.addHook("onRequest", (request, reply, done) => {
    void reply.headers(COMMON_HEADERS).header("x-request-id", request.id);
    done(
      // A draining process is still alive: /healthz says so; everything else is refused.
      draining && request.url !== "/healthz"
        ? new ApiError("service_unavailable", { details: "the server is shutting down" })
        : (caps.refusal(request.raw.socket) ?? requestLineRefusal(request, limits)),
    );
  });

  const observer = options.observer;
  if (observer)
    app.addHook("onResponse", (request, reply, done) => {
      const operation =
        (request.routeOptions.config as RouteConfig).operation ??
        (request.is404 ? "route_not_found" : request.method === "OPTIONS" ? "cors_preflight" : "other");
      observer.request(operation, reply.statusCode, reply.elapsedTime / 1000);
      done();
    });

  // Shedding and CORS come after the hook above, so their answers carry the request ID too.
  if (options.loadShedding) await registerLoadShedding(app, options.loadShedding);
  await registerCors(app, options.cors ?? { origins: [] });

  // Every answer but a hijacked one (event streams) leaves through sendError or a route
  // handler's send: both add what the real API puts on every response.
  const finishHeaders = (reply: FastifyReply) => {
    // Unauthenticated responses still carry the allowance, as the real API's do.
    const limit = reply.request.rateLimit;
    const permitted = limit ? limit.permitted : rateLimiter.permitted("read");
    void reply.headers({
      "x-ratelimit-permitted": String(permitted),
      "x-ratelimit-remaining": String(limit ? limit.remaining : permitted),
    });
    // While draining, every answer closes its connection, so keep-alive clients cannot hold shutdown up.
    if (draining) void reply.header("connection", "close");
  };

  const sendError = (reply: FastifyReply, error: ApiError) => {
    void reply
      .code(error.status)
      .headers({ "x-api-schema": "json-error", ...error.headers })
      .type("application/json; charset=utf-8");
    finishHeaders(reply);
    return reply.send(error.toBody());
  };

  app.setErrorHandler((error: FastifyError | ApiError, request, reply) => {
    if (error instanceof ApiError) return sendError(reply, error);
    if (error instanceof LimitReached) return sendError(reply, limitReachedError(error));
    switch (error.code) {
      case "FST_ERR_CTP_BODY_TOO_LARGE":
        return sendError(
          reply,
          new ApiError("request_too_large", { limit_in_bytes: options.bodyLimit ?? DEFAULT_BODY_LIMIT }),
        );
      case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
        return sendError(reply, new ApiError("unsupported_media_type"));
      case "FST_ERR_CTP_EMPTY_JSON_BODY":
        return sendError(reply, new ApiError("invalid_json_body", { details: "empty body" }));
    }
    if (error.statusCode === 400 && error.code?.startsWith("FST_")) {
      return sendError(reply, new ApiError("invalid_json_body", { details: error.message }));
    }
    // A backstop for text the database cannot store (invalid UTF-8, NUL) that reached it.
    if (error.code === "22021" || error.code === "22P05") {
      return sendError(
        reply,
        new ApiError(
          "invalid_argument",
          { issue: "parse_error", errors: ["an argument holds characters that cannot be stored"] },
          "An argument holds characters that cannot be stored",
        ),
      );
    }
    if (isDatabaseUnavailable(error)) {
      request.log.warn({ err: error }, "database unavailable");
      return sendError(reply, new ApiError("service_unavailable"));
    }
    request.log.error({ err: error }, "unhandled error");
    return sendError(reply, new ApiError("unhandled_exception"));
  });

  // Health, without credentials, for load balancers, supervisors and orchestrators.
  app.get("/healthz", { config: { operation: "healthz" } }, (_request, reply) => {
    finishHeaders(reply);
    return reply.type("application/json; charset=utf-8").send({ status: "alive" });
  });
  app.get("/readyz", { config: { operation: "readyz" } }, async (_request, reply) => {
    const checks = await readinessChecks({
      db: services.db,
      isDraining: () => draining,
      databaseTimeoutMs: options.health?.databaseTimeoutMs ?? READY_DATABASE_TIMEOUT_MS,
      ...(options.health?.agent ? { agent: options.health.agent } : {}),
    });
    const failing = checks.filter((check) => !check.ok);
    if (failing.length > 0)
      throw new ApiError("service_unavailable", {
        details: "not ready: " + failing.map((check) => `${check.name}: ${check.detail}`).join("; "),
        checks,
      });
    finishHeaders(reply);
    return reply.type("application/json; charset=utf-8").send({ status: "ready", checks });
  });

  registerOpenApiRoutes(app, options.operations, finishHeaders);

  app.setNotFoundHandler((request, reply) => {
    const refusal = preflightRefusal(request);
    if (refusal) return sendError(reply, refusal);
    const path = request.url.split("?")[0]!.replace(/^\/core\/v1\/?/, "");
    return sendError(reply, routeNotFound(request.method, path));
  });

  const authenticate = async (request: FastifyRequest, operation: Operation): Promise<Identity> => {
    const now = Date.now();
    if (now - maintenance.checkedAt > maintenanceCacheMs) {
      maintenance = { on: await isInMaintenance(services.db), checkedAt: now };
    }
    if (maintenance.on)
      throw new ApiError("service_unavailable", { details: "the service is in maintenance" });
    const identity = await authenticator.authenticate(request.headers.authorization, request.ip);
    const limit = await rateLimiter.hit(identity.id, operation.bucket);
    request.rateLimit = limit;
    if (limit.exceeded) {
      observer?.rateLimited(operation.bucket);
      throw new ApiError("rate_limit_reached", { total_permitted: limit.permitted }, undefined, {
        "retry-after": String(limit.resetIn),
      });
    }
    if (operation.scopes.length > 0 && identity.scopes !== "all") {
      const scopes = identity.scopes;
      if (!operation.scopes.some((scope) => scopes.has(scope))) {
        throw new ApiError("scope_not_granted", { scopes: [...operation.scopes] });
      }
    }
    if (identity.operations && !identity.operations.has(operation.name)) {
      throw new ApiError("scope_not_granted", { scopes: [...operation.scopes], operation: operation.name });
    }
    return identity;
  };

  for (const operation of options.operations) {
    app.route({
      method: operation.method,
      url: BASE_PATH + routePath(operation.path),
      config: { operation: operation.name } satisfies RouteConfig,
      // Credentials, rate limit and scopes are checked before the body is read: a refused
      // request costs no parsing, however large its body.
      onRequest: (request, _reply, done) => {
        authenticate(request, operation).then((identity) => {
          request.identity = identity;
          bodyDeadlines.watch(request.raw);
          done();
        }, done);
      },
      handler: async (request, reply) => {
        const identity = request.identity!;
        if (request.body instanceof ApiError) throw request.body;
        const args = mergeArguments(request.query as ArgumentBag, request.body);
        const segments = (request.params ?? {}) as Record<string, string>;
        const refusal = nulCharacterRefusal(args, segments, operation.documentArgument);
        if (refusal) throw refusal;
        const result = await operation.handle({
          services,
          identity,
          args,
          segments,
          request,
          reply,
          operation,
        });
        if (reply.sent) return reply;
        finishHeaders(reply);
        return reply
          .code(result.status ?? 200)
          .headers(result.headers ?? {})
          .type("application/json; charset=utf-8")
          .send(result.body);
      },
    });
  }

  return {
    app,
    startDraining() {
      draining = true;
    },
  };
}

/** A request Node's parser let through that HTTP/1.1 or our limits do not. */
function requestLineRefusal(request: FastifyRequest, limits: HttpLimits): ApiError | undefined {
  if (request.raw.url !== undefined && request.raw.url.length > limits.maxUrlBytes)
    return new ApiError("uri_too_long", { limit_in_bytes: limits.maxUrlBytes });
  if (request.headers.host === undefined && request.raw.httpVersion === "1.1")
    return new ApiError("malformed_request", { details: "an HTTP/1.1 request needs a Host header" });
  return undefined;
}
