import type { Kysely } from "kysely";
import { newId, type Database, type IdKind } from "../store/index.js";
import type { CatalogFile } from "./catalog-file.js";
import { country } from "./reference-data.js";
import { bumpCatalogVersion } from "./snapshot.js";
import { dnsServersColumn, templateOptionsColumn } from "./columns.js";

export interface ApplyReport {
  created: number;
  updated: number;
  unchanged: number;
}

type Tables = keyof Database;

/**
 * Writes a catalog file into the database in one transaction: each object is found by
 * its natural key (permalink, name, CIDR) and created or updated; IDs never change, so
 * re-applying a file is idempotent. References (zone of a host, organization of a
 * private package) must resolve, or nothing is written.
 */
export async function applyCatalog(
  db: Kysely<Database>,
  catalog: CatalogFile,
  now = Math.floor(Date.now() / 1000),
): Promise<ApplyReport> {
  const report: ApplyReport = { created: 0, updated: 0, unchanged: 0 };
  await db.transaction().execute(async (trx) => {
    const upsert = async <T extends Tables>(
      table: T,
      kind: IdKind,
      match: Record<string, string | number>,
      values: Record<string, unknown>,
    ): Promise<string> => {
      let query = trx.selectFrom(table as Tables).selectAll() as unknown as {
        where: (c: string, o: "=", v: unknown) => typeof query;
        executeTakeFirst: () => Promise<Record<string, unknown> | undefined>;
      };
      for (const [column, value] of Object.entries(match)) query = query.where(column, "=", value);
      const existing = await query.executeTakeFirst();
      if (!existing) {
        const id = newId(kind);
        await (
          trx.insertInto(table) as unknown as { values: (v: unknown) => { execute: () => Promise<unknown> } }
        )
          .values({ id, ...match, ...values, created_at: now })
          .execute();
        report.created++;
        return id;
      }
      const changed = Object.entries(values).some(([k, v]) => existing[k] !== v);
      if (changed) {
        await (
          trx.updateTable(table) as unknown as {
            set: (v: unknown) => {
              where: (c: string, o: "=", v: unknown) => { execute: () => Promise<unknown> };
            };
          }
        )
          .set(values)
          .where("id", "=", existing.id)
          .execute();
        report.updated++;
      } else {
        report.unchanged++;
      }
      return existing.id as string;
    };

    const organization = async (subDomain: string | null, where: string): Promise<string | null> => {
      if (subDomain === null) return null;
      const row = await trx
        .selectFrom("organizations")
        .select("id")
        .where("sub_domain", "=", subDomain)
        .executeTakeFirst();
      if (!row) throw new CatalogError(`${where}: no organization with sub-domain "${subDomain}"`);
      return row.id;
    };
    const flag = (value: boolean) => (value ? 1 : 0) as 0 | 1;

    const dataCenters = new Map<string, string>();
    const zones = new Map<string, { id: string; dataCenterId: string }>();
    for (const dc of catalog.data_centers) {
      const id = await upsert(
        "data_centers",
        "dataCenter",
        { permalink: dc.permalink },
        {
          name: dc.name,
          country_iso_code: dc.country,
          country_name: country(dc.country).name,
        },
      );
      dataCenters.set(dc.permalink, id);
      for (const zone of dc.zones) {
        const zoneId = await upsert(
          "zones",
          "zone",
          { permalink: zone.permalink },
          { name: zone.name, data_center_id: id },
        );
        zones.set(zone.permalink, { id: zoneId, dataCenterId: id });
      }
    }
    const dataCenter = async (permalink: string, where: string) => {
      const known = dataCenters.get(permalink);
      if (known) return known;
      const row = await trx
        .selectFrom("data_centers")
        .select("id")
        .where("permalink", "=", permalink)
        .executeTakeFirst();
      if (!row) throw new CatalogError(`${where}: no data center "${permalink}"`);
      return row.id;
    };

    for (const host of catalog.hosts) {
      const zone =
        zones.get(host.zone) ??
        (await trx
          .selectFrom("zones")
          .select(["id", "data_center_id as dataCenterId"])
          .where("permalink", "=", host.zone)
          .executeTakeFirst());
      if (!zone) throw new CatalogError(`host ${host.name}: no zone "${host.zone}"`);
      await upsert(
        "hosts",
        "host",
        { name: host.name },
        {
          data_center_id: zone.dataCenterId,
          zone_id: zone.id,
          driver: host.driver,
          cpu_cores: host.cpu_cores,
          memory_in_gb: host.memory_in_gb,
          disk_in_gb: host.disk_in_gb,
          namespace: host.namespace,
          state: "active",
        },
      );
    }
    for (const pkg of catalog.packages) {
      const owner = await organization(pkg.organization, `package ${pkg.permalink}`);
      await upsert(
        "packages",
        "package",
        { permalink: pkg.permalink },
        {
          name: pkg.name,
          cpu_cores: pkg.cpu_cores,
          memory_in_gb: pkg.memory_in_gb,
          storage_in_gb: pkg.storage_in_gb,
          ipv4_addresses: pkg.ipv4_addresses,
          monthly_bandwidth_allowance_in_gb: pkg.monthly_bandwidth_allowance_in_gb,
          privacy: owner ? "private" : "public",
          organization_id: owner,
          use_dedicated_cpus: flag(pkg.use_dedicated_cpus),
          group_name: pkg.group,
        },
      );
    }
    for (const profile of catalog.disk_io_profiles) {
      await upsert(
        "disk_io_profiles",
        "diskIOProfile",
        { permalink: profile.permalink },
        {
          name: profile.name,
          speed_in_mb: profile.speed_in_mb,
          iops: profile.iops,
        },
      );
    }
    for (const profile of catalog.network_speed_profiles) {
      await upsert(
        "network_speed_profiles",
        "networkSpeedProfile",
        { permalink: profile.permalink },
        {
          name: profile.name,
          upload_speed_in_mbit: profile.upload_speed_in_mbit,
          download_speed_in_mbit: profile.download_speed_in_mbit,
        },
      );
    }
    for (const template of catalog.disk_templates) {
      const owner = await organization(template.organization, `disk template ${template.permalink}`);
      const id = await upsert(
        "disk_templates",
        "diskTemplate",
        { permalink: template.permalink },
        {
          name: template.name,
          description: template.description,
          universal: flag(owner === null),
          organization_id: owner,
          operating_system_name: template.operating_system,
        },
      );
      for (const version of template.versions) {
        await upsert(
          "disk_template_versions",
          "diskTemplateVersion",
          { disk_template_id: id, number: version.number },
          {
            stable: flag(version.stable),
            size_in_gb: version.size_in_gb,
            image_kind: version.kind,
            image_path: version.image,
            kernel_path: version.kernel,
            initrd_path: version.initrd,
            options_json: templateOptionsColumn.encode(version.options),
          },
        );
      }
    }
    for (const network of catalog.networks) {
      const dcId = await dataCenter(network.data_center, `network ${network.permalink}`);
      const id = await upsert(
        "networks",
        "network",
        { permalink: network.permalink },
        {
          name: network.name,
          data_center_id: dcId,
          is_default: flag(network.default),
          dns_servers_json: dnsServersColumn.encode(network.dns_servers),
        },
      );
      for (const subnet of network.subnets) {
        const existing = await trx
          .selectFrom("subnets")
          .select("network_id")
          .where("cidr", "=", subnet.cidr)
          .executeTakeFirst();
        if (existing && existing.network_id !== id) {
          throw new CatalogError(
            `network ${network.permalink}: subnet ${subnet.cidr} belongs to another network`,
          );
        }
        await upsert(
          "subnets",
          "subnet",
          { cidr: subnet.cidr },
          {
            network_id: id,
            ip_version: subnet.version,
            gateway: subnet.gateway,
            range_start: subnet.range_start,
            range_end: subnet.range_end,
          },
        );
      }
    }
    for (const vnet of catalog.virtual_networks) {
      const owner = (await organization(vnet.organization, `virtual network ${vnet.name}`))!;
      const dcId = await dataCenter(vnet.data_center, `virtual network ${vnet.name}`);
      await upsert(
        "virtual_networks",
        "virtualNetwork",
        { organization_id: owner, name: vnet.name },
        { data_center_id: dcId },
      );
    }
    for (const iso of catalog.isos) {
      const owner = await organization(iso.organization, `ISO ${iso.name}`);
      await upsert(
        "isos",
        "iso",
        { name: iso.name },
        { path: iso.path, operating_system_name: iso.operating_system, organization_id: owner },
      );
    }
    await bumpCatalogVersion(trx);
  });
  return report;
}

export class CatalogError extends Error {}
