import type { Kysely } from "kysely";
import { ApiError } from "../../errors.js";
import type { Database, Row } from "../../store/index.js";
import { booleanArgument, lookupArgument, pagination, requireLookup } from "../arguments.js";
import { pageOf } from "../paging.js";
import type { Operation, OperationContext } from "../operation.js";
import * as present from "../presenters.js";
import { checkOwnership, optionalOrganization, resolveOrganization } from "../resolve.js";
import { roleIn } from "../../auth/authenticate.js";

/** Read endpoints of the catalog: where VMs can run and what they can be built from. */

async function dataCentersById(db: Kysely<Database>): Promise<Map<string, Row<"data_centers">>> {
  const rows = await db.selectFrom("data_centers").selectAll().execute();
  return new Map(rows.map((r) => [r.id, r]));
}

async function findDataCenter(context: OperationContext): Promise<Row<"data_centers">> {
  const lookup = requireLookup(
    context.args,
    "data_center",
    ["id", "permalink"] as const,
    context.segments.data_center,
  );
  const dc = await context.services.db
    .selectFrom("data_centers")
    .selectAll()
    .where(lookup.key, "=", lookup.value)
    .executeTakeFirst();
  if (!dc) throw new ApiError("data_center_not_found");
  return dc;
}

/** Templates an organization may use: universal ones and its own. */
function templatesFor(db: Kysely<Database>, organizationId: string, includeUniversal: boolean) {
  return db
    .selectFrom("disk_templates")
    .where((eb) =>
      includeUniversal
        ? eb.or([eb("organization_id", "=", organizationId), eb("universal", "=", 1)])
        : eb("organization_id", "=", organizationId),
    );
}

async function latestVersions(db: Kysely<Database>, templateIds: string[]) {
  if (templateIds.length === 0) return new Map();
  const versions = await db
    .selectFrom("disk_template_versions")
    .selectAll()
    .where("disk_template_id", "in", templateIds)
    .where("stable", "=", 1)
    .orderBy("number", "desc")
    .execute();
  const latest = new Map<string, (typeof versions)[number]>();
  for (const v of versions) if (!latest.has(v.disk_template_id)) latest.set(v.disk_template_id, v);
  return latest;
}

export const catalogOperations: Operation[] = [
  {
    name: "list_organizations",
    method: "GET",
    path: "/organizations",
    scopes: ["organizations:read"],
    access: "read",
    bucket: "read",
    async handle({ services, identity }) {
      let query = services.db.selectFrom("organizations").selectAll().orderBy("created_at").orderBy("id");
      if (identity.access.kind === "organization")
        query = query.where("id", "=", identity.access.organizationId);
      else {
        const userId = identity.access.userId;
        query = query.where(
          "id",
          "in",
          services.db.selectFrom("memberships").select("organization_id").where("user_id", "=", userId),
        );
      }
      return { body: { organizations: (await query.execute()).map(present.organizationSummary) } };
    },
  },
  {
    name: "get_organization",
    method: "GET",
    path: "/organizations/organization",
    scopes: ["organizations:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      return { body: { organization: present.organization(await resolveOrganization(context)) } };
    },
  },
  {
    name: "list_data_centers",
    method: "GET",
    path: "/data_centers",
    scopes: [],
    access: "read",
    bucket: "read",
    async handle({ services }) {
      const rows = await services.db.selectFrom("data_centers").selectAll().orderBy("name").execute();
      return { body: { data_centers: rows.map((dc) => present.dataCenter(dc)) } };
    },
  },
  {
    name: "get_data_center",
    method: "GET",
    path: "/data_centers/data_center",
    scopes: [],
    access: "read",
    bucket: "read",
    async handle(context) {
      return { body: { data_center: present.dataCenter(await findDataCenter(context)) } };
    },
  },
  {
    name: "get_data_center_default_network",
    method: "GET",
    path: "/data_centers/data_center/default_network",
    scopes: [],
    access: "read",
    bucket: "read",
    async handle(context) {
      const dc = await findDataCenter(context);
      const network = await context.services.db
        .selectFrom("networks")
        .selectAll()
        .where("data_center_id", "=", dc.id)
        .orderBy("is_default", "desc")
        .orderBy("created_at")
        .executeTakeFirst();
      if (!network) throw new ApiError("network_not_found");
      return { body: { network: present.network(network, dc, { country: false }) } };
    },
  },
  {
    name: "list_zones",
    method: "GET",
    path: "/zones",
    scopes: [],
    access: "read",
    bucket: "read",
    async handle({ services }) {
      const dcs = await dataCentersById(services.db);
      const rows = await services.db.selectFrom("zones").selectAll().orderBy("name").execute();
      return {
        body: { zones: rows.map((z) => present.zone(z, dcs.get(z.data_center_id)!, { country: false })) },
      };
    },
  },
  {
    name: "get_zone",
    method: "GET",
    path: "/zones/zone",
    scopes: [],
    access: "read",
    bucket: "read",
    async handle({ services, args, segments }) {
      const lookup = requireLookup(args, "zone", ["id", "permalink"] as const, segments.zone);
      const zone = await services.db
        .selectFrom("zones")
        .selectAll()
        .where(lookup.key, "=", lookup.value)
        .executeTakeFirst();
      if (!zone) throw new ApiError("zone_not_found");
      const dc = await services.db
        .selectFrom("data_centers")
        .selectAll()
        .where("id", "=", zone.data_center_id)
        .executeTakeFirstOrThrow();
      return { body: { zone: present.zone(zone, dc) } };
    },
  },
  {
    name: "list_virtual_machine_packages",
    method: "GET",
    path: "/virtual_machine_packages",
    scopes: ["virtual_machine_packages:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const org = await optionalOrganization(context);
      const page = pagination(context.args);
      const base = context.services.db
        .selectFrom("packages")
        .where((eb) =>
          org
            ? eb.or([eb("privacy", "=", "public"), eb("organization_id", "=", org.id)])
            : eb("privacy", "=", "public"),
        );
      const { pagination: p, items } = await pageOf(page, base, (q) =>
        q.selectAll().orderBy("memory_in_gb").orderBy("cpu_cores").orderBy("id"),
      );
      return { body: { pagination: p, virtual_machine_packages: items.map(present.virtualMachinePackage) } };
    },
  },
  {
    name: "get_virtual_machine_package",
    method: "GET",
    path: "/virtual_machine_packages/virtual_machine_package",
    scopes: ["virtual_machine_packages:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const lookup = requireLookup(
        context.args,
        "virtual_machine_package",
        ["id", "permalink"] as const,
        context.segments.virtual_machine_package,
      );
      const pkg = await context.services.db
        .selectFrom("packages")
        .selectAll()
        .where(lookup.key, "=", lookup.value)
        .executeTakeFirst();
      if (!pkg) throw new ApiError("package_not_found");
      if (pkg.privacy === "private") {
        const reachable =
          context.identity.access.kind === "organization"
            ? context.identity.access.organizationId === pkg.organization_id
            : pkg.organization_id !== null &&
              (await context.services.db
                .selectFrom("memberships")
                .select("user_id")
                .where("organization_id", "=", pkg.organization_id)
                .where("user_id", "=", context.identity.access.userId)
                .executeTakeFirst()) !== undefined;
        if (!reachable) throw new ApiError("package_not_found");
      }
      return { body: { virtual_machine_package: present.virtualMachinePackage(pkg) } };
    },
  },
  {
    name: "list_disk_templates",
    method: "GET",
    path: "/organizations/organization/disk_templates",
    scopes: ["disk_templates", "disk_templates:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const org = await resolveOrganization(context);
      const page = pagination(context.args);
      const includeUniversal = booleanArgument(context.args, "include_universal") ?? false;
      const os = lookupArgument(context.args, "operating_system", ["id"] as const);
      let base = templatesFor(context.services.db, org.id, includeUniversal);
      if (os) {
        const names = await context.services.db
          .selectFrom("disk_templates")
          .select("operating_system_name")
          .distinct()
          .execute();
        const name = names
          .map((n) => n.operating_system_name)
          .find((n) => n && present.derivedId("os", n) === os.value);
        if (!name) throw new ApiError("operating_system_not_found");
        base = base.where("operating_system_name", "=", name);
      }
      const { pagination: p, items } = await pageOf(page, base, (q) =>
        q.selectAll().orderBy("name").orderBy("id"),
      );
      const latest = await latestVersions(
        context.services.db,
        items.map((t) => t.id),
      );
      return {
        body: {
          pagination: p,
          disk_templates: items.map((t) => {
            const full = present.diskTemplate(t, latest.get(t.id));
            return {
              ...full,
              latest_version: full.latest_version,
              operating_system: full.operating_system && {
                id: full.operating_system.id,
                name: full.operating_system.name,
              },
            };
          }),
        },
      };
    },
  },
  {
    name: "get_disk_template",
    method: "GET",
    path: "/disk_templates/disk_template",
    scopes: ["disk_templates", "disk_templates:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const template = await findTemplate(context);
      const latest = (await latestVersions(context.services.db, [template.id])).get(template.id);
      const full = present.diskTemplate(template, latest);
      return {
        body: {
          disk_template: { ...full, latest_version: full.latest_version && { id: full.latest_version.id } },
        },
      };
    },
  },
  {
    name: "list_disk_template_versions",
    method: "GET",
    path: "/disk_templates/disk_template/versions",
    scopes: ["disk_templates", "disk_templates:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const template = await findTemplate(context);
      const page = pagination(context.args);
      const base = context.services.db
        .selectFrom("disk_template_versions")
        .where("disk_template_id", "=", template.id);
      const { pagination: p, items } = await pageOf(page, base, (q) =>
        q.selectAll().orderBy("number", "desc"),
      );
      return {
        body: {
          disk_template: { id: template.id, name: template.name, permalink: template.permalink },
          pagination: p,
          disk_template_versions: items.map((v) => ({
            id: v.id,
            number: v.number,
            stable: v.stable === 1,
            size_in_gb: v.size_in_gb,
          })),
        },
      };
    },
  },
  {
    name: "get_disk_template_version",
    method: "GET",
    path: "/disk_template_versions/disk_template_version",
    scopes: ["disk_templates", "disk_templates:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const { version, template } = await findTemplateVersion(context);
      return { body: { disk_template_version: present.diskTemplateVersion(version, template) } };
    },
  },
  {
    name: "get_disk_template_version_spec",
    method: "GET",
    path: "/disk_template_versions/disk_template_version/spec",
    scopes: ["disk_templates", "disk_templates:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const { version, template } = await findTemplateVersion(context);
      return {
        body: {
          disk_template_version: present.diskTemplateVersion(version, template),
          spec: present.diskTemplateVersionSpec(version),
        },
      };
    },
  },
  {
    name: "list_available_networks",
    method: "GET",
    path: "/organizations/organization/available_networks",
    scopes: [],
    access: "read",
    bucket: "read",
    async handle(context) {
      const org = await resolveOrganization(context);
      const dcs = await dataCentersById(context.services.db);
      const networks = await context.services.db.selectFrom("networks").selectAll().orderBy("name").execute();
      const vnets = await context.services.db
        .selectFrom("virtual_networks")
        .selectAll()
        .where("organization_id", "=", org.id)
        .orderBy("name")
        .execute();
      return {
        body: {
          networks: networks.map((n) => present.network(n, dcs.get(n.data_center_id)!, { country: false })),
          virtual_networks: vnets.map((v) =>
            present.virtualNetwork(v, dcs.get(v.data_center_id)!, { country: false }),
          ),
        },
      };
    },
  },
  {
    name: "get_network",
    method: "GET",
    path: "/networks/network",
    scopes: [],
    access: "read",
    bucket: "read",
    async handle({ services, args, segments }) {
      const lookup = requireLookup(args, "network", ["id", "permalink"] as const, segments.network);
      const network = await services.db
        .selectFrom("networks")
        .selectAll()
        .where(lookup.key, "=", lookup.value)
        .executeTakeFirst();
      if (!network) throw new ApiError("network_not_found");
      const dc = await services.db
        .selectFrom("data_centers")
        .selectAll()
        .where("id", "=", network.data_center_id)
        .executeTakeFirstOrThrow();
      return { body: { network: present.network(network, dc) } };
    },
  },
  {
    name: "list_virtual_networks",
    method: "GET",
    path: "/organizations/organization/virtual_networks",
    scopes: ["virtual_networks", "virtual_networks:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const org = await resolveOrganization(context);
      const dcs = await dataCentersById(context.services.db);
      const page = pagination(context.args);
      const base = context.services.db.selectFrom("virtual_networks").where("organization_id", "=", org.id);
      const { pagination: p, items } = await pageOf(page, base, (q) =>
        q.selectAll().orderBy("name").orderBy("id"),
      );
      return {
        body: {
          pagination: p,
          virtual_networks: items.map((v) => present.virtualNetwork(v, dcs.get(v.data_center_id)!)),
        },
      };
    },
  },
  {
    name: "get_virtual_network",
    method: "GET",
    path: "/virtual_networks/virtual_network",
    scopes: ["virtual_networks", "virtual_networks:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const lookup = requireLookup(
        context.args,
        "virtual_network",
        ["id"] as const,
        context.segments.virtual_network,
      );
      const vnet = await context.services.db
        .selectFrom("virtual_networks")
        .selectAll()
        .where("id", "=", lookup.value)
        .executeTakeFirst();
      if (!vnet) throw new ApiError("virtual_network_not_found");
      await checkOwnership(context, vnet.organization_id, "virtual_network_not_found");
      const dc = await context.services.db
        .selectFrom("data_centers")
        .selectAll()
        .where("id", "=", vnet.data_center_id)
        .executeTakeFirstOrThrow();
      return { body: { virtual_network: present.virtualNetwork(vnet, dc) } };
    },
  },
  {
    name: "list_network_speed_profiles",
    method: "GET",
    path: "/organizations/organization/network_speed_profiles",
    scopes: [],
    access: "read",
    bucket: "read",
    async handle(context) {
      await resolveOrganization(context);
      const page = pagination(context.args);
      const base = context.services.db.selectFrom("network_speed_profiles");
      const { pagination: p, items } = await pageOf(page, base, (q) =>
        q.selectAll().orderBy("name").orderBy("id"),
      );
      return { body: { pagination: p, network_speed_profiles: items.map(present.networkSpeedProfile) } };
    },
  },
  {
    name: "list_disk_io_profiles",
    method: "GET",
    path: "/organizations/organization/disk_io_profiles",
    scopes: [],
    access: "read",
    bucket: "read",
    async handle(context) {
      await resolveOrganization(context);
      const page = pagination(context.args);
      const base = context.services.db.selectFrom("disk_io_profiles");
      const { pagination: p, items } = await pageOf(page, base, (q) =>
        q.selectAll().orderBy("name").orderBy("id"),
      );
      return { body: { pagination: p, disk_io_profiles: items.map(present.diskIOProfile) } };
    },
  },
  {
    name: "list_disks",
    method: "GET",
    path: "/organizations/organization/disks",
    scopes: ["disks", "disks:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const org = await resolveOrganization(context);
      const page = pagination(context.args);
      const base = context.services.db
        .selectFrom("disks")
        .where("organization_id", "=", org.id)
        .where("state", "!=", "deleted");
      const { pagination: p, items } = await pageOf(page, base, (q) =>
        q.selectAll().orderBy("created_at").orderBy("id"),
      );
      const vmIds = [
        ...new Set(items.map((d) => d.virtual_machine_id).filter((id): id is string => id !== null)),
      ];
      const vms = new Map(
        vmIds.length > 0
          ? (
              await context.services.db
                .selectFrom("virtual_machines")
                .select(["id", "fqdn"])
                .where("id", "in", vmIds)
                .execute()
            ).map((v) => [v.id, v])
          : [],
      );
      // The schema names this list `disk`.
      return {
        body: {
          pagination: p,
          disk: items.map((d) =>
            present.disk(d, d.virtual_machine_id ? vms.get(d.virtual_machine_id) : undefined),
          ),
        },
      };
    },
  },
  {
    name: "get_current_user",
    method: "GET",
    path: "/users/current",
    scopes: [],
    access: "read",
    bucket: "read",
    async handle({ services, identity }) {
      if (!identity.userId) {
        throw new ApiError("permission_denied", { details: "This credential does not belong to a user" });
      }
      const user = await services.db
        .selectFrom("users")
        .selectAll()
        .where("id", "=", identity.userId)
        .executeTakeFirstOrThrow();
      const organizations = await services.db
        .selectFrom("organizations")
        .select(["id", "name", "sub_domain"])
        .where(
          "id",
          "in",
          services.db.selectFrom("memberships").select("organization_id").where("user_id", "=", user.id),
        )
        .orderBy("created_at")
        .orderBy("id")
        .execute();
      return {
        body: {
          user: {
            id: user.id,
            first_name: user.first_name,
            last_name: user.last_name,
            // Trebuchet stores no avatars.
            avatar_url: null,
            email_address: user.email_address,
            time_zone: null,
            created_at: user.created_at,
            locale: null,
          },
          organizations,
          // The API token the request came with; null for an OAuth2 access token.
          api_token_id: identity.kind === "api_token" ? identity.id : null,
        },
      };
    },
  },
];

async function findTemplate(context: OperationContext) {
  const lookup = requireLookup(
    context.args,
    "disk_template",
    ["id", "permalink"] as const,
    context.segments.disk_template,
  );
  const template = await context.services.db
    .selectFrom("disk_templates")
    .selectAll()
    .where(lookup.key, "=", lookup.value)
    .executeTakeFirst();
  if (!template || !(await templateReachable(context, template.organization_id)))
    throw new ApiError("disk_template_not_found");
  return template;
}

async function findTemplateVersion(context: OperationContext) {
  const lookup = requireLookup(
    context.args,
    "disk_template_version",
    ["id"] as const,
    context.segments.disk_template_version,
  );
  const version = await context.services.db
    .selectFrom("disk_template_versions")
    .selectAll()
    .where("id", "=", lookup.value)
    .executeTakeFirst();
  const template = version
    ? await context.services.db
        .selectFrom("disk_templates")
        .selectAll()
        .where("id", "=", version.disk_template_id)
        .executeTakeFirst()
    : undefined;
  if (!version || !template || !(await templateReachable(context, template.organization_id))) {
    throw new ApiError("disk_template_version_not_found");
  }
  return { version, template };
}

async function templateReachable(context: OperationContext, organizationId: string | null): Promise<boolean> {
  if (organizationId === null) return true;
  return (await roleIn(context.services.db, context.identity, organizationId)) !== undefined;
}
