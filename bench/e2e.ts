/**
 * bench/e2e: builds of real VMs (QEMU, TCG here), end to end through the API.
 *  - over N sequential builds (concurrency 1): median POST -> QEMU process started
 *    (promise <= 50 ms) and POST -> guest ready, against a raw boot of the same VM (its exact
 *    QEMU command line run by hand on fresh disks, after each build) timed to the same
 *    readiness marker (promise <= 1.05x);
 *  - 20 builds accepted at once on one host: all complete.
 * Needs root (network namespaces), QEMU, and the demo template (built when missing).
 *
 *   node dist/bench/e2e.js [--builds 5] [--concurrent 20]
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { addSshKey, createApiToken, createOrganization } from "../src/catalog/accounts.js";
import { applyCatalog } from "../src/catalog/apply.js";
import { readCatalogFile } from "../src/catalog/catalog-file.js";
import type { VmDefinition } from "../src/hosts/driver.js";
import { buildDemoTemplate, demoTemplateExists, demoTemplateFiles } from "../src/hosts/qemu/demo-template.js";
import { projectPath } from "../src/paths.js";
import { createServer } from "../src/server.js";

const exec = promisify(execFile);
const args = process.argv.slice(2);
const option = (name: string, fallback: number) =>
  args.includes(`--${name}`) ? Number(args[args.indexOf(`--${name}`) + 1]) : fallback;
const BUILDS = option("builds", 5);
const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
const CONCURRENT = option("concurrent", 20);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const dataDir = mkdtempSync(join(tmpdir(), "trebuchet-bench-e2e-"));
const cache = projectPath(".cache/templates");
const namespace = `tbb-${process.pid}`;

async function main() {
  if (!demoTemplateExists(cache)) await buildDemoTemplate(cache);
  const files = demoTemplateFiles(cache);
  const read = readCatalogFile(readFileSync(projectPath("examples/catalog.yaml"), "utf8"));
  if ("problems" in read) throw new Error(read.problems.join("\n"));
  const catalog = read.catalog;
  catalog.hosts[0]!.namespace = namespace;
  catalog.hosts[0]!.memory_in_gb = 64;
  catalog.hosts[0]!.disk_in_gb = 400;
  Object.assign(catalog.disk_templates[0]!.versions[0]!, {
    image: files.image,
    kernel: files.kernel,
    initrd: files.initrd,
  });
  const server = await createServer({
    store: { dataDir },
    baseDomain: "bench.test",
    agent: { dataDir, timeouts: { ready: 300_000 } },
    logger: false,
    rateLimits: { read: 1e9, write: 1e9, build: 1e9 },
  });
  await applyCatalog(server.store.db, catalog);
  await createOrganization(server.store.db, { subDomain: "bench", name: "Bench", baseDomain: "bench.test" });
  const key = join(dataDir, "key");
  await exec("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
  await addSshKey(server.store.db, {
    subDomain: "bench",
    name: "bench",
    publicKey: readFileSync(`${key}.pub`, "utf8"),
  });
  const { token } = await createApiToken(server.store.db, {
    subDomain: "bench",
    name: "b",
    role: "admin",
    scopes: [],
    allowedNetworks: [],
  });
  const url = await server.app.listen({ host: "127.0.0.1", port: 0 });
  const call: Call = async (method, path, body) =>
    (await (
      await fetch(`${url}/core/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        ...(body ? { body: JSON.stringify(body) } : {}),
      })
    ).json()) as Reply;
  const xml = readFileSync(projectPath("examples/web.xml"), "utf8");
  await server.agent!.start();

  log("catalog ready; warm-up build");
  // Warm-up build (the accelerator probe and first QEMU start happen here).
  const warm = await call("POST", "/organizations/_/virtual_machines/build_from_spec", {
    organization: { sub_domain: "bench" },
    xml: xml.replace("web-01", "warm"),
  });
  const warmBuild = await waitBuild(call, warm.virtual_machine_build.id);

  const toStart: number[] = [];
  const toReady: number[] = [];
  const raw: number[] = [];
  for (let i = 0; i < BUILDS; i++) {
    const posted = Date.now();
    const accepted = await call("POST", "/organizations/_/virtual_machines/build_from_spec", {
      organization: { sub_domain: "bench" },
      xml: xml.replace("web-01", `seq-${i}`),
    });
    const build = await waitBuild(call, accepted.virtual_machine_build.id);
    const ready = Date.now();
    if (build.state !== "complete") throw new Error(`build failed: ${build.failure_reason}`);
    const vmId = build.virtual_machine!.id;
    // QEMU writes its pid file as it starts: its modification time is when the process started.
    toStart.push(statSync(join(dataDir, "vms", vmId, "qemu.pid")).mtimeMs - posted);
    toReady.push(ready - posted);
    // The raw boot, interleaved so drift hits both alike: this very VM, started again by hand
    // with its exact QEMU command line on fresh disks, to the same readiness marker.
    raw.push(await rawBoot(join(dataDir, "vms", vmId), namespace));
    await deleteAndPurge(call, vmId);
    // Concurrency 1: the next build starts once this VM is gone from the host.
    while (existsSync(join(dataDir, "vms", vmId))) await sleep(20);
  }

  log(`sequential builds done: ${toReady.join(", ")} ms`);
  // 20 builds accepted at once on one host.
  const burstStart = Date.now();
  const burst = await Promise.all(
    Array.from({ length: CONCURRENT }, (_, i) =>
      call("POST", "/organizations/_/virtual_machines/build_from_spec", {
        organization: { sub_domain: "bench" },
        xml: xml
          .replace("web-01", `burst-${i}`)
          .replace(
            /<NetworkInterface>\s*<Network by="permalink">lab-1-private[\s\S]*?<\/NetworkInterface>/,
            "",
          ),
      }),
    ),
  );
  const burstResults = await Promise.all(burst.map((b) => waitBuild(call, b.virtual_machine_build.id)));
  const burstSeconds = (Date.now() - burstStart) / 1000;
  const completed = burstResults.filter((b) => b.state === "complete").length;

  const ratio = median(toReady) / median(raw);
  console.log(
    `e2e: ${BUILDS} sequential builds of examples/web.xml, QEMU ${(await exec("qemu-system-x86_64", ["--version"])).stdout.split("\n")[0]}, TCG`,
  );
  console.log(
    `  POST -> QEMU started     median ${median(toStart).toFixed(0).padStart(6)} ms  (target <= 50 ms: ${median(toStart) <= 50 ? "met" : "NOT met"})   all: ${toStart.map((t) => t.toFixed(0)).join(", ")}`,
  );
  console.log(
    `  POST -> guest ready      median ${median(toReady).toFixed(0).padStart(6)} ms   all: ${toReady.join(", ")}`,
  );
  console.log(
    `  raw QEMU boot -> ready   median ${median(raw).toFixed(0).padStart(6)} ms   all: ${raw.join(", ")}`,
  );
  console.log(
    `  ratio                           ${ratio.toFixed(3).padStart(6)}x   (target <= 1.05x: ${ratio <= 1.05 ? "met" : "NOT met"})`,
  );
  console.log(
    `  ${CONCURRENT} builds at once on one host: ${completed}/${CONCURRENT} complete in ${burstSeconds.toFixed(1)} s`,
  );
  for (const vmId of [warmBuild.virtual_machine?.id, ...burstResults.map((b) => b.virtual_machine?.id)])
    if (vmId) await deleteAndPurge(call, vmId).catch(() => undefined);
  await sleep(3000);
  await server.stop();
}

interface Reply {
  virtual_machine_build: {
    id: string;
    state: string;
    failure_reason: string | null;
    virtual_machine: { id: string } | null;
  };
  task: { id: string };
}
type Call = (method: string, path: string, body?: unknown) => Promise<Reply>;

async function waitBuild(call: Call, id: string): Promise<Reply["virtual_machine_build"]> {
  for (;;) {
    const { virtual_machine_build: build } = await call("GET", `/virtual_machines/builds/${id}`);
    if (build.state === "complete" || build.state === "failed") return build;
    await sleep(20);
  }
}

/** Deleted, then purged from the trash: its host removes it. */
async function deleteAndPurge(call: Call, vmId: string): Promise<void> {
  const deleted = (await call("DELETE", `/virtual_machines/_?virtual_machine[id]=${vmId}`)) as unknown as {
    trash_object: { id: string };
  };
  await call("DELETE", `/trash_objects/_?trash_object[id]=${deleted.trash_object.id}`);
}

/**
 * Boots a built VM again outside Trebuchet: kills its QEMU, gives it fresh disks (so the guest
 * does a first boot again) and an empty console, then runs the QEMU command line Trebuchet ran
 * (read back from /proc) inside the same namespace and times it to the readiness marker.
 */
async function rawBoot(directory: string, namespace: string): Promise<number> {
  const vm = JSON.parse(readFileSync(join(directory, "definition.json"), "utf8")) as VmDefinition;
  const pidFile = join(directory, "qemu.pid");
  const pid = Number(readFileSync(pidFile, "utf8"));
  const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1);
  process.kill(pid, "SIGKILL");
  while (existsSync(`/proc/${pid}`)) await sleep(10);
  for (const disk of vm.disks) {
    const backing = disk.system ? ["-b", vm.template.image, "-F", "qcow2"] : [];
    const file = join(directory, `${disk.id}.qcow2`);
    rmSync(file);
    await exec("qemu-img", ["create", "-q", "-f", "qcow2", ...backing, file, `${disk.sizeInGb}G`]);
  }
  const consoleFile = join(directory, "console.log");
  writeFileSync(consoleFile, "");
  rmSync(join(directory, "qmp.sock"), { force: true });
  const started = Date.now();
  await exec("ip", ["netns", "exec", namespace, ...argv]);
  while (!readFileSync(consoleFile, "utf8").includes(`TREBUCHET-READY ${vm.id}`)) await sleep(20);
  return Date.now() - started;
}

try {
  await main();
} finally {
  await exec("ip", ["netns", "del", namespace]).catch(() => undefined);
  if (existsSync(dataDir)) rmSync(dataDir, { recursive: true, force: true });
}
