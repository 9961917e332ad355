import cors from "@fastify/cors";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ApiError } from "../errors.js";

export interface CorsOptions {
  /** Origins whose pages may call the API (`https://console.example.com`), or `*` for any. */
  origins: readonly string[];
}

/** What a browser may send and read besides the simple headers. */
const ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Field-Spec"];
const EXPOSED_HEADERS = [
  "X-Request-Id",
  "X-RateLimit-Permitted",
  "X-RateLimit-Remaining",
  "Retry-After",
  "Idempotent-Replayed",
];
const PREFLIGHT_CACHE_SECONDS = 600;

/**
 * Cross-origin requests from the configured origins, preflight included. With none
 * configured nothing is added to any answer (the plugin is not even registered), and a
 * browser's preflight is refused in the envelope (see preflightRefusal).
 */
export async function registerCors(app: FastifyInstance, options: CorsOptions): Promise<void> {
  if (options.origins.length === 0) return;
  const any = options.origins.includes("*");
  const allowed = new Set(options.origins);
  await app.register(cors, {
    // Answering "*" (not the caller's origin) when any is allowed keeps answers cacheable;
    // no Origin header means no CORS at all (a preflight without one is refused below).
    origin: (origin, done) => done(null, origin === undefined ? false : any ? "*" : allowed.has(origin)),
    methods: ["GET", "POST", "PUT", "PATCH", "DELETE"],
    allowedHeaders: ALLOWED_HEADERS,
    exposedHeaders: EXPOSED_HEADERS,
    maxAge: PREFLIGHT_CACHE_SECONDS,
    strictPreflight: false,
  });
}

/** An OPTIONS request no configured origin answers: a browser's preflight gets a reason. */
export function preflightRefusal(request: FastifyRequest): ApiError | undefined {
  if (request.method !== "OPTIONS") return undefined;
  const origin = request.headers.origin;
  const method = request.headers["access-control-request-method"];
  if (origin === undefined || method === undefined) return undefined;
  return new ApiError("cors_origin_not_allowed", { origin: String(origin).slice(0, 256) });
}
