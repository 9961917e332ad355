/**
 * The hostile-client suite: 2,100 generated hostile requests (test/support/hostile-cases.ts,
 * seven kinds) against a real `trebuchet serve` process over real sockets, on both
 * databases. For every one: no 5xx, every answer in the envelope with a request ID, an
 * answer or a close within a bounded time, and nothing of the other tenant's in any
 * answer. Throughout, another client's requests keep their normal latency; afterwards
 * the server is alive and its memory is back under its idle bound.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import { createServer as createNetServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyCatalog } from "../../src/catalog/apply.js";
import { createApiToken, createOrganization } from "../../src/catalog/accounts.js";
import { ERRORS, type ErrorCode } from "../../src/errors.js";
import { EXAMPLE_CATALOG } from "../support/api.js";
import { CLI, ROOT, SERVICE_NODE_FLAGS } from "../support/cli.js";
import { hostileCases, type HostileCase, type Victim } from "../support/hostile-cases.js";
import { exchange, type RawResponse } from "../support/raw-http.js";
import { DIALECTS, openTestStore, type TestStore } from "../support/stores.js";

const PER_CATEGORY = 300;
const CONCURRENCY = 24;
/** Headers and bodies must arrive within 1 s here: a case must be answered or closed well within this. */
const ANSWER_BOUND_MS = 3_000;
/**
 * How far above its idle RSS the server may stay once the storm is over: V8 keeps some of
 * the heap it grew for 24 requests in flight (bodies up to 512 KiB, their parsing), but
 * a leak of what 2,100 requests held would pass it.
 */
const IDLE_GROWTH_BOUND = 96 * 1024 * 1024;
const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createNetServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** A keep-alive client from another address (127.0.0.2): a tenant going about its business. */
function bystander(port: number, token: string) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  return () =>
    new Promise<{ status: number; ms: number }>((resolve) => {
      const started = performance.now();
      const req = http.get(
        {
          host: "127.0.0.1",
          port,
          path: "/core/v1/organizations",
          localAddress: "127.0.0.2",
          agent,
          headers: { authorization: `Bearer ${token}` },
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - started }));
        },
      );
      req.on("error", () => resolve({ status: 0, ms: performance.now() - started }));
      req.setTimeout(5_000, () => req.destroy());
    });
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))]!;

/** What is wrong with one answer, if anything. */
function answerProblems(response: RawResponse, markers: string[], asTenant: boolean): string[] {
  const problems: string[] = [];
  if (response.status >= 500 || response.status < 100) problems.push(`status ${response.status}`);
  if (!/^[0-9a-f-]{36}$/.test(response.headers["x-request-id"] ?? "")) problems.push("no X-Request-Id");
  if (response.status >= 400) {
    try {
      const error = (JSON.parse(response.body) as { error?: Record<string, unknown> }).error;
      const code = error?.code as ErrorCode | undefined;
      if (!code || !ERRORS[code]) problems.push(`unknown code ${String(code)}`);
      else if (ERRORS[code].status !== response.status) problems.push(`${code} answered ${response.status}`);
      if (typeof error?.description !== "string") problems.push("no description");
      if (typeof error?.detail !== "object" || error.detail === null) problems.push("no detail");
    } catch {
      problems.push(`not JSON: ${response.body.slice(0, 80)}`);
    }
  }
  if (asTenant)
    for (const marker of markers) if (response.body.includes(marker)) problems.push(`shows ${marker}`);
  return problems;
}

describe.each(DIALECTS)("hostile clients against trebuchet serve on %s", (dialect) => {
  let store: TestStore;
  let child: ChildProcess;
  let port: number;
  let tokens: { acme: string; globex: string };
  let victim: Victim;
  let markers: string[];

  const call = async (token: string, method: string, path: string, body?: unknown) => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: response.status, body: (await response.json()) as Record<string, any> };
  };

  beforeAll(async () => {
    store = await openTestStore(dialect);
    await applyCatalog(store.db, EXAMPLE_CATALOG);
    tokens = { acme: "", globex: "" };
    for (const subDomain of ["acme", "globex"] as const) {
      await createOrganization(store.db, { subDomain, name: subDomain, baseDomain: "t.test" });
      const created = await createApiToken(store.db, {
        subDomain,
        name: "t",
        role: "admin",
        scopes: [],
        allowedNetworks: [],
      });
      tokens[subDomain] = created.token;
    }
    await store.close();
    port = await freePort();
    const database =
      "databaseUrl" in store.options
        ? { DATABASE_URL: store.options.databaseUrl }
        : { DATABASE_URL: "", TREBUCHET_DATA: store.options.dataDir };
    child = spawn(
      process.execPath,
      [...SERVICE_NODE_FLAGS, CLI, "serve", "--role", "api", "--listen", `127.0.0.1:${port}`],
      {
        cwd: ROOT,
        env: {
          ...process.env,
          ...database,
          TREBUCHET_BASE_DOMAIN: "t.test",
          TREBUCHET_HEADERS_TIMEOUT_MS: "1000",
          TREBUCHET_BODY_TIMEOUT_MS: "1000",
          TREBUCHET_RATE_LIMITS: "read=10000000,write=10000000,build=10000000",
          TREBUCHET_LOG_LEVEL: "silent",
        },
        stdio: ["ignore", "ignore", "inherit"],
      },
    );
    for (let i = 0; ; i++) {
      const up = await fetch(`http://127.0.0.1:${port}/core/v1/organizations`).then(
        () => true,
        () => false,
      );
      if (up) break;
      if (i > 200) throw new Error("trebuchet serve did not start");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    // The other tenant's objects, with things in them only their owner could know.
    const built = await call(
      tokens.acme,
      "POST",
      "/core/v1/organizations/_/virtual_machines/build_from_spec",
      {
        organization: { sub_domain: "acme" },
        xml: WEB_XML.replace("web-01", "acme-secret-host").replace(
          "The example from the Trebuchet README",
          "acme secret description",
        ),
      },
    );
    expect(built.status, JSON.stringify(built.body)).toBe(201);
    // A build in progress names no VM yet (as Katapult): the organization's list does.
    const list = await call(
      tokens.acme,
      "GET",
      "/core/v1/organizations/_/virtual_machines?organization[sub_domain]=acme",
    );
    const vmId = list.body.virtual_machines[0].id as string;
    const vm = await call(tokens.acme, "GET", `/core/v1/virtual_machines/${vmId}`);
    const ip = await call(tokens.acme, "POST", "/core/v1/organizations/_/ip_addresses", {
      organization: { sub_domain: "acme" },
      network: { permalink: "lab-1-public" },
      version: "ipv4",
      vip: true,
      label: "acme-secret-label",
    });
    const disk = await call(tokens.acme, "POST", "/core/v1/organizations/_/disks", {
      organization: { sub_domain: "acme" },
      properties: { name: "acme-secret-disk", size_in_gb: 1, data_center: { permalink: "lab-1" } },
    });
    expect([ip.status, disk.status]).toEqual([200, 201]);
    const orgs = await call(tokens.acme, "GET", "/core/v1/organizations");
    victim = {
      vmId,
      buildId: built.body.virtual_machine_build.id,
      taskId: built.body.task.id,
      ipId: ip.body.ip_address.id,
      ipAddress: ip.body.ip_address.address,
      diskId: disk.body.disk.id,
      subDomain: "acme",
      orgId: orgs.body.organizations[0].id,
    };
    const vmAddresses = (vm.body.virtual_machine.ip_addresses as { address: string }[]).map((a) => a.address);
    expect(vmAddresses.length).toBeGreaterThan(0);
    markers = [
      "acme-secret-host",
      "acme secret description",
      "acme-secret-label",
      "acme-secret-disk",
      ...vmAddresses,
    ];
  }, 60_000);

  afterAll(async () => {
    child?.kill("SIGTERM");
    await new Promise((resolve) => child?.once("exit", resolve));
    await store?.dispose();
  });

  it("2,100 hostile requests: no 5xx, every answer Trebuchet's, bounded, nothing of another tenant's; a bystander unharmed", async () => {
    const cases = hostileCases({ seed: 12, perCategory: PER_CATEGORY, token: tokens.globex, victim });
    expect(cases.length).toBe(2_100);
    const ask = bystander(port, tokens.acme);
    const baseline: number[] = [];
    for (let i = 0; i < 40; i++) {
      const { status, ms } = await ask();
      expect(status).toBe(200);
      baseline.push(ms);
    }
    const idleRss = rssBytes(child.pid!);

    let storming = true;
    const during: { status: number; ms: number }[] = [];
    const watching = (async () => {
      while (storming) {
        during.push(await ask());
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();

    const failures: string[] = [];
    const byCategory = new Map<string, number>();
    let peakRss = idleRss;
    let next = 0;
    const worker = async () => {
      while (next < cases.length) {
        const index = next++;
        const hostile: HostileCase = cases[index]!;
        const result = await exchange(port, hostile.pieces, {
          responses: hostile.answers,
          waitMs: ANSWER_BOUND_MS,
          ...(hostile.gapMs ? { gapMs: hostile.gapMs } : {}),
        });
        const name = `#${index} ${hostile.category}: ${hostile.label}`;
        const problems: string[] = [];
        if (result.responses.length < hostile.answers)
          problems.push(
            `${result.responses.length} of ${hostile.answers} answers, ${result.closed ? "closed" : "still open"} after ${result.elapsedMs} ms`,
          );
        for (const response of result.responses) {
          problems.push(...answerProblems(response, markers, hostile.asTenant));
          if (hostile.mustRefuse && response.status < 400) problems.push(`answered ${response.status}`);
        }
        if (problems.length > 0) failures.push(`${name}: ${[...new Set(problems)].join("; ")}`);
        byCategory.set(hostile.category, (byCategory.get(hostile.category) ?? 0) + 1);
        if (index % 100 === 0) peakRss = Math.max(peakRss, rssBytes(child.pid!));
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const stormMs = performance.now() - started;
    storming = false;
    await watching;

    // HOSTILE_DUMP=FILE writes every failing case there (the assertion shows the first 25).
    const dump = process.env.HOSTILE_DUMP;
    if (dump) writeFileSync(dump, failures.join("\n"));
    expect(failures.slice(0, 25)).toEqual([]);
    expect([...byCategory.values()]).toEqual(Array(7).fill(PER_CATEGORY));

    // The bystander: every request answered, at its usual latency (within a small factor).
    expect(during.length).toBeGreaterThan(20);
    expect(during.filter((r) => r.status !== 200)).toEqual([]);
    const figures = {
      baselineMedianMs: median(baseline),
      duringMedianMs: median(during.map((r) => r.ms)),
      duringP95Ms: percentile(
        during.map((r) => r.ms),
        0.95,
      ),
      stormMs,
    };
    expect(figures.duringMedianMs, JSON.stringify(figures)).toBeLessThan(
      Math.max(10 * figures.baselineMedianMs, 50),
    );
    expect(figures.duringP95Ms, JSON.stringify(figures)).toBeLessThan(500);

    // Alive, and its memory back under its idle bound once the storm is over.
    let rss = rssBytes(child.pid!);
    for (let i = 0; i < 40 && rss > idleRss + IDLE_GROWTH_BOUND; i++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      rss = rssBytes(child.pid!);
    }
    console.log(
      `hostile clients on ${dialect}: ${cases.length} cases in ${Math.round(stormMs)} ms; bystander median ${figures.baselineMedianMs.toFixed(1)} ms idle, ${figures.duringMedianMs.toFixed(1)} ms during (p95 ${figures.duringP95Ms.toFixed(1)} ms); RSS idle ${Math.round(idleRss / 2 ** 20)} MB, peak ${Math.round(peakRss / 2 ** 20)} MB, after ${Math.round(rss / 2 ** 20)} MB`,
    );
    expect(rss).toBeLessThan(idleRss + IDLE_GROWTH_BOUND);
    expect((await ask()).status).toBe(200);
    expect(child.exitCode).toBeNull();

    // The other tenant's objects are as they were: not renamed, deleted, taken or resized.
    const vm = await call(tokens.acme, "GET", `/core/v1/virtual_machines/${victim.vmId}`);
    expect(vm.status).toBe(200);
    expect(vm.body.virtual_machine).toMatchObject({ hostname: "acme-secret-host", name: "Web server 1" });
    const ip = await call(tokens.acme, "GET", `/core/v1/ip_addresses/${victim.ipId}`);
    expect(ip.status).toBe(200);
    expect(ip.body.ip_address.allocation_id ?? null).toBeNull();
    const disk = await call(tokens.acme, "GET", `/core/v1/disks/${victim.diskId}`);
    expect(disk.status).toBe(200);
    expect(disk.body.disk.size_in_gb).toBe(1);
  }, 300_000);
});
