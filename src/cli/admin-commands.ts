import { readFileSync } from "node:fs";
import { InvalidArgumentError, Option, type Command } from "commander";
import { mintCapability } from "../auth/capabilities.js";
import {
  AccountError,
  addSshKey,
  createApiToken,
  createOrganization,
  createUser,
  organizationBySubDomain,
  parseDuration,
  revokeApiToken,
  setMaintenance,
  setOrganizationState,
} from "../catalog/accounts.js";
import { applyCatalog, CatalogError } from "../catalog/apply.js";
import { readCatalogFile, type CatalogFile } from "../catalog/catalog-file.js";
import { buildCloudTemplate, cloudTemplateExists, cloudTemplateFiles } from "../hosts/qemu/cloud-template.js";
import { buildDemoTemplate, demoTemplateExists, demoTemplateFiles } from "../hosts/qemu/demo-template.js";
import { join } from "node:path";
import { projectPath } from "../paths.js";
import { CLOUD_TEMPLATE_PACKAGES, ensureSystemPackages } from "./system-packages.js";
import { DEFAULT_BASE_DOMAIN } from "../server.js";
import {
  LIMIT_NAMES,
  LIMIT_UNITS,
  limitsOf,
  organizationUsage,
  parseLimitValue,
  setOrganizationLimits,
  type LimitName,
  type LimitSetting,
} from "../lifecycle/index.js";
import { loadSettings } from "../config/load.js";
import { cleanUpHost, HostCleanupError } from "../engine/host-cleanup.js";
import { HostError } from "../hosts/driver.js";
import { organizationLimitsOf, storeOptionsOf } from "../config/server-config.js";
import type { Settings } from "../config/settings.js";
import { migrateToLatest, openStore, ROLES, type Role, type Store } from "../store/index.js";

/** A template's catalog entry, as examples/catalog.yaml has it, alone in a catalog of its own. */
function templateCatalog(permalink: string): CatalogFile {
  const read = readCatalogFile(readFileSync(projectPath("examples/catalog.yaml"), "utf8"));
  if ("problems" in read) throw new Error(read.problems.join("\n"));
  const template = read.catalog.disk_templates.find((t) => t.permalink === permalink)!;
  return {
    data_centers: [],
    hosts: [],
    packages: [],
    disk_io_profiles: [],
    network_speed_profiles: [],
    disk_templates: [template],
    networks: [],
    virtual_networks: [],
    isos: [],
  };
}

/** The option of each limit of `admin org limits`. */
const LIMIT_FLAGS = {
  virtualMachines: "virtual_machines",
  memory: "virtual_machine_memory",
  diskSpace: "disk_space",
  unallocatedIps: "unallocated_ip_addresses",
} as const satisfies Record<string, LimitName>;
type LimitFlag = keyof typeof LIMIT_FLAGS;

/** A limit option's value; commander keeps no null from a parser, so unlimited stays a word until used. */
type LimitFlagValue = number | "unlimited" | "default";
const limitSetting = (value: string): LimitFlagValue => {
  if (value === "default" || value === "unlimited") return value;
  try {
    return parseLimitValue(value)!;
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
};

interface StoreFlags {
  config?: string;
  data?: string;
  json?: boolean;
}

/** The settings an admin command runs with: the service's own file and environment, and --data. */
function settingsOf(flags: StoreFlags): Settings {
  return loadSettings({
    configFile: flags.config,
    flags: flags.data === undefined ? [] : [{ key: "data_dir", flag: "--data", text: flags.data }],
  }).settings;
}

/** Prints a result for people, or as one JSON document with --json. */
export function output(flags: { json?: boolean }, value: unknown, human: string): void {
  process.stdout.write(flags.json ? JSON.stringify(value, null, 2) + "\n" : human + "\n");
}

/** Runs an action against the configured store; operator mistakes exit 1 with a one-line message. */
async function withStore(
  flags: StoreFlags,
  action: (store: Store) => Promise<void>,
  migrate = true,
): Promise<void> {
  const store = await openStore({ ...storeOptionsOf(settingsOf(flags)), migrate });
  try {
    await action(store);
  } catch (error) {
    if (
      error instanceof AccountError ||
      error instanceof CatalogError ||
      error instanceof HostError ||
      error instanceof HostCleanupError
    ) {
      process.stderr.write(`trebuchet: ${error.message}\n`);
      process.exitCode = 1;
      return;
    }
    throw error;
  } finally {
    await store.close();
  }
}

const collect = (value: string, previous: string[] = []) => [...previous, value];
const roleOption = () =>
  new Option("--role <role>", "role in the organization").choices([...ROLES]).default("admin");
const duration = (value: string) => {
  try {
    return parseDuration(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
};

function storeCommand(parent: Command, name: string, description: string): Command {
  return parent
    .command(name)
    .description(description)
    .option(
      "--config <file>",
      "configuration file (default: $TREBUCHET_CONFIG or /etc/trebuchet/trebuchet.yaml)",
    )
    .option("--data <dir>", "data directory (default: the configuration's data_dir)")
    .option("--json", "print the result as JSON");
}

export function registerAdminCommands(program: Command): void {
  const admin = program
    .command("admin")
    .description("Operator commands; the database is DATABASE_URL (PostgreSQL) or SQLite in --data DIR");

  storeCommand(admin, "migrate", "Bring the database schema up to date (also done at every start)").action(
    (flags: StoreFlags) =>
      withStore(
        flags,
        async (store) => {
          const report = await migrateToLatest(store.db);
          const human = report.applied.length
            ? `applied ${report.applied.join(", ")} to ${store.location}`
            : `${store.location} is up to date`;
          output(flags, { database: store.dialect, location: store.location, ...report }, human);
        },
        false,
      ),
  );

  const catalog = admin
    .command("catalog")
    .description("The catalog: data centers, hosts, packages, templates, networks");
  storeCommand(catalog, "apply", "Create or update the catalog from a YAML/JSON file (idempotent)")
    .argument("<file>", "catalog file (see examples/catalog.yaml)")
    .action((file: string, flags: StoreFlags) =>
      withStore(flags, async (store) => {
        const read = readCatalogFile(readFileSync(file, "utf8"));
        if ("problems" in read) {
          for (const problem of read.problems) process.stderr.write(`${file}: ${problem}\n`);
          process.exitCode = 1;
          return;
        }
        const report = await applyCatalog(store.db, read.catalog);
        output(
          flags,
          report,
          `catalog applied: ${report.created} created, ${report.updated} updated, ${report.unchanged} unchanged`,
        );
      }),
    );

  const org = admin.command("org").description("Organizations");
  storeCommand(org, "create", "Create an organization")
    .requiredOption("--sub-domain <sub>", "its sub-domain (lower-case), the name clients look it up by")
    .requiredOption("--name <name>", "display name")
    .option("--suspended", "create it suspended")
    .option("--not-activated", "create it not yet activated")
    .option("--currency <code>", "ISO 4217 currency", "GBP")
    .option("--country <code>", "ISO 3166 country")
    .option(
      "--base-domain <domain>",
      "VM names are <hostname>.<sub-domain>.<base-domain>",
      process.env.TREBUCHET_BASE_DOMAIN ?? DEFAULT_BASE_DOMAIN,
    )
    .action(
      (
        flags: StoreFlags & {
          subDomain: string;
          name: string;
          suspended?: boolean;
          notActivated?: boolean;
          currency: string;
          country?: string;
          baseDomain: string;
        },
      ) =>
        withStore(flags, async (store) => {
          if (flags.suspended && flags.notActivated)
            throw new AccountError("give --suspended or --not-activated, not both");
          const row = await createOrganization(store.db, {
            subDomain: flags.subDomain,
            name: flags.name,
            state: flags.suspended ? "suspended" : flags.notActivated ? "not_activated" : "active",
            currency: flags.currency,
            country: flags.country ?? null,
            baseDomain: flags.baseDomain,
          });
          output(flags, row, `created organization ${row.sub_domain} (${row.id}), ${row.state}`);
        }),
    );
  for (const [name, state, verb] of [
    ["suspend", "suspended", "suspended"],
    ["activate", "active", "activated"],
  ] as const) {
    storeCommand(org, name, `Mark an organization ${state}`)
      .argument("<sub-domain>", "the organization's sub-domain")
      .action((subDomain: string, flags: StoreFlags) =>
        withStore(flags, async (store) => {
          const row = await setOrganizationState(store.db, subDomain, state);
          output(flags, row, `${verb} organization ${subDomain}`);
        }),
      );
  }

  storeCommand(org, "limits", "Show an organization's limits and use, or set its own limits")
    .argument("<sub-domain>", "the organization's sub-domain")
    .option("--virtual-machines <n>", "VMs it may hold (a number, unlimited, or default)", limitSetting)
    .option("--memory <gb>", "GB of memory its VMs may have in all", limitSetting)
    .option("--disk-space <gb>", "GB of disk its disks may have in all", limitSetting)
    .option("--unallocated-ips <n>", "IP addresses it may hold unallocated", limitSetting)
    .addHelpText(
      "after",
      "\nLimits not set for an organization are the defaults of TREBUCHET_ORGANIZATION_LIMITS.\n" +
        "Example: trebuchet admin org limits acme --virtual-machines 20 --memory 64 --disk-space default",
    )
    .action((subDomain: string, flags: StoreFlags & Partial<Record<LimitFlag, LimitFlagValue>>) =>
      withStore(flags, async (store) => {
        const row = await organizationBySubDomain(store.db, subDomain);
        const settings = Object.fromEntries(
          Object.entries(LIMIT_FLAGS)
            .filter(([flag]) => flags[flag as LimitFlag] !== undefined)
            .map(([flag, name]): [LimitName, LimitSetting] => {
              const value = flags[flag as LimitFlag]!;
              return [name, value === "unlimited" ? null : value];
            }),
        );
        if (Object.keys(settings).length > 0) await setOrganizationLimits(store.db, row.id, settings);
        const check = { organizationId: row.id, defaults: organizationLimitsOf(settingsOf(flags)) };
        const { limits, overridden } = await limitsOf(store.db, check);
        const usage = await organizationUsage(store.db, row.id);
        const lines = LIMIT_NAMES.map((name) => {
          const unit = LIMIT_UNITS[name] ? ` ${LIMIT_UNITS[name]}` : "";
          const limit = limits[name] === null ? "unlimited" : `${limits[name]}${unit}`;
          const source = overridden.includes(name) ? "its own" : "default";
          return `  ${name.padEnd(26)} ${String(usage[name]).padStart(6)} of ${limit} (${source})`;
        });
        output(
          flags,
          { organization: row.sub_domain, limits, own: overridden, usage },
          [`limits of ${row.sub_domain} (${row.id}): in use of limit`, ...lines].join("\n"),
        );
      }),
    );

  const user = admin.command("user").description("Users");
  storeCommand(user, "create", "Create a user (or add memberships to an existing one)")
    .requiredOption("--email <address>", "email address")
    .option("--first-name <name>")
    .option("--last-name <name>")
    .option("--org <sub-domain>", "give the user access to this organization (repeatable)", collect, [])
    .addOption(roleOption())
    .action(
      (
        flags: StoreFlags & {
          email: string;
          firstName?: string;
          lastName?: string;
          org: string[];
          role: Role;
        },
      ) =>
        withStore(flags, async (store) => {
          const row = await createUser(store.db, {
            email: flags.email,
            ...(flags.firstName ? { firstName: flags.firstName } : {}),
            ...(flags.lastName ? { lastName: flags.lastName } : {}),
            memberships: flags.org.map((subDomain) => ({ subDomain, role: flags.role })),
          });
          output(flags, row, `user ${row.email_address} (${row.id})`);
        }),
    );

  const sshKey = admin.command("ssh-key").description("SSH keys of organizations");
  storeCommand(sshKey, "add", "Register a public key with an organization")
    .requiredOption("--org <sub-domain>", "the organization")
    .requiredOption("--name <name>", "a name for the key")
    .option("--key <public-key>", "the public key line")
    .option("--key-file <path>", "read the public key from a file (e.g. ~/.ssh/id_ed25519.pub)")
    .option("--user <email>", "the user the key belongs to")
    .action(
      (flags: StoreFlags & { org: string; name: string; key?: string; keyFile?: string; user?: string }) =>
        withStore(flags, async (store) => {
          const publicKey =
            flags.key ?? (flags.keyFile ? readFileSync(flags.keyFile, "utf8").trim() : undefined);
          if (!publicKey) throw new AccountError("give --key or --key-file");
          const row = await addSshKey(store.db, {
            subDomain: flags.org,
            name: flags.name,
            publicKey,
            ...(flags.user ? { userEmail: flags.user } : {}),
          });
          output(flags, row, `added key ${row.fingerprint} (${row.id})`);
        }),
    );

  const token = admin.command("token").description("API tokens");
  storeCommand(token, "create", "Create an API token; its secret is printed once and stored only as a hash")
    .requiredOption("--org <sub-domain>", "the organization the token acts in")
    .option("--name <name>", "a name for the token", "cli")
    .option("--scope <scope>", "limit to a scope (repeatable; default: every scope)", collect, [])
    .option("--allow-network <cidr>", "only accept it from this network (repeatable)", collect, [])
    .option("--expires-in <duration>", "expire after 90s, 30m, 12h, 7d ...", duration)
    .option("--user <email>", "the user the token belongs to")
    .addOption(roleOption())
    .action(
      (
        flags: StoreFlags & {
          org: string;
          name: string;
          scope: string[];
          allowNetwork: string[];
          expiresIn?: number;
          user?: string;
          role: Role;
        },
      ) =>
        withStore(flags, async (store) => {
          const created = await createApiToken(store.db, {
            subDomain: flags.org,
            name: flags.name,
            role: flags.role,
            scopes: flags.scope,
            allowedNetworks: flags.allowNetwork,
            ...(flags.expiresIn !== undefined ? { expiresInSeconds: flags.expiresIn } : {}),
            ...(flags.user ? { userEmail: flags.user } : {}),
          });
          output(flags, { token: created.token, id: created.id }, created.token);
        }),
    );
  storeCommand(token, "revoke", "Revoke an API token by its ID")
    .argument("<id>", "the token's ID (tok_...)")
    .action((id: string, flags: StoreFlags) =>
      withStore(flags, async (store) => {
        await revokeApiToken(store.db, id);
        output(flags, { revoked: id }, `revoked ${id}`);
      }),
    );

  const capability = admin.command("capability").description("Capabilities tokens");
  storeCommand(
    capability,
    "create",
    "Mint a capabilities token: a narrow, expiring grant in one organization",
  )
    .requiredOption("--org <sub-domain>", "the organization it acts in")
    .option("--scope <scope>", "scope it grants (repeatable)", collect, [])
    .option("--operation <name>", "limit to an operation, e.g. build_from_spec (repeatable)", collect, [])
    .option("--expires-in <duration>", "lifetime (90s, 30m, 12h, 7d)", duration, 3600)
    .action((flags: StoreFlags & { org: string; scope: string[]; operation: string[]; expiresIn: number }) =>
      withStore(flags, async (store) => {
        const org = await organizationBySubDomain(store.db, flags.org);
        const scopes = flags.scope.length > 0 ? flags.scope : ["virtual_machines", "tasks:read"];
        const { token, claims } = await mintCapability(store.db, {
          organizationId: org.id,
          scopes,
          operations: flags.operation,
          expiresInSeconds: flags.expiresIn,
        });
        output(flags, { token, ...claims }, token);
      }),
    );

  const template = admin.command("template").description("Disk templates");
  storeCommand(
    template,
    "build-demo",
    "Build the demo template from Debian packages (kernel, busybox, dropbear) and register it",
  )
    .option("--force", "build it again even when it exists")
    .action((flags: StoreFlags & { force?: boolean }) =>
      withStore(flags, async (store) => {
        const templatesDir = join(settingsOf(flags).data_dir, "templates");
        const files =
          flags.force || !demoTemplateExists(templatesDir)
            ? await buildDemoTemplate(templatesDir, (line) => process.stderr.write(`${line}\n`))
            : demoTemplateFiles(templatesDir);
        const report = await applyCatalog(store.db, templateCatalog("templates/trebuchet-demo"));
        output(
          flags,
          { ...files, catalog: report },
          `demo template in ${files.directory}, registered as templates/trebuchet-demo`,
        );
      }),
    );

  storeCommand(
    template,
    "build-cloud",
    "Build a Debian 12 cloud image (cloud-init, OpenSSH) from Debian packages with mmdebstrap and register it",
  )
    .option("--force", "build it again even when it exists")
    .action((flags: StoreFlags & { force?: boolean }) =>
      withStore(flags, async (store) => {
        const templatesDir = join(settingsOf(flags).data_dir, "templates");
        const log = (line: string) => process.stderr.write(`${line}\n`);
        let files = cloudTemplateFiles(templatesDir);
        if (flags.force || !cloudTemplateExists(templatesDir)) {
          await ensureSystemPackages(CLOUD_TEMPLATE_PACKAGES, log);
          files = await buildCloudTemplate(templatesDir, log);
        }
        const report = await applyCatalog(store.db, templateCatalog("templates/debian-12-cloud"));
        output(
          flags,
          { ...files, catalog: report },
          `cloud template in ${files.directory}, registered as templates/debian-12-cloud`,
        );
      }),
    );

  const host = admin.command("host").description("What the host agents made on this machine");
  storeCommand(
    host,
    "cleanup",
    "Remove what no live VM of this installation owns on this machine: VM directories, taps and bridges, and the host's network namespace when no VM is left",
  )
    .option("--host <name>", "the catalog host this machine runs (default: the catalog's only host)")
    .option(
      "--abandoned",
      "also remove the host's namespace when another installation marked it and no process lives in it",
    )
    .action((flags: StoreFlags & { host?: string; abandoned?: boolean }) =>
      withStore(flags, async (store) => {
        const result = await cleanUpHost({
          db: store.db,
          dataDir: settingsOf(flags).data_dir,
          ...(flags.host ? { hostName: flags.host } : {}),
          cleanup: { abandoned: flags.abandoned === true },
        });
        const lines = [
          ...result.vms.map((vm) => `removed ${vm} (no live VM owns it)`),
          ...(result.links.length > 0 ? [`removed links ${result.links.join(", ")}`] : []),
          ...(result.namespaceRemoved ? [`removed network namespace ${result.namespaceRemoved}`] : []),
          ...result.notes,
        ];
        output(
          flags,
          result,
          lines.length > 0 ? lines.join("\n") : `nothing to clean up on host ${result.host}`,
        );
      }),
    );

  const maintenance = admin
    .command("maintenance")
    .description("Maintenance mode: every API request gets 503 while it is on");
  for (const state of ["on", "off"] as const) {
    storeCommand(maintenance, state, `Turn maintenance mode ${state}`).action((flags: StoreFlags) =>
      withStore(flags, async (store) => {
        await setMaintenance(store.db, state === "on");
        output(flags, { maintenance: state }, `maintenance ${state}`);
      }),
    );
  }
}
