import underPressure from "@fastify/under-pressure";
import type { FastifyInstance } from "fastify";
import { getHeapStatistics } from "node:v8";
import { ApiError } from "../errors.js";

export interface LoadShedding {
  /** Mean event-loop delay over a sample above which requests are refused (ms); null: never. */
  maxEventLoopDelayMs: number | null;
  /** JavaScript heap in use above which requests are refused; null: 90% of the heap's limit. */
  maxHeapUsedBytes: number | null;
  /** Resident memory above which requests are refused; null: never. */
  maxRssBytes: number | null;
  /** How often the process is sampled (ms; tests make it short). */
  sampleIntervalMs?: number;
}

const RETRY_AFTER_SECONDS = 5;
/** Paths a saturated process still answers: a supervisor must not restart a busy process. */
const NEVER_SHED = new Set(["/healthz"]);

const WHAT: Record<string, (value: number | undefined, limits: Required<LoadShedding>) => string> = {
  eventLoopDelay: (value, limits) =>
    Number.isFinite(value)
      ? `event loop delay ${Math.round(value ?? 0)} ms is above ${limits.maxEventLoopDelayMs} ms`
      : `the event loop was blocked for a whole sample (limit ${limits.maxEventLoopDelayMs} ms)`,
  heapUsedBytes: (value, limits) => `heap in use ${mib(value)} is above ${mib(limits.maxHeapUsedBytes ?? 0)}`,
  rssBytes: (value, limits) => `resident memory ${mib(value)} is above ${mib(limits.maxRssBytes ?? 0)}`,
};

function mib(bytes: number | undefined): string {
  return `${((bytes ?? 0) / 2 ** 20).toFixed(1)} MiB`;
}

/**
 * Refuses new requests with 503 service_unavailable (and Retry-After) while the process is
 * saturated, so a backlog drains instead of every request timing out. /readyz is shed
 * too, so a load balancer sends the traffic elsewhere; /healthz is not.
 */
export async function registerLoadShedding(app: FastifyInstance, options: LoadShedding): Promise<void> {
  const limits: Required<LoadShedding> = {
    maxEventLoopDelayMs: options.maxEventLoopDelayMs,
    maxHeapUsedBytes: options.maxHeapUsedBytes ?? Math.floor(getHeapStatistics().heap_size_limit * 0.9),
    maxRssBytes: options.maxRssBytes,
    sampleIntervalMs: options.sampleIntervalMs ?? 1000,
  };
  await app.register(underPressure, {
    ...(limits.maxEventLoopDelayMs !== null ? { maxEventLoopDelay: limits.maxEventLoopDelayMs } : {}),
    ...(limits.maxHeapUsedBytes !== null ? { maxHeapUsedBytes: limits.maxHeapUsedBytes } : {}),
    ...(limits.maxRssBytes !== null ? { maxRssBytes: limits.maxRssBytes } : {}),
    sampleInterval: limits.sampleIntervalMs,
    pressureHandler: (request, reply, type, value) => {
      if (NEVER_SHED.has(request.url)) return;
      void reply.header("retry-after", String(RETRY_AFTER_SECONDS));
      return Promise.reject(
        new ApiError("service_unavailable", {
          details: `the server is overloaded: ${WHAT[type]?.(value, limits) ?? type}`,
        }),
      );
    },
  });
}
