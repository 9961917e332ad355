/**
 * End-to-end helpers: the demo template (built once from Debian packages into .cache/),
 * a catalog whose host runs in a network namespace of the test's own, and commands run
 * inside that namespace. Needs root, QEMU and iproute2 (scripts/test installs them).
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import type { Kysely } from "kysely";
import { addSshKey, createApiToken, createOrganization } from "../../src/catalog/accounts.js";
import { applyCatalog } from "../../src/catalog/apply.js";
import { readCatalogFile, type CatalogFile } from "../../src/catalog/catalog-file.js";
import {
  buildCloudTemplate,
  cloudTemplateExists,
  cloudTemplateFiles,
} from "../../src/hosts/qemu/cloud-template.js";
import {
  buildDemoTemplate,
  demoTemplateExists,
  demoTemplateFiles,
} from "../../src/hosts/qemu/demo-template.js";
import type { HostDriver, StepTimeouts } from "../../src/hosts/driver.js";
import { createServer, type RunningServer } from "../../src/server.js";
import { randomAlphanumeric, type Database } from "../../src/store/index.js";

const exec = promisify(execFile);
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const CACHE_TEMPLATES = join(ROOT, ".cache/templates");
export const SSH_KEY = join(ROOT, ".cache/e2e_ed25519");

/** Builds a template once per machine into .cache/; concurrent test files wait for the first. */
async function cachedTemplate<T>(
  name: string,
  exists: () => boolean,
  build: () => Promise<unknown>,
  files: () => T,
) {
  const lock = join(ROOT, ".cache", `${name}.lock`);
  mkdirSync(join(ROOT, ".cache"), { recursive: true });
  for (;;) {
    if (exists()) return files();
    try {
      mkdirSync(lock);
    } catch {
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    try {
      if (!exists()) await build();
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }
}

export const demoTemplate = () =>
  cachedTemplate(
    "demo-template",
    () => demoTemplateExists(CACHE_TEMPLATES),
    () => buildDemoTemplate(CACHE_TEMPLATES),
    () => demoTemplateFiles(CACHE_TEMPLATES),
  );

export const cloudTemplate = () =>
  cachedTemplate(
    "cloud-template",
    () => cloudTemplateExists(CACHE_TEMPLATES),
    () => buildCloudTemplate(CACHE_TEMPLATES),
    () => cloudTemplateFiles(CACHE_TEMPLATES),
  );

export function sshKey(): string {
  if (!existsSync(SSH_KEY))
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "e2e@trebuchet.test", "-f", SSH_KEY]);
  return readFileSync(`${SSH_KEY}.pub`, "utf8").trim();
}

/** The example catalog, with its host in a namespace of this test's and the cached template. */
export function e2eCatalog(options: { namespace: string; hostMemoryInGb?: number }): CatalogFile {
  const read = readCatalogFile(readFileSync(join(ROOT, "examples/catalog.yaml"), "utf8"));
  if ("problems" in read) throw new Error(read.problems.join("\n"));
  const catalog = read.catalog;
  catalog.hosts[0]!.namespace = options.namespace;
  if (options.hostMemoryInGb) catalog.hosts[0]!.memory_in_gb = options.hostMemoryInGb;
  for (const template of catalog.disk_templates) {
    for (const version of template.versions) {
      if (version.kind === "kernel") {
        const files = demoTemplateFiles(CACHE_TEMPLATES);
        version.image = files.image;
        version.kernel = files.kernel;
        version.initrd = files.initrd;
      } else {
        version.image = cloudTemplateFiles(CACHE_TEMPLATES).image;
      }
    }
  }
  return catalog;
}

export function uniqueNamespace(): string {
  return `tbt-${randomAlphanumeric(6).toLowerCase()}`;
}

export async function removeNamespace(namespace: string): Promise<void> {
  await exec("ip", ["netns", "del", namespace]).catch(() => undefined);
}

/** Runs a command in the namespace; resolves with its exit code and output, never rejects. */
export async function inNamespace(namespace: string, file: string, args: string[], timeoutMs = 20_000) {
  try {
    const { stdout, stderr } = await exec("ip", ["netns", "exec", namespace, file, ...args], {
      timeout: timeoutMs,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

export const ping = (namespace: string, address: string) =>
  inNamespace(namespace, "ping", [address.includes(":") ? "-6" : "-4", "-c", "1", "-W", "3", address]);

export const ssh = (namespace: string, address: string, command: string) =>
  inNamespace(namespace, "ssh", [
    "-i",
    SSH_KEY,
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "BatchMode=yes",
    `root@${address}`,
    command,
  ]);

/**
 * Seconds to send `bytes` from the namespace to the guest over SSH (into `cat > /dev/null`),
 * less an empty transfer's time (the SSH handshake): traffic to the guest only.
 */
export async function timedSendToGuest(namespace: string, address: string, bytes: number): Promise<number> {
  const send = async (count: number) => {
    const started = process.hrtime.bigint();
    const result = await inNamespace(
      namespace,
      "sh",
      [
        "-c",
        `head -c ${count} /dev/zero | ssh -i ${SSH_KEY} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes root@${address} 'cat > /dev/null'`,
      ],
      120_000,
    );
    if (result.code !== 0) throw new Error(`sending ${count} bytes to ${address}: ${result.stderr}`);
    return Number(process.hrtime.bigint() - started) / 1e9;
  };
  const handshake = await send(0);
  return Math.max(0.001, (await send(bytes)) - handshake);
}

/** QEMU processes of a VM (by the name Trebuchet gives them). */
export function qemuProcesses(vmId: string): number[] {
  try {
    return execFileSync("pgrep", ["-f", `process=trebuchet-${vmId}`], { encoding: "utf8" })
      .trim()
      .split("\n")
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createNetServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/** Organization `acme` with the e2e SSH key; returns an admin API token of it. */
export async function e2eTenant(db: Kysely<Database>): Promise<string> {
  await createOrganization(db, { subDomain: "acme", name: "Acme", baseDomain: "e2e.test" });
  await addSshKey(db, { subDomain: "acme", name: "e2e", publicKey: sshKey() });
  const { token } = await createApiToken(db, {
    subDomain: "acme",
    name: "e2e",
    role: "admin",
    scopes: [],
    allowedNetworks: [],
  });
  return token;
}

/** VMs outlive the control plane by design: stops whatever QEMU the database's VMs left running. */
export async function killVmProcesses(db: Kysely<Database>): Promise<void> {
  for (const vm of await db.selectFrom("virtual_machines").select("id").execute()) {
    for (const pid of qemuProcesses(vm.id)) process.kill(pid, "SIGKILL");
  }
}

export interface E2eServer {
  server: RunningServer;
  /** An admin token of organization `acme`. */
  token: string;
  dataDir: string;
  stop: () => Promise<void>;
}

/**
 * One in-process server (API and host agent) on a fresh data directory, with the e2e
 * catalog in `namespace` and the e2e tenant. `stop` leaves nothing behind: QEMU
 * processes, the server, the namespace, the data directory.
 */
export async function startE2eServer(options: {
  namespace: string;
  timeouts: Partial<StepTimeouts>;
  hostMemoryInGb?: number;
  /** Wraps the host's QEMU driver (a call log: src/hosts/call-log.ts). */
  instrument?: (driver: HostDriver) => HostDriver;
}): Promise<E2eServer> {
  const { namespace } = options;
  const dataDir = mkdtempSync(join(tmpdir(), "trebuchet-e2e-"));
  const server = await createServer({
    store: { dataDir },
    baseDomain: "e2e.test",
    agent: {
      dataDir,
      timeouts: options.timeouts,
      pollMs: 100,
      ...(options.instrument ? { instrument: options.instrument } : {}),
    },
  });
  await applyCatalog(server.store.db, e2eCatalog({ namespace, hostMemoryInGb: options.hostMemoryInGb }));
  const token = await e2eTenant(server.store.db);
  return {
    server,
    token,
    dataDir,
    async stop() {
      await killVmProcesses(server.store.db);
      await server.stop();
      await removeNamespace(namespace);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
