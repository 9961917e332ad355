/**
 * END TO END (root, real QEMU): `trebuchet demo`, stopped with Ctrl-C, then the README's
 * hand-run steps on the same machine with the same example catalog; then the demo again
 * beside the hand-run service. Each installation keeps to its own host state: the demo
 * removes its namespace when it stops, the hand-run service never sees it, and
 * `admin host cleanup` removes the service's once its VM is gone.
 *
 * It uses the example catalog's real namespaces (trebuchet-local, and the demo's
 * trebuchet-demo), so it refuses to run while either exists on the machine.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { namespaceOwner } from "../../src/hosts/qemu/network.js";
import { CLI, ROOT, runCliAsync } from "../support/cli.js";
import { freePort, ping, sshKey, SSH_KEY } from "../support/e2e.js";

const DEMO_NAMESPACE = "trebuchet-demo";
const HAND_NAMESPACE = "trebuchet-local"; // examples/catalog.yaml's host
const demoDir = mkdtempSync(join(tmpdir(), "trebuchet-demo-"));
const handDir = mkdtempSync(join(tmpdir(), "trebuchet-by-hand-"));
const children: ChildProcess[] = [];
// The hand-run steps read no configuration of the machine's (an installed package's).
const emptyConfig = join(handDir, "empty.yaml");
writeFileSync(emptyConfig, "{}\n");
const env = { TREBUCHET_CONFIG: emptyConfig, DATABASE_URL: "" };

/** Starts the demo; resolves with its output once it says the service keeps running. */
async function startDemo(port: number): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, [CLI, "demo", "--data", demoDir, "--listen", `127.0.0.1:${port}`], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the demo did not come up:\n${output}`)), 300_000);
    const check = () => {
      if (output.includes("press Ctrl-C to stop it")) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", check);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited (${code}):\n${output}`));
    });
  });
  return { child, output: () => output };
}

/** Ctrl-C, as a person at the terminal would; resolves with the exit code. */
function interrupt(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.removeAllListeners("exit");
    child.on("exit", (code) => resolve(code));
    child.kill("SIGINT");
  });
}

/** The README's `until curl -sf .../readyz` loop. */
async function untilReady(url: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const ready = await fetch(`${url}/readyz`).then(
      (response) => response.ok,
      () => false,
    );
    if (ready) return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`${url} never became ready`);
}

const cli = async (args: string[], extra: NodeJS.ProcessEnv = {}) => {
  const result = await runCliAsync(args, { env: { ...env, ...extra } });
  expect(result.status, `trebuchet ${args.join(" ")}\n${result.stdout}${result.stderr}`).toBe(0);
  return result.stdout.trim();
};

describe("the demo, then the README's hand-run steps, on one machine", () => {
  beforeAll(async () => {
    expect(await namespaceOwner(DEMO_NAMESPACE), `${DEMO_NAMESPACE} exists already`).toEqual({
      exists: false,
    });
    expect(await namespaceOwner(HAND_NAMESPACE), `${HAND_NAMESPACE} exists already`).toEqual({
      exists: false,
    });
    sshKey();
  });
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    // Whatever a failed run left: the same cleanup the operator would run.
    await runCliAsync(["admin", "host", "cleanup", "--data", demoDir], { env });
    await runCliAsync(["admin", "host", "cleanup", "--data", handDir], { env });
    rmSync(demoDir, { recursive: true, force: true });
    rmSync(handDir, { recursive: true, force: true });
  });

  it(
    "works, and each stop leaves nothing behind but what a live VM owns",
    async () => {
      const demo = await startDemo(await freePort());
      expect(demo.output()).toMatch(/build vmbuild_\w+ complete/);
      expect(demo.output()).toContain(`ip netns exec ${DEMO_NAMESPACE} ssh`);
      const demoInstallation = await namespaceOwner(DEMO_NAMESPACE);
      expect(demoInstallation).toMatchObject({ exists: true, installation: expect.stringMatching(/^inst_/) });
      expect(await interrupt(demo.child)).toBe(0);
      expect(demo.output()).toContain(`removed network namespace ${DEMO_NAMESPACE}`);
      expect(await namespaceOwner(DEMO_NAMESPACE)).toEqual({ exists: false });

      // The README's "To run the pieces by hand", word for word but for the directory and port.
      const data = ["--data", handDir];
      await cli(["admin", "template", "build-demo", ...data]);
      await cli(["admin", "catalog", "apply", "examples/catalog.yaml", ...data]);
      await cli(["admin", "org", "create", "--sub-domain", "acme", "--name", "Acme", ...data]);
      await cli([
        "admin",
        "ssh-key",
        "add",
        "--org",
        "acme",
        "--name",
        "me",
        "--key-file",
        `${SSH_KEY}.pub`,
        ...data,
      ]);
      const token = await cli(["admin", "token", "create", "--org", "acme", ...data]);
      const port = await freePort();
      const serve = spawn(process.execPath, [CLI, "serve", ...data, "--listen", `127.0.0.1:${port}`], {
        cwd: ROOT,
        env: { ...process.env, ...env },
        stdio: "ignore",
      });
      children.push(serve);
      const client = { TREBUCHET_URL: `http://127.0.0.1:${port}`, TREBUCHET_TOKEN: token };
      await untilReady(client.TREBUCHET_URL);
      const built = JSON.parse(
        await cli(["build", "examples/web.xml", "--org", "acme", "--wait", "--output", "json"], client),
      ) as { virtual_machine: { id: string; ip_addresses: { address: string }[] } };
      const vm = built.virtual_machine;
      const v4 = vm.ip_addresses.map((a) => a.address).find((a) => !a.includes(":"))!;
      expect((await ping(HAND_NAMESPACE, v4)).code).toBe(0);
      const handInstallation = await namespaceOwner(HAND_NAMESPACE);
      expect(handInstallation).toMatchObject({ exists: true, installation: expect.stringMatching(/^inst_/) });
      expect(handInstallation).not.toEqual(demoInstallation);

      // The demo again, beside the service: the same addresses, in its own namespace.
      const again = await startDemo(await freePort());
      expect(await namespaceOwner(DEMO_NAMESPACE)).toEqual(demoInstallation); // the same installation
      expect((await ping(DEMO_NAMESPACE, v4)).code).toBe(0);
      expect(await interrupt(again.child)).toBe(0);
      expect(await namespaceOwner(DEMO_NAMESPACE)).toEqual({ exists: false });
      expect((await ping(HAND_NAMESPACE, v4)).code).toBe(0);

      // The service's VM is live: cleanup keeps it and its namespace; once it is gone, both go.
      const kept = JSON.parse(await cli(["admin", "host", "cleanup", ...data, "--json"])) as {
        vms: string[];
        namespaceRemoved: string | null;
      };
      expect(kept).toMatchObject({ vms: [], links: [], namespaceRemoved: null });
      expect((await ping(HAND_NAMESPACE, v4)).code).toBe(0);
      await cli(["vm", "delete", vm.id, "--purge"], client);
      serve.kill("SIGTERM");
      await new Promise((resolve) => serve.once("exit", resolve));
      const cleaned = JSON.parse(await cli(["admin", "host", "cleanup", ...data, "--json"])) as {
        namespaceRemoved: string | null;
      };
      expect(cleaned.namespaceRemoved).toBe(HAND_NAMESPACE);
      expect(await namespaceOwner(HAND_NAMESPACE)).toEqual({ exists: false });
    },
    15 * 60_000,
  );
});
