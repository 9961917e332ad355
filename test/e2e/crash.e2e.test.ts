/**
 * END TO END, real QEMU: the control plane is killed with SIGKILL in the middle of a
 * build, then started again. The build must end complete or failed (never stuck), nothing
 * may leak, and a VM that was running keeps running, untouched.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyCatalog } from "../../src/catalog/apply.js";
import { openStore } from "../../src/store/index.js";
import { CLI } from "../support/cli.js";
import {
  demoTemplate,
  e2eCatalog,
  freePort,
  qemuProcesses,
  removeNamespace,
  ROOT,
  ssh,
  uniqueNamespace,
  e2eTenant,
  killVmProcesses,
} from "../support/e2e.js";
import { until } from "../support/eventually.js";

const WEB_XML = readFileSync(join(ROOT, "examples/web.xml"), "utf8");
const namespace = uniqueNamespace();
let dataDir: string;
let token: string;
let port: number;
let server: ChildProcess | undefined;

async function startServer(): Promise<void> {
  server = spawn(process.execPath, [CLI, "serve", "--data", dataDir, "--listen", `127.0.0.1:${port}`], {
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

const build = (hostname: string) =>
  call("POST", "/organizations/_/virtual_machines/build_from_spec", {
    organization: { sub_domain: "acme" },
    xml: WEB_XML.replace("web-01", hostname),
  });
const buildState = async (id: string) =>
  (await call("GET", `/virtual_machines/builds/${id}`)).virtual_machine_build;
const finished = (id: string) =>
  until(`build ${id}`, async () => {
    const b = await buildState(id);
    return b.state === "complete" || b.state === "failed" ? b : undefined;
  });

beforeAll(async () => {
  await demoTemplate();
  dataDir = mkdtempSync(join(tmpdir(), "trebuchet-crash-"));
  const store = await openStore({ dataDir });
  await applyCatalog(store.db, e2eCatalog({ namespace }));
  token = await e2eTenant(store.db);
  await store.close();
  port = await freePort();
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
  }, 600_000);

  for (const [moment, reached] of [
    ["while the build waits for a worker", async () => true],
    ["while QEMU is booting the guest", async (vmId: string) => qemuProcesses(vmId).length > 0],
  ] as const) {
    it(`${moment}: after restart the build ends, nothing leaks, the running VM keeps running`, async () => {
      const hostname = moment.includes("QEMU") ? "crash-boot" : "crash-pending";
      const accepted = await build(hostname);
      const buildId = accepted.virtual_machine_build.id;
      if (moment.includes("QEMU")) {
        await until("QEMU to start", async () => {
          const b = await buildState(buildId);
          return b.virtual_machine && (await reached(b.virtual_machine.id)) ? true : undefined;
        });
      }
      await killServer("SIGKILL");
      expect(qemuProcesses(survivor.id)).toEqual([survivor.pid]);

      await startServer();
      const done = await finished(buildId);
      expect(["complete", "failed"]).toContain(done.state);
      const store = await openStore({ dataDir, migrate: false });
      try {
        const vm = await store.db
          .selectFrom("virtual_machines")
          .selectAll()
          .where("hostname", "=", hostname)
          .executeTakeFirstOrThrow();
        if (done.state === "complete") {
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
              .where("deleted_at", "is", null)
              .execute()
          ).map((v) => v.id),
        );
        const onHost = existsSync(join(dataDir, "vms"))
          ? (await import("node:fs")).readdirSync(join(dataDir, "vms"))
          : [];
        expect(onHost.filter((id) => !live.has(id))).toEqual([]);
        // Every address held belongs to a live VM.
        const held = await store.db
          .selectFrom("ip_addresses")
          .select("allocation_id")
          .where("allocation_id", "is not", null)
          .execute();
        expect(held.filter((h) => !live.has(h.allocation_id!))).toEqual([]);
      } finally {
        await store.close();
      }
      // The VM that was running before the crash is the same process, and recorded as started.
      expect(qemuProcesses(survivor.id)).toEqual([survivor.pid]);
      expect((await call("GET", `/virtual_machines/${survivor.id}`)).virtual_machine.state).toBe("started");
    }, 300_000);
  }
});
