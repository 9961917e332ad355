import type { Kysely } from "kysely";
import { DEFAULT_AUTH_CACHE_MS, FreshnessCache } from "../auth/freshness-cache.js";
import { prepare, type Database, type Row } from "../store/index.js";

/**
 * The reads nearly every request makes, compiled once per server (see store/prepared.ts).
 * Organizations (their state decides every request) are cached for `cacheMs`; annotations,
 * which never change, for as long as they stay among the most recently read.
 */
export function hotQueries(db: Kysely<Database>, cacheMs = DEFAULT_AUTH_CACHE_MS) {
  const organizations = new FreshnessCache<Row<"organizations">[]>(cacheMs);
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
  const annotationsOf = prepare(
    db,
    (d, type: string, id: string) =>
      d
        .selectFrom("annotations")
        .select(["key", "value"])
        .where("object_type", "=", type)
        .where("object_id", "=", id)
        .orderBy("position"),
    2,
  );
  const annotations = new FreshnessCache<Awaited<ReturnType<typeof annotationsOf>>>(Number.POSITIVE_INFINITY);
  const found = (rows: Row<"organizations">[]) => (rows.length > 0 ? rows : undefined);
  return {
    organizationById: async (id: string) =>
      (await organizations.get(`id:${id}`, async () => found(await byId(id)))) ?? [],
    organizationBySubDomain: async (sub: string) =>
      (await organizations.get(`sub:${sub}`, async () => found(await bySubDomain(sub)))) ?? [],
    // What reads of a task show, and whose it is.
    taskById: prepare(
      db,
      (d, id: string) =>
        d
          .selectFrom("tasks")
          .select([
            "id",
            "organization_id",
            "name",
            "status",
            "progress",
            "error",
            "created_at",
            "started_at",
            "finished_at",
          ])
          .where("id", "=", id),
      1,
    ),
    // What reads of a build show, but for its spec XML, which is read only to render a
    // response again (see rendered-bodies.ts): not the submitted document or the plan.
    buildById: prepare(
      db,
      (d, id: string) =>
        d
          .selectFrom("builds")
          .select([
            "id",
            "organization_id",
            "virtual_machine_id",
            "task_id",
            "state",
            "failure_reason",
            "created_at",
          ])
          .where("id", "=", id),
      1,
    ),
    virtualMachineById: prepare(
      db,
      (d, id: string) => d.selectFrom("virtual_machines").selectAll().where("id", "=", id),
      1,
    ),
    buildSpecXml: prepare(
      db,
      (d, id: string) => d.selectFrom("builds").select("spec_xml").where("id", "=", id),
      1,
    ),
    // Annotations are written with their object, in its transaction, and never change.
    annotations: async (type: string, id: string) =>
      (await annotations.get(`${type}:${id}`, () => annotationsOf(type, id))) ?? [],
  };
}

export type HotQueries = ReturnType<typeof hotQueries>;
