import type { Kysely } from "kysely";
import type { CatalogSnapshot } from "../planner/snapshot.js";
import type { Database, OrganizationsTable } from "../store/index.js";

/**
 * Loads one organization's view of the catalog for the planner: everything global
 * (data centers, packages it may use, templates, networks, ...) and only its own
 * organization-owned objects.
 */
export async function loadSnapshot(
  db: Kysely<Database>,
  organization: OrganizationsTable,
): Promise<CatalogSnapshot> {
  const org = organization.id;
  const [dataCenters, zones, hosts, packages, templates, ioProfiles, networks, subnets, speedProfiles] =
    await Promise.all([
      db.selectFrom("data_centers").selectAll().execute(),
      db.selectFrom("zones").selectAll().execute(),
      db.selectFrom("hosts").selectAll().execute(),
      db
        .selectFrom("packages")
        .selectAll()
        .where((eb) => eb.or([eb("privacy", "=", "public"), eb("organization_id", "=", org)]))
        .execute(),
      db
        .selectFrom("disk_templates")
        .selectAll()
        .where((eb) => eb.or([eb("universal", "=", 1), eb("organization_id", "=", org)]))
        .execute(),
      db.selectFrom("disk_io_profiles").selectAll().execute(),
      db.selectFrom("networks").selectAll().execute(),
      db.selectFrom("subnets").selectAll().execute(),
      db.selectFrom("network_speed_profiles").selectAll().execute(),
    ]);
  const templateIds = templates.map((t) => t.id);
  const [templateVersions, virtualNetworks, sshKeys, members, groups, tags, isos, disks, ipAddresses] =
    await Promise.all([
      templateIds.length > 0
        ? db
            .selectFrom("disk_template_versions")
            .selectAll()
            .where("disk_template_id", "in", templateIds)
            .execute()
        : [],
      db.selectFrom("virtual_networks").selectAll().where("organization_id", "=", org).execute(),
      db
        .selectFrom("ssh_keys")
        .selectAll()
        .where("organization_id", "=", org)
        .orderBy("created_at")
        .orderBy("id")
        .execute(),
      db
        .selectFrom("users")
        .selectAll("users")
        .innerJoin("memberships", "memberships.user_id", "users.id")
        .where("memberships.organization_id", "=", org)
        .execute(),
      db.selectFrom("virtual_machine_groups").selectAll().where("organization_id", "=", org).execute(),
      db.selectFrom("tags").selectAll().where("organization_id", "=", org).execute(),
      db
        .selectFrom("isos")
        .selectAll()
        .where((eb) => eb.or([eb("organization_id", "is", null), eb("organization_id", "=", org)]))
        .execute(),
      db.selectFrom("disks").selectAll().where("organization_id", "=", org).where("shared", "=", 1).execute(),
      db.selectFrom("ip_addresses").selectAll().where("organization_id", "=", org).execute(),
    ]);
  return {
    organization,
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
    virtualNetworks,
    sshKeys,
    members,
    groups,
    tags,
    isos,
    disks,
    ipAddresses,
  };
}
