import { sql, type Kysely } from "kysely";
import type { AgentHealth } from "../engine/agent.js";
import { migrationStatus, type Database } from "../store/index.js";

export interface HealthSources {
  db: Kysely<Database>;
  isDraining: () => boolean;
  agent?: () => AgentHealth;
  /** How long the database may take to answer before the server is not ready (ms). */
  databaseTimeoutMs: number;
}

export interface ReadinessCheck {
  name: "database" | "migrations" | "draining" | "host_agent";
  ok: boolean;
  detail: string;
}

/** A worker reconciles every 30 s: three missed rounds and it is taken as stuck. */
export const RECONCILE_STALE_MS = 90_000;

/** The host agent's check, from what it says and the time now. Pure. */
export function agentCheck(health: AgentHealth, now: number): ReadinessCheck {
  if (!health.running)
    return { name: "host_agent", ok: false, detail: "the host agent waits for its host in the catalog" };
  if (health.lastReconciledAt === undefined || now - health.lastReconciledAt > RECONCILE_STALE_MS)
    return {
      name: "host_agent",
      ok: false,
      detail:
        health.lastReconciledAt === undefined
          ? "the host agent has not reconciled its host yet"
          : `the host agent last reconciled its host ${Math.round((now - health.lastReconciledAt) / 1000)} s ago`,
    };
  return {
    name: "host_agent",
    ok: true,
    detail: `reconciled ${Math.round((now - health.lastReconciledAt) / 1000)} s ago`,
  };
}

class TimedOut extends Error {}

function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimedOut()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Every readiness check: the database answers in time, its schema is current, not draining, the agent reconciles. */
export async function readinessChecks(sources: HealthSources, now = Date.now()): Promise<ReadinessCheck[]> {
  const checks: ReadinessCheck[] = [];
  try {
    const started = performance.now();
    await within(sql`select 1`.execute(sources.db), sources.databaseTimeoutMs);
    checks.push({
      name: "database",
      ok: true,
      detail: `answered in ${Math.round(performance.now() - started)} ms`,
    });
    const pending = (await within(migrationStatus(sources.db), sources.databaseTimeoutMs))
      .filter((m) => m.executedAt === null)
      .map((m) => m.name);
    checks.push(
      pending.length === 0
        ? { name: "migrations", ok: true, detail: "every migration is applied" }
        : { name: "migrations", ok: false, detail: `not applied: ${pending.join(", ")}` },
    );
  } catch (error) {
    checks.push({
      name: "database",
      ok: false,
      detail:
        error instanceof TimedOut
          ? `no answer within ${sources.databaseTimeoutMs} ms`
          : `unreachable: ${(error as Error).message}`,
    });
  }
  checks.push(
    sources.isDraining()
      ? { name: "draining", ok: false, detail: "the server is shutting down" }
      : { name: "draining", ok: true, detail: "serving" },
  );
  if (sources.agent) checks.push(agentCheck(sources.agent(), now));
  return checks;
}
