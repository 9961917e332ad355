import type { Kysely } from "kysely";
import { DEFAULT_AUTH_CACHE_MS, FreshnessCache } from "../auth/freshness-cache.js";
import { prepare, type Database, type OrganizationsTable } from "../store/index.js";

/**
 * The reads nearly every request makes, compiled once per server (see store/prepared.ts).
 * Organizations (their state decides every request) are cached for `cacheMs`.
 */
export function hotQueries(db: Kysely<Database>, cacheMs = DEFAULT_AUTH_CACHE_MS) {
  const organizations = new FreshnessCache<OrganizationsTable[]>(cacheMs);
  const byId = prepare(
    db,
    (d, id: string) => d.selectFrom("organizations").selectAll().where("id", "=", id),
    1,
  );
  const bySubDomain = prepare(
    db,
    (d, sub: string) => d.selectFrom("organizations").selectAll().where("sub_domain", "=", sub),
    1,
  );
  const found = (rows: OrganizationsTable[]) => (rows.length > 0 ? rows : undefined);
  return {
    organizationById: async (id: string) =>
      (await organizations.get(`id:${id}`, async () => found(await byId(id)))) ?? [],
    organizationBySubDomain: async (sub: string) =>
      (await organizations.get(`sub:${sub}`, async () => found(await bySubDomain(sub)))) ?? [],
    taskById: prepare(db, (d, id: string) => d.selectFrom("tasks").selectAll().where("id", "=", id), 1),
    buildById: prepare(db, (d, id: string) => d.selectFrom("builds").selectAll().where("id", "=", id), 1),
    virtualMachineById: prepare(
      db,
      (d, id: string) => d.selectFrom("virtual_machines").selectAll().where("id", "=", id),
      1,
    ),
    annotations: prepare(
      db,
      (d, type: string, id: string) =>
        d
          .selectFrom("annotations")
          .select(["key", "value"])
          .where("object_type", "=", type)
          .where("object_id", "=", id)
          .orderBy("position"),
      2,
    ),
  };
}

export type HotQueries = ReturnType<typeof hotQueries>;
