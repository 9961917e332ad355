import type { Kysely } from "kysely";
import type { CatalogSnapshot } from "../planner/snapshot.js";
import { canonicalAddress } from "./addresses.js";
import type { VirtualMachineSpec } from "../spec/index.js";
import { prepare, readTogether, type Database, type Row } from "../store/index.js";

const VERSION_SETTING = "catalog_version";

type GlobalCatalog = Pick<
  CatalogSnapshot,
  | "dataCenters"
  | "zones"
  | "hosts"
  | "packages"
  | "templates"
  | "templateVersions"
  | "ioProfiles"
  | "networks"
  | "subnets"
  | "speedProfiles"
  | "isos"
>;

/** Marks the shared catalog as changed, so every process reloads it on its next build. */
export async function bumpCatalogVersion(db: Kysely<Database>): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const version = `${Date.now()}-${Math.random().toString(36).slice(2)}`;
  await db
    .insertInto("settings")
    .values({ key: VERSION_SETTING, value: version, updated_at: now })
    .onConflict((oc) => oc.column("key").doUpdateSet({ value: version, updated_at: now }))
    .execute();
}

/**
 * Loads one organization's view of the catalog for the planner. The shared part (data
 * centers, packages, templates, networks, ...) is cached per process and reloaded when
 * `catalog apply` bumps the catalog version; organization-owned objects are read per
 * build, and only the addresses the spec names.
 */
export class SnapshotLoader {
  private cached: { version: string | undefined; catalog: GlobalCatalog } | undefined;
  private readonly queries;

  constructor(private readonly db: Kysely<Database>) {
    // Compiled once (see store/prepared.ts): every build makes these reads.
    this.queries = {
      setting: prepare(
        db,
        (d, key: string) => d.selectFrom("settings").select("value").where("key", "=", key),
        1,
      ),
      virtualNetworks: prepare(
        db,
        (d, org: string) => d.selectFrom("virtual_networks").selectAll().where("organization_id", "=", org),
        1,
      ),
      sshKeys: prepare(
        db,
        (d, org: string) =>
          d
            .selectFrom("ssh_keys")
            .selectAll()
            .where("organization_id", "=", org)
            .orderBy("created_at")
            .orderBy("id"),
        1,
      ),
      members: prepare(
        db,
        (d, org: string) =>
          d
            .selectFrom("users")
            .selectAll("users")
            .innerJoin("memberships", "memberships.user_id", "users.id")
            .where("memberships.organization_id", "=", org),
        1,
      ),
      groups: prepare(
        db,
        (d, org: string) =>
          d.selectFrom("virtual_machine_groups").selectAll().where("organization_id", "=", org),
        1,
      ),
      tags: prepare(
        db,
        (d, org: string) => d.selectFrom("tags").selectAll().where("organization_id", "=", org),
        1,
      ),
      isos: prepare(
        db,
        (d, org: string) => d.selectFrom("isos").selectAll().where("organization_id", "=", org),
        1,
      ),
      sharedDisks: prepare(
        db,
        (d, org: string) =>
          d.selectFrom("disks").selectAll().where("organization_id", "=", org).where("shared", "=", 1),
        1,
      ),
    };
  }

  async load(organization: Row<"organizations">, spec: VirtualMachineSpec): Promise<CatalogSnapshot> {
    const db = this.db;
    const q = this.queries;
    const org = organization.id;
    const global = await this.global();
    const named = namedAddresses(spec);
    // One snapshot for all of the organization's objects (one read transaction, on SQLite).
    const owned = readTogether(
      db,
      () =>
        [
          q.virtualNetworks(org),
          q.sshKeys(org),
          q.members(org),
          spec.group ? q.groups(org) : [],
          q.tags(org),
          spec.iso ? q.isos(org) : [],
          spec.shared_disks ? q.sharedDisks(org) : [],
        ] as const,
    );
    const [virtualNetworks, sshKeys, members, groups, tags, isos, disks, ipAddresses] = await Promise.all([
      ...owned,
      named.ids.length + named.addresses.length > 0
        ? db
            .selectFrom("ip_addresses")
            .selectAll()
            .where("organization_id", "=", org)
            .where((eb) =>
              eb.or([
                ...(named.ids.length > 0 ? [eb("id", "in", named.ids)] : []),
                ...(named.addresses.length > 0 ? [eb("address", "in", named.addresses)] : []),
              ]),
            )
            .execute()
        : [],
    ]);
    return visibleTo({
      ...global,
      isos: [...global.isos, ...isos],
      organization,
      virtualNetworks,
      sshKeys,
      members,
      groups,
      tags,
      disks,
      ipAddresses,
    });
  }

  private async global(): Promise<GlobalCatalog> {
    const db = this.db;
    const version = (await this.queries.setting(VERSION_SETTING))[0]?.value;
    if (this.cached && version !== undefined && this.cached.version === version) return this.cached.catalog;
    const [
      dataCenters,
      zones,
      hosts,
      packages,
      templates,
      templateVersions,
      ioProfiles,
      networks,
      subnets,
      speedProfiles,
      isos,
    ] = await Promise.all([
      db.selectFrom("data_centers").selectAll().execute(),
      db.selectFrom("zones").selectAll().execute(),
      db.selectFrom("hosts").selectAll().execute(),
      db.selectFrom("packages").selectAll().execute(),
      db.selectFrom("disk_templates").selectAll().execute(),
      db.selectFrom("disk_template_versions").selectAll().execute(),
      db.selectFrom("disk_io_profiles").selectAll().execute(),
      db.selectFrom("networks").selectAll().execute(),
      db.selectFrom("subnets").selectAll().execute(),
      db.selectFrom("network_speed_profiles").selectAll().execute(),
      db.selectFrom("isos").selectAll().where("organization_id", "is", null).execute(),
    ]);
    const catalog = {
      dataCenters,
      zones,
      hosts,
      packages,
      templates,
      templateVersions,
      ioProfiles,
      networks,
      subnets,
      speedProfiles,
      isos,
    };
    this.cached = { version, catalog };
    return catalog;
  }
}

/** Packages and templates an organization may use: public/universal ones and its own. */
function visibleTo(snapshot: CatalogSnapshot): CatalogSnapshot {
  const org = snapshot.organization.id;
  return {
    ...snapshot,
    packages: snapshot.packages.filter((p) => p.privacy === "public" || p.organization_id === org),
    templates: snapshot.templates.filter((t) => t.universal === 1 || t.organization_id === org),
  };
}

function namedAddresses(spec: VirtualMachineSpec): { ids: string[]; addresses: string[] } {
  const ids: string[] = [];
  const addresses: string[] = [];
  for (const nic of spec.network_interfaces ?? []) {
    for (const allocation of nic.ip_address_allocations ?? []) {
      const id = allocation.ip_address?.id?.trim();
      const address = allocation.ip_address?.address?.trim();
      if (id) ids.push(id);
      if (address) addresses.push(canonicalAddress(address) ?? address);
    }
  }
  return { ids, addresses };
}
