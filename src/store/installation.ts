import type { Kysely } from "kysely";
import type { Database } from "./schema.js";
import { randomAlphanumeric } from "./ids.js";

const INSTALLATION_SETTING = "installation_id";

/**
 * This installation's identity: one per database, made the first time it is asked for.
 * What the host agents create on a machine (network namespace, bridges, taps, VM
 * directories) is marked with it, so that two installations on one machine (a demo and a
 * service, a data directory started afresh) never take each other's for their own.
 */
export async function installationId(db: Kysely<Database>): Promise<string> {
  const read = () =>
    db.selectFrom("settings").select("value").where("key", "=", INSTALLATION_SETTING).executeTakeFirst();
  const row = await read();
  if (row) return row.value;
  await db
    .insertInto("settings")
    .values({
      key: INSTALLATION_SETTING,
      value: `inst_${randomAlphanumeric(16)}`,
      updated_at: Math.floor(Date.now() / 1000),
    })
    .onConflict((oc) => oc.column("key").doNothing())
    .execute();
  // Another process may have made it first: its value is the one.
  return (await read())!.value;
}
