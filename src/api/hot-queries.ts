import type { Kysely } from "kysely";
import { prepare, type Database } from "../store/index.js";

/** The reads nearly every request makes, compiled once per server (see store/prepared.ts). */
export function hotQueries(db: Kysely<Database>) {
  return {
    organizationById: prepare(
      db,
      (d, id: string) => d.selectFrom("organizations").selectAll().where("id", "=", id),
      1,
    ),
    organizationBySubDomain: prepare(
      db,
      (d, sub: string) => d.selectFrom("organizations").selectAll().where("sub_domain", "=", sub),
      1,
    ),
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
