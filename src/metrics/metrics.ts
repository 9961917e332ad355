import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { RequestObserver } from "../api/app.js";
import type { WorkerEvents } from "../engine/worker.js";
import type { StatementObserver } from "../store/index.js";

/** Prometheus buckets (seconds) for HTTP requests: most answer in milliseconds. */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** A build under TCG takes minutes, under KVM seconds. */
const BUILD_BUCKETS = [5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200];
const STATEMENT_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5];

/**
 * What this process counts as it runs: HTTP requests, finished builds and tasks, lease
 * takeovers, retries, rate-limit refusals and database statements. Each server has its
 * own registry (tests run several in one process). Figures the database holds (builds
 * by state, the queue, VMs, hosts' capacity) are read when scraped: see gauges.ts.
 */
export class Metrics implements RequestObserver, WorkerEvents, StatementObserver {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: "trebuchet_http_requests_total",
    help: "HTTP requests answered, by API operation and status code",
    labelNames: ["operation", "status"] as const,
    registers: [this.registry],
  });
  private readonly requestSeconds = new Histogram({
    name: "trebuchet_http_request_duration_seconds",
    help: "Time from a request's arrival to its answer, by API operation and status code",
    labelNames: ["operation", "status"] as const,
    buckets: REQUEST_BUCKETS,
    registers: [this.registry],
  });
  private readonly rateLimitRefusals = new Counter({
    name: "trebuchet_rate_limit_refusals_total",
    help: "Requests refused with rate_limit_reached, by rate-limit bucket",
    labelNames: ["bucket"] as const,
    registers: [this.registry],
  });
  private readonly buildSeconds = new Histogram({
    name: "trebuchet_build_duration_seconds",
    help: "Time from a build's acceptance to its end (complete or failed), for builds this process's host agent finished",
    labelNames: ["outcome"] as const,
    buckets: BUILD_BUCKETS,
    registers: [this.registry],
  });
  private readonly tasks = new Counter({
    name: "trebuchet_tasks_finished_total",
    help: "Tasks this process's host agent finished, by action and outcome",
    labelNames: ["action", "outcome"] as const,
    registers: [this.registry],
  });
  private readonly takeovers = new Counter({
    name: "trebuchet_lease_takeovers_total",
    help: "Builds and tasks claimed from a worker whose lease ran out, by kind",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  private readonly retries = new Counter({
    name: "trebuchet_retries_total",
    help: "Work done again: a build's next attempt after an interruption, or a host step after a transient error",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  private readonly statementSeconds = new Histogram({
    name: "trebuchet_database_statement_duration_seconds",
    help: "Time the database took to run a statement, by outcome",
    labelNames: ["outcome"] as const,
    buckets: STATEMENT_BUCKETS,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // Zeroes up front, so a rate() over them exists before the first event.
    for (const kind of ["build", "task"]) this.takeovers.inc({ kind }, 0);
    for (const kind of ["build_attempt", "host_step"]) this.retries.inc({ kind }, 0);
  }

  /** A gauge whose value is read from somewhere when scraped. */
  gauge<Label extends string>(
    name: string,
    help: string,
    labelNames: readonly Label[],
    collect: (gauge: Gauge<Label>) => Promise<void> | void,
  ): void {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      async collect() {
        this.reset();
        await collect(this);
      },
    });
  }

  request(operation: string, status: number, seconds: number): void {
    const labels = { operation, status: String(status) };
    this.requests.inc(labels);
    this.requestSeconds.observe(labels, seconds);
  }

  rateLimited(bucket: string): void {
    this.rateLimitRefusals.inc({ bucket });
  }

  buildFinished(outcome: "complete" | "failed", seconds: number): void {
    this.buildSeconds.observe({ outcome }, seconds);
  }

  taskFinished(action: string, outcome: "completed" | "failed"): void {
    this.tasks.inc({ action, outcome });
  }

  leaseTakenOver(kind: "build" | "task"): void {
    this.takeovers.inc({ kind });
  }

  retried(kind: "build_attempt" | "host_step"): void {
    this.retries.inc({ kind });
  }

  statement(seconds: number, failed: boolean): void {
    this.statementSeconds.observe({ outcome: failed ? "error" : "ok" }, seconds);
  }

  /** The text exposition format, for GET /metrics. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
