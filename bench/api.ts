/**
 * bench/api: the API under load on loopback, against a bare Fastify JSON route measured
 * in the same run. Each server runs in a process of its own; autocannon runs here.
 * Promises: build_from_spec (rich spec, SQLite) >= 0.20x the bare route's rate,
 * GET build and GET task >= 0.50x, server RSS <= 150 MB under load.
 * Two floors run on the bare server too, to show what any build_from_spec must cost: a POST
 * of the same body answered with a fixed 201, and the same after checking the spec with the
 * spec library (no authentication, planning or storage).
 *
 *   node dist/bench/api.js [--duration 10] [--connections 32] [--only "GET build"]
 */
import { fork, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import Fastify from "fastify";

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const DURATION = option("duration", 10);
/** Run only the named run besides the bare route, e.g. --only "GET build" or --only floors (for profiling). */
const ONLY = args.includes("--only") ? args[args.indexOf("--only") + 1]! : undefined;
const CONNECTIONS = option("connections", 32);
const self = fileURLToPath(import.meta.url);
/** The V8 flags `trebuchet serve` runs with (see the trebuchet wrapper and the CLI's shebang). */
const SERVER_FLAGS = "--max-semi-space-size=4 --single-threaded-gc --heap-growing-percent=50";

/** A spec that uses most of the format, allocating only from a large IPv6 range so the pool never runs dry. */
const RICH_SPEC = `<?xml version="1.0" encoding="UTF-8"?>
<VirtualMachineSpec>
  <Zone by="permalink">lab-1-a</Zone>
  <DataCenter by="permalink">lab-1</DataCenter>
  <Resources><Package by="permalink">small-1</Package></Resources>
  <DiskTemplate>
    <DiskTemplate by="permalink">templates/trebuchet-demo</DiskTemplate>
    <Option key="motd">Load test</Option>
  </DiskTemplate>
  <SystemDisks>
    <Disk><Name>System Disk</Name><Size>2</Size><Speed>ssd</Speed><IOProfile by="permalink">standard</IOProfile>
      <BackupPolicies><BackupPolicy><Retention>7</Retention><Schedule><Interval>daily</Interval><Frequency>1</Frequency><Time>2</Time></Schedule></BackupPolicy></BackupPolicies>
    </Disk>
    <Disk><Name>Data</Name><Size>1</Size><Speed>nvme</Speed><FileSystemType>xfs</FileSystemType></Disk>
  </SystemDisks>
  <NetworkInterfaces>
    <NetworkInterface>
      <Network by="permalink">bench</Network>
      <SpeedProfile by="permalink">1gbps</SpeedProfile>
      <IPAddressAllocation type="new"><Version>6</Version></IPAddressAllocation>
    </NetworkInterface>
  </NetworkInterfaces>
  <Name>Bench VM</Name>
  <Description>Built by bench/api</Description>
  <AuthorizedKeys><Users all="yes"/><SSHKeys all="yes"/></AuthorizedKeys>
  <BackupPolicies><BackupPolicy><Retention>4</Retention></BackupPolicy></BackupPolicies>
  <Tags><Tag>bench</Tag><Tag>load</Tag></Tags>
</VirtualMachineSpec>`;

/** A server on a fresh SQLite data directory, with the example catalog, a bench network and an organization. */
async function setUpTrebuchet(dataDir: string) {
  const { createServer } = await import("../src/server.js");
  const { NO_LIMITS } = await import("../src/lifecycle/index.js");
  const { applyCatalog } = await import("../src/catalog/apply.js");
  const { readCatalogFile } = await import("../src/catalog/catalog-file.js");
  const { createApiToken, createOrganization } = await import("../src/catalog/accounts.js");
  const server = await createServer({
    store: { dataDir },
    baseDomain: "bench.test",
    rateLimits: { read: 100_000_000, write: 100_000_000, build: 100_000_000 },
    // The load builds tens of thousands of VMs in one organization: it has no limits (each
    // build still takes the organization's lock and reads its limits).
    organizationLimits: NO_LIMITS,
    logger: false,
  });
  const read = readCatalogFile(readFileSync(new URL("../../examples/catalog.yaml", import.meta.url), "utf8"));
  if ("problems" in read) throw new Error(read.problems.join("\n"));
  read.catalog.networks.push({
    permalink: "bench",
    name: "Bench",
    data_center: "lab-1",
    default: false,
    dns_servers: [],
    subnets: [
      {
        cidr: "2001:db8:200::/64",
        gateway: "2001:db8:200::1",
        range_start: "2001:db8:200::10",
        range_end: "2001:db8:200::ffff:ffff",
        version: 6,
      },
    ],
  });
  await applyCatalog(server.store.db, read.catalog);
  await createOrganization(server.store.db, { subDomain: "bench", name: "Bench", baseDomain: "bench.test" });
  const { token } = await createApiToken(server.store.db, {
    subDomain: "bench",
    name: "bench",
    role: "admin",
    scopes: [],
    allowedNetworks: [],
  });
  return { server, token };
}

async function serveTrebuchet(dataDir: string): Promise<void> {
  const { server, token } = await setUpTrebuchet(dataDir);
  const address = await server.app.listen({ host: "127.0.0.1", port: 0 });
  // Exit normally on the bench's kill, so SERVER_NODE_OPTIONS="--cpu-prof" can write its profile.
  process.once("SIGTERM", () => process.exit(0));
  process.send!({ address, token });
}

/** A 201 of build_from_spec's shape and size, for the floors. */
const FIXED_BUILD_REPLY = {
  task: { id: "task_VcFp68tUqDEUMu6t", name: "Build virtual machine", status: "pending" },
  build: { id: "vmbuild_VcFp68tM2S2S1ybZ", state: "pending" },
  virtual_machine_build: { id: "vmbuild_VcFp68tM2S2S1ybZ", state: "pending" },
  hostname: "autumn-deep-dust",
  annotations: [],
};

/**
 * The storage step alone, in process, no HTTP: the rich spec's plan (made once, given a new
 * generated hostname each time) accepted over and over through the group commit, 20 builds
 * per event-loop turn as under load.
 * Every build still reserves an address and a hostname and writes its rows and spec XML.
 */
async function acceptanceFloor(dataDir: string): Promise<void> {
  const { server } = await setUpTrebuchet(dataDir);
  const { checkSpec, writeXml } = await import("../src/spec/index.js");
  const { planBuild } = await import("../src/planner/planner.js");
  const { randomHostname } = await import("../src/planner/hostnames.js");
  const { acceptBuild, NO_LIMITS } = await import("../src/lifecycle/index.js");
  const { SnapshotLoader } = await import("../src/catalog/snapshot.js");
  const db = server.store.db;
  const org = await db
    .selectFrom("organizations")
    .selectAll()
    .where("sub_domain", "=", "bench")
    .executeTakeFirstOrThrow();
  const { spec } = checkSpec(RICH_SPEC, { format: "xml" });
  const planned = planBuild(spec!, await new SnapshotLoader(db).load(org, spec!), randomHostname);
  if (!planned.ok) throw new Error(JSON.stringify(planned.problems));
  const accept = () =>
    acceptBuild(
      server.store.groupCommit,
      db,
      {
        organizationId: org.id,
        // A fresh hostname, as each request's plan has: a reused one is taken, and drawn again.
        plan: { ...planned.plan, hostname: randomHostname() },
        renderSpecXml: (hostname) => writeXml({ ...planned.normalized, hostname }, { style: "server" }),
        submittedSpec: RICH_SPEC,
        annotations: [],
        fqdnSuffix: org.infrastructure_domain,
        defaultLimits: NO_LIMITS,
      },
      randomHostname,
    );
  const turn = () => Promise.all(Array.from({ length: 20 }, accept));
  for (let i = 0; i < 50; i++) await turn();
  let builds = 0;
  const end = performance.now() + DURATION * 1000;
  const started = performance.now();
  while (performance.now() < end) {
    await turn();
    builds += 20;
  }
  process.send!({ rate: builds / ((performance.now() - started) / 1000) });
  await server.stop();
}

async function serveBare(): Promise<void> {
  const { checkSpec } = await import("../src/spec/index.js");
  const app = Fastify({ logger: false });
  const body = {
    task: {
      id: "task_0123456789abcdef",
      name: "Build virtual machine",
      status: "pending",
      created_at: 0,
      started_at: null,
      finished_at: null,
      progress: 0,
    },
  };
  app.get("/bare", async () => body);
  app.post("/floor/fixed-reply", async (_request, reply) => {
    reply.code(201);
    return FIXED_BUILD_REPLY;
  });
  app.post<{ Body: { xml: string } }>("/floor/check-spec", async (request, reply) => {
    if (!checkSpec(request.body.xml).valid) throw new Error("the bench's spec should be valid");
    reply.code(201);
    return FIXED_BUILD_REPLY;
  });
  const address = await app.listen({ host: "127.0.0.1", port: 0 });
  process.once("SIGTERM", () => process.exit(0));
  process.send!({ address });
}

function start(
  mode: string,
  extra: string[] = [],
): Promise<{ child: ChildProcess; address: string; token?: string }> {
  return new Promise((resolve, reject) => {
    const child = fork(self, [mode, ...extra], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      execArgv: (process.env.SERVER_NODE_OPTIONS ?? SERVER_FLAGS).split(" ").filter(Boolean),
    });
    child.once("message", (m) => resolve({ child, ...(m as { address: string; token?: string }) }));
    child.once("exit", (code) => reject(new Error(`${mode} exited with ${code}`)));
  });
}

function runAcceptanceFloor(dataDir: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = fork(self, ["acceptance-floor", dataDir, "--duration", String(DURATION)], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      execArgv: (process.env.SERVER_NODE_OPTIONS ?? SERVER_FLAGS).split(" ").filter(Boolean),
    });
    child.once("message", (m) => resolve((m as { rate: number }).rate));
    child.once("exit", (code) =>
      code === 0 ? undefined : reject(new Error(`acceptance floor exited with ${code}`)),
    );
  });
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

interface Run {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  peakRss: number;
}

async function load(name: string, pid: number, options: autocannon.Options): Promise<Run> {
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMb(pid))), 200);
  const result = await autocannon({ connections: CONNECTIONS, duration: DURATION, ...options });
  clearInterval(sampler);
  return {
    name,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    peakRss,
  };
}

async function main(): Promise<void> {
  const mode = args[0];
  if (mode === "serve-trebuchet") return serveTrebuchet(args[1]!);
  if (mode === "serve-bare") return serveBare();
  if (mode === "acceptance-floor") return acceptanceFloor(args[1]!);

  const dataDir = mkdtempSync(join(tmpdir(), "trebuchet-bench-"));
  const bare = await start("serve-bare");
  const trebuchet = await start("serve-trebuchet", [dataDir]);
  const headers = { authorization: `Bearer ${trebuchet.token}`, "content-type": "application/json" };
  const buildBody = JSON.stringify({ organization: { sub_domain: "bench" }, xml: RICH_SPEC });
  try {
    // One build to read back, and a short warm-up of each server.
    const created = (await (
      await fetch(`${trebuchet.address}/core/v1/organizations/_/virtual_machines/build_from_spec`, {
        method: "POST",
        headers,
        body: buildBody,
      })
    ).json()) as {
      virtual_machine_build: { id: string };
      task: { id: string };
    };
    await autocannon({ url: `${bare.address}/bare`, connections: CONNECTIONS, duration: 2 });
    await autocannon({
      url: `${trebuchet.address}/core/v1/tasks/${created.task.id}`,
      headers,
      connections: CONNECTIONS,
      duration: 2,
    });

    const runs: Run[] = [];
    runs.push(await load("bare Fastify JSON route", bare.child.pid!, { url: `${bare.address}/bare` }));
    const floor = (path: string): autocannon.Options => ({
      url: `${bare.address}${path}`,
      method: "POST",
      headers: { "content-type": "application/json" },
      body: buildBody,
    });
    const floors: [string, autocannon.Options][] = [
      ["floor: POST, fixed 201", floor("/floor/fixed-reply")],
      ["floor: POST, checkSpec, fixed 201", floor("/floor/check-spec")],
    ];
    let acceptanceRate: number | undefined;
    if (ONLY === undefined || ONLY === "floors") {
      for (const [name, options] of floors) runs.push(await load(name, bare.child.pid!, options));
      acceptanceRate = await runAcceptanceFloor(join(dataDir, "acceptance-floor"));
    }
    const scenarios: [string, autocannon.Options][] = [
      [
        "POST build_from_spec (rich spec)",
        {
          url: `${trebuchet.address}/core/v1/organizations/_/virtual_machines/build_from_spec`,
          method: "POST",
          headers,
          body: buildBody,
        },
      ],
      [
        "GET build",
        {
          url: `${trebuchet.address}/core/v1/virtual_machines/builds/_?virtual_machine_build[id]=${created.virtual_machine_build.id}`,
          headers,
        },
      ],
      ["GET task", { url: `${trebuchet.address}/core/v1/tasks/${created.task.id}`, headers }],
    ];
    for (const [name, options] of scenarios) {
      if (ONLY === undefined || ONLY === name) runs.push(await load(name, trebuchet.child.pid!, options));
    }

    const base = runs[0]!.rps;
    const targets: Record<string, number> = {
      "POST build_from_spec (rich spec)": 0.2,
      "GET build": 0.5,
      "GET task": 0.5,
    };
    console.log(
      `api: ${CONNECTIONS} connections, ${DURATION} s per run, loopback, SQLite (WAL), Node ${process.version}`,
    );
    console.log("  run                                 req/s   ratio   p50 ms  p99 ms  non-2xx  peak RSS MB");
    for (const run of runs) {
      const target = targets[run.name];
      const ratio = run.rps / base;
      const verdict =
        target === undefined
          ? ""
          : ` (target >= ${target.toFixed(2)}x: ${ratio >= target ? "met" : "NOT met"})`;
      console.log(
        `  ${run.name.padEnd(34)} ${run.rps.toFixed(0).padStart(7)} ${ratio.toFixed(2).padStart(6)}x ${String(run.p50).padStart(7)} ${String(run.p99).padStart(7)} ${String(run.non2xx).padStart(8)} ${run.peakRss.toFixed(0).padStart(12)}${verdict}`,
      );
    }
    if (acceptanceRate !== undefined) {
      console.log(
        `  floor: acceptance alone, in process, no HTTP: ${acceptanceRate.toFixed(0)} builds/s (${(acceptanceRate / base).toFixed(2)}x)`,
      );
    }
    const trebuchetRuns = runs.filter((r) => r.name in targets);
    if (trebuchetRuns.length > 0) {
      const peak = Math.max(...trebuchetRuns.map((r) => r.peakRss));
      console.log(
        `  trebuchet peak RSS under load: ${peak.toFixed(0)} MB (target <= 150 MB: ${peak <= 150 ? "met" : "NOT met"})`,
      );
    }
  } finally {
    bare.child.kill();
    trebuchet.child.kill();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
