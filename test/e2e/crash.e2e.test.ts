/**
 * END TO END, real QEMU: the control plane is killed with SIGKILL in the middle of a
 * build, then started again. The build must end as it would have without the crash (a
 * crash costs an attempt, and one is not enough to give up), nothing may leak (no
 * process, directory, address or tap that no live VM owns), and a VM that was running
 * keeps running, untouched. Each server also serves /metrics (--metrics-listen): scraped
 * after real builds, it counts them, their QEMU processes, and the restarted server's
 * takeover of the killed one's build.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Kysely } from "kysely";
import { applyCatalog } from "../../src/catalog/apply.js";
import { tapName } from "../../src/hosts/qemu/args.js";
import { openStore, type Database } from "../../src/store/index.js";
import { CLI } from "../support/cli.js";
import {
  demoTemplate,
  e2eCatalog,
  freePort,
  inNamespace,
  qemuProcesses,
  removeNamespace,
  ROOT,
  ssh,
  uniqueNamespace,
  e2eTenant,
  killVmProcesses,
} from "../support/e2e.js";
import { until } from "../support/eventually.js";
import { parseMetrics, sample } from "../support/metrics.js";

const WEB_XML = readFileSync(join(ROOT, "examples/web.xml"), "utf8");
const namespace = uniqueNamespace();
let dataDir: string;
let token: string;
let port: number;
let metricsPort: number;
let server: ChildProcess | undefined;

/** `api`: HTTP only, no worker, so accepted builds stay pending. */
async function startServer(role: "all" | "api" = "all"): Promise<void> {
  const args = [CLI, "serve", "--data", dataDir, "--listen", `127.0.0.1:${port}`, "--role", role];
  args.push("--metrics-listen", `127.0.0.1:${metricsPort}`);
  server = spawn(process.execPath, args, {
    env: { ...process.env, DATABASE_URL: "", TREBUCHET_LOG_LEVEL: "warn", TREBUCHET_READY_TIMEOUT: "300" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  for (let i = 0; i < 100; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/core/v1/data_centers`);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error("the server did not start");
}

/** What the running server's /metrics says. */
async function scrape() {
  const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  expect(response.status).toBe(200);
  return parseMetrics(await response.text());
}

function killServer(signal: NodeJS.Signals): Promise<void> {
  const child = server!;
  server = undefined;
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill(signal);
  });
}

async function call(method: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(`http://127.0.0.1:${port}/core/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return response.json();
}

/** A build of examples/web.xml; `refuseBoot` gives it the template option its guest refuses to boot with. */
const build = (hostname: string, refuseBoot = false) =>
  call("POST", "/organizations/_/virtual_machines/build_from_spec", {
    organization: { sub_domain: "acme" },
    xml: (refuseBoot
      ? WEB_XML.replace(
          '<Option key="motd">Built by Trebuchet</Option>',
          '<Option key="fail_boot">true</Option>',
        )
      : WEB_XML
    ).replace("web-01", hostname),
  });
const buildState = async (id: string) =>
  (await call("GET", `/virtual_machines/builds/${id}`)).virtual_machine_build;
const finished = (id: string) =>
  until(`build ${id}`, async () => {
    const b = await buildState(id);
    return b.state === "complete" || b.state === "failed" ? b : undefined;
  });

/** The build's row as the database has it (read beside the running server). */
async function buildRow(id: string) {
  const store = await openStore({ dataDir, migrate: false });
  try {
    return await store.db
      .selectFrom("builds")
      .select(["state", "attempts", "lease_owner", "failure_reason"])
      .where("id", "=", id)
      .executeTakeFirstOrThrow();
  } finally {
    await store.close();
  }
}

/** The taps in the test's namespace (`tun type tap` links), by name. */
async function tapsOnHost(): Promise<string[]> {
  const links = await inNamespace(namespace, "ip", ["-o", "-d", "link", "show"]);
  expect(links.code, links.stderr).toBe(0);
  return links.stdout
    .split("\n")
    .filter((line) => / tun type tap /.test(line))
    .map((line) => line.split(": ")[1]!.split("@")[0]!)
    .sort();
}

/**
 * No tap outlives its VM: every tap on the host is an interface of a live VM, every live
 * VM's interfaces have theirs (a VM in the trash keeps its own), and a failed or purged VM has none.
 */
async function expectTapsOfLiveVmsOnly(db: Kysely<Database>): Promise<void> {
  const nics = await db
    .selectFrom("network_interfaces")
    .innerJoin("virtual_machines", "virtual_machines.id", "network_interfaces.virtual_machine_id")
    .select(["network_interfaces.id", "virtual_machines.id as vmId", "virtual_machines.state", "purged_at"])
    .execute();
  const live = nics.filter((n) => n.purged_at === null && n.state !== "failed");
  const gone = nics.filter((n) => n.purged_at !== null || n.state === "failed");
  const taps = await tapsOnHost();
  const liveTaps = new Set(live.map((n) => tapName(n.id)));
  expect(
    taps.filter((tap) => !liveTaps.has(tap)),
    "taps that no live VM's interface owns",
  ).toEqual([]);
  expect(
    [...liveTaps].filter((tap) => !taps.includes(tap)),
    "live VMs' interfaces without a tap",
  ).toEqual([]);
  expect(
    gone.filter((n) => taps.includes(tapName(n.id))).map((n) => `${n.vmId} (${n.state}): ${tapName(n.id)}`),
    "failed or purged VMs' taps",
  ).toEqual([]);
}

beforeAll(async () => {
  await demoTemplate();
  dataDir = mkdtempSync(join(tmpdir(), "trebuchet-crash-"));
  const store = await openStore({ dataDir });
  await applyCatalog(store.db, e2eCatalog({ namespace }));
  token = await e2eTenant(store.db);
  await store.close();
  port = await freePort();
  metricsPort = await freePort();
  await startServer();
}, 300_000);

afterAll(async () => {
  if (server) await killServer("SIGTERM");
  const store = await openStore({ dataDir });
  await killVmProcesses(store.db);
  await store.close();
  await removeNamespace(namespace);
  rmSync(dataDir, { recursive: true, force: true });
}, 60_000);

describe("kill -9 of the control plane (real QEMU)", () => {
  let survivor: { id: string; pid: number };

  it("builds a VM that will have to survive", async () => {
    const accepted = await build("survivor");
    const done = await finished(accepted.virtual_machine_build.id);
    expect(done.state).toBe("complete");
    const pids = qemuProcesses(done.virtual_machine.id);
    expect(pids).toHaveLength(1);
    survivor = { id: done.virtual_machine.id, pid: pids[0]! };
    const metrics = await scrape();
    expect(
      sample(metrics, "trebuchet_http_requests_total", { operation: "build_from_spec", status: "201" }),
    ).toBe(1);
    expect(sample(metrics, "trebuchet_builds", { state: "complete" })).toBe(1);
    expect(sample(metrics, "trebuchet_build_duration_seconds_count", { outcome: "complete" })).toBe(1);
    expect(sample(metrics, "trebuchet_virtual_machines", { state: "started" })).toBe(1);
    expect(sample(metrics, "trebuchet_host_qemu_processes", { host: "local" })).toBe(1);
    expect(sample(metrics, "trebuchet_host_memory_used_bytes", { host: "local" })).toBe(1024 ** 3);
    expect(sample(metrics, "trebuchet_lease_takeovers_total", { kind: "build" })).toBe(0);
  }, 600_000);

  // Per moment of the kill, the one outcome that is right: a crash costs the build an
  // attempt (maxAttempts is 3), so it ends as it would have without the crash.
  const cases = [
    {
      moment: "while the build waits for a worker",
      hostname: "crash-pending",
      refuseBoot: false,
      // Accepted by a server without a worker: nothing can have claimed it.
      before: { role: "api" as const, state: "pending", attempts: 0 },
      after: { state: "complete", failure_reason: null, attempts: 1, takenOver: 0 },
    },
    {
      moment: "while QEMU is booting the guest",
      hostname: "crash-boot",
      refuseBoot: false,
      before: { role: "all" as const, state: "building", attempts: 1 },
      after: { state: "complete", failure_reason: null, attempts: 2, takenOver: 1 },
    },
    {
      moment: "while QEMU is booting a guest that will refuse to boot",
      hostname: "crash-refused",
      refuseBoot: true,
      before: { role: "all" as const, state: "building", attempts: 1 },
      // The guest's own reason, from the second attempt: not "gave up after 3 attempts".
      after: {
        state: "failed",
        failure_reason: "the guest reported: template option fail_boot=true: the guest refuses to boot",
        attempts: 2,
        takenOver: 1,
      },
    },
  ];

  for (const { moment, hostname, refuseBoot, before, after } of cases) {
    it(`${moment}: after restart the build ends as it should, nothing leaks, the running VM keeps running`, async () => {
      if (before.role === "api") {
        await killServer("SIGTERM");
        await startServer("api");
      }
      const accepted = await build(hostname, refuseBoot);
      const buildId = accepted.virtual_machine_build.id;
      if (before.state === "building") {
        await until("QEMU to start", async () => {
          const b = await buildState(buildId);
          return b.virtual_machine && qemuProcesses(b.virtual_machine.id).length > 0 ? true : undefined;
        });
      }
      // What the kill interrupts: the first attempt under way, or a build no worker has touched.
      expect(await buildRow(buildId)).toMatchObject({
        state: before.state,
        attempts: before.attempts,
        ...(before.state === "pending" ? { lease_owner: null } : {}),
      });
      await killServer("SIGKILL");
      expect(qemuProcesses(survivor.id)).toEqual([survivor.pid]);

      await startServer();
      const done = await finished(buildId);
      expect({ state: done.state, failure_reason: done.failure_reason }).toEqual({
        state: after.state,
        failure_reason: after.failure_reason,
      });
      expect((await buildRow(buildId)).attempts).toBe(after.attempts);
      // The restarted server took the killed one's build over (its lease ran out), and
      // counts its next attempt as a retry.
      const metrics = await scrape();
      expect(sample(metrics, "trebuchet_lease_takeovers_total", { kind: "build" })).toBe(after.takenOver);
      expect(sample(metrics, "trebuchet_retries_total", { kind: "build_attempt" })).toBe(after.takenOver);
      expect(
        sample(metrics, "trebuchet_build_duration_seconds_count", {
          outcome: after.state === "complete" ? "complete" : "failed",
        }),
      ).toBe(1);
      const store = await openStore({ dataDir, migrate: false });
      try {
        const vm = await store.db
          .selectFrom("virtual_machines")
          .selectAll()
          .where("hostname", "=", hostname)
          .executeTakeFirstOrThrow();
        if (after.state === "complete") {
          expect(qemuProcesses(vm.id)).toHaveLength(1);
          expect(
            (
              await ssh(
                namespace,
                (await call("GET", `/virtual_machines/${vm.id}`)).virtual_machine.ip_addresses[0].address,
                "hostname",
              )
            ).stdout.trim(),
          ).toBe(hostname);
        } else {
          expect(qemuProcesses(vm.id)).toEqual([]);
          expect(existsSync(join(dataDir, "vms", vm.id))).toBe(false);
        }
        // Nothing on the host that no live VM owns.
        const live = new Set(
          (
            await store.db
              .selectFrom("virtual_machines")
              .select("id")
              .where("purged_at", "is", null)
              .execute()
          ).map((v) => v.id),
        );
        const onHost = existsSync(join(dataDir, "vms"))
          ? (await import("node:fs"))
              .readdirSync(join(dataDir, "vms"))
              .filter((name) => name.startsWith("vm_"))
          : [];
        expect(onHost.filter((id) => !live.has(id))).toEqual([]);
        // Every address held belongs to a live VM.
        const held = await store.db
          .selectFrom("ip_addresses")
          .select("allocation_id")
          .where("allocation_id", "is not", null)
          .execute();
        expect(held.filter((h) => !live.has(h.allocation_id!))).toEqual([]);
        await expectTapsOfLiveVmsOnly(store.db);
      } finally {
        await store.close();
      }
      // The VM that was running before the crash is the same process, and recorded as started.
      expect(qemuProcesses(survivor.id)).toEqual([survivor.pid]);
      expect((await call("GET", `/virtual_machines/${survivor.id}`)).virtual_machine.state).toBe("started");
    }, 300_000);
  }
});
