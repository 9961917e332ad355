import { execFile, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { PROJECT_ROOT } from "../paths.js";
import { promisify } from "node:util";
import { InvalidArgumentError, type Command } from "commander";
import {
  addSshKey,
  AccountError,
  createApiToken,
  createOrganization,
  organizationBySubDomain,
} from "../catalog/accounts.js";
import { applyCatalog } from "../catalog/apply.js";
import { cleanUpHost } from "../engine/host-cleanup.js";
import { readCatalogFile } from "../catalog/catalog-file.js";
import { buildDemoTemplate, demoTemplateExists } from "../hosts/qemu/demo-template.js";
import { createServer, DEFAULT_BASE_DOMAIN } from "../server.js";
import { openStore } from "../store/index.js";
import { buildCommand } from "./user-commands.js";
import { ApiClient } from "./client.js";
import { parseListen, type ListenAddress } from "../api/listen.js";
import { DEMO_PACKAGES, ensureSystemPackages } from "./system-packages.js";

const exec = promisify(execFile);
/** The demo host's network namespace (examples/catalog.yaml's host, moved apart). */
export const DEMO_NAMESPACE = "trebuchet-demo";
const ROOT = PROJECT_ROOT;
const say = (line: string) => process.stdout.write(`${line}\n`);
const listenArgument = (text: string) => {
  try {
    return parseListen(text);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
};

export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description(
      "Build a VM from examples/web.xml on this machine, end to end, and keep the service running until Ctrl-C",
    )
    .option("--data <dir>", "data directory", ".data/demo")
    .option("--listen <host:port>", "API address", listenArgument, parseListen("127.0.0.1:8080"))
    .option("--keep", "leave the demo VM running when the demo stops")
    .action(async (options: { data: string; listen: ListenAddress; keep?: boolean }) => {
      const dataDir = resolve(options.data);
      mkdirSync(dataDir, { recursive: true });
      await ensureSystemPackages(DEMO_PACKAGES, say);

      const templatesDir = join(dataDir, "templates");
      if (!demoTemplateExists(templatesDir)) {
        say("building the demo disk template from Debian packages (kernel, busybox, dropbear)");
        await buildDemoTemplate(templatesDir, (line) => say(`  ${line}`));
      }

      // Catalog, organization, SSH key and token, idempotently.
      const setup = await openStore({ dataDir });
      let token: string;
      const keyFile = join(dataDir, "demo_ed25519");
      try {
        const read = readCatalogFile(readFileSync(join(ROOT, "examples/catalog.yaml"), "utf8"));
        if ("problems" in read) throw new Error(read.problems.join("\n"));
        // The demo's networks live in a namespace of their own, apart from those of a
        // service run by hand from the same catalog (the same address ranges).
        for (const host of read.catalog.hosts) host.namespace = DEMO_NAMESPACE;
        await applyCatalog(setup.db, read.catalog);
        try {
          await organizationBySubDomain(setup.db, "demo");
        } catch (error) {
          if (!(error instanceof AccountError)) throw error;
          await createOrganization(setup.db, {
            subDomain: "demo",
            name: "Demo",
            baseDomain: process.env.TREBUCHET_BASE_DOMAIN ?? DEFAULT_BASE_DOMAIN,
          });
        }
        if (!existsSync(keyFile))
          await exec("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "trebuchet-demo", "-f", keyFile]);
        await addSshKey(setup.db, {
          subDomain: "demo",
          name: "demo",
          publicKey: readFileSync(`${keyFile}.pub`, "utf8"),
        }).catch((error: unknown) => {
          if (!(error instanceof AccountError) || !/already/.test(error.message)) throw error;
        });
        token = (
          await createApiToken(setup.db, {
            subDomain: "demo",
            name: "demo",
            role: "admin",
            scopes: [],
            allowedNetworks: [],
            expiresInSeconds: 7 * 86_400,
          })
        ).token;
      } finally {
        await setup.close();
      }

      const server = await createServer({
        store: { dataDir },
        baseDomain: process.env.TREBUCHET_BASE_DOMAIN ?? DEFAULT_BASE_DOMAIN,
        agent: { dataDir },
        logger: { level: process.env.TREBUCHET_LOG_LEVEL ?? "warn" },
      });
      const address = await server.app.listen({ host: options.listen.host, port: options.listen.port });
      say(`\nTrebuchet is serving the Katapult API at ${address}/core/v1 (data in ${dataDir})`);
      say(`  export TREBUCHET_URL=${address} TREBUCHET_TOKEN=${token}`);
      const client = new ApiClient(address, token);
      const built: { vmId?: string } = {};
      let stopping = false;
      const stop = async () => {
        if (stopping) process.exit(130);
        stopping = true;
        say("\nstopping");
        const vmId = built.vmId;
        if (vmId && !options.keep) {
          say(`deleting and purging ${vmId} (keep it next time with --keep)`);
          await deleteAndPurge(client, vmId).catch((error: Error) =>
            say(`(could not purge it: ${error.message})`),
          );
        }
        await server.stop();
        if (!options.keep) await cleanUpDemoHost(dataDir);
        say("stopped");
        process.exit(0);
      };
      process.on("SIGINT", () => void stop());
      process.on("SIGTERM", () => void stop());

      // A VM left by an earlier demo run holds the hostname: remove it first.
      const earlier = await server.store.db
        .selectFrom("virtual_machines")
        .innerJoin("organizations", "organizations.id", "virtual_machines.organization_id")
        .select("virtual_machines.id")
        .where("organizations.sub_domain", "=", "demo")
        .where("virtual_machines.hostname", "=", "web-01")
        .where("virtual_machines.deleted_at", "is", null)
        .executeTakeFirst();
      if (earlier) {
        say(`removing ${earlier.id} from an earlier demo run`);
        await deleteAndPurge(client, earlier.id);
      }

      say("\nbuilding examples/web.xml");
      const result = await buildCommand(client, join(ROOT, "examples/web.xml"), {
        org: "demo",
        wait: true,
        output: "text",
        log: say,
      });
      if (!result.ok || !result.vm) {
        await server.stop();
        await cleanUpDemoHost(dataDir);
        process.exitCode = 1;
        return;
      }
      built.vmId = result.vm.id;
      const host = await server.store.db.selectFrom("hosts").select("namespace").executeTakeFirst();
      const v4 = result.vm.ip_addresses.map((i) => i.address).find((a) => !a.includes(":"));
      const sshArgs = [
        "-i",
        keyFile,
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        `root@${v4}`,
      ];
      const prefix = host?.namespace ? ["ip", "netns", "exec", host.namespace] : [];
      const command = [...prefix, "ssh", ...sshArgs];
      say(`\nconnect:\n  ${command.join(" ")}`);
      const check = spawnSync(command[0]!, [...command.slice(1), "hostname; uname -r; cat /etc/motd"], {
        encoding: "utf8",
        timeout: 20_000,
      });
      say(
        check.status === 0
          ? `\n$ ssh ... 'hostname; uname -r; cat /etc/motd'\n${check.stdout.trim()}`
          : `\n(ssh check failed: ${check.stderr.trim()})`,
      );
      say("\nThe service keeps running; press Ctrl-C to stop it.");
    });
}

/** Removes what the demo made on this machine that no live VM owns: its namespace, once its VM is gone. */
async function cleanUpDemoHost(dataDir: string): Promise<void> {
  const store = await openStore({ dataDir });
  try {
    const result = await cleanUpHost({ db: store.db, dataDir });
    if (result.namespaceRemoved) say(`removed network namespace ${result.namespaceRemoved}`);
    for (const note of result.notes) say(note);
  } catch (error) {
    say(
      `(could not clean up the demo's host state: ${(error as Error).message}; trebuchet admin host cleanup --data ${dataDir})`,
    );
  } finally {
    await store.close();
  }
}

/** Deletes a VM and purges it from the trash, waiting until its host holds nothing of it. */
async function deleteAndPurge(client: ApiClient, vmId: string): Promise<void> {
  const { trash_object } = await client.call<{ trash_object: { id: string } }>(
    "DELETE",
    `/virtual_machines/_?virtual_machine[id]=${vmId}`,
  );
  const { task } = await client.call<{ task: { id: string } }>(
    "DELETE",
    `/trash_objects/_?trash_object[id]=${trash_object.id}`,
  );
  await client.waitForTask(task.id, 60_000);
}
