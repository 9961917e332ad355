/** Housekeeping against real databases: expired trash and idempotency keys are purged, nothing else. */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId, purgeExpired } from "../../src/store/index.js";
import { startTestApi, withTenants, type TestApi } from "../support/api.js";
import { DIALECTS } from "../support/stores.js";

const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");
const BUILD = "/core/v1/organizations/_/virtual_machines/build_from_spec";

describe.each(DIALECTS)("housekeeping on %s", (dialect) => {
  let api: TestApi;
  let token: string;
  let acme: string;
  beforeAll(async () => {
    api = await startTestApi(dialect);
    ({ acmeToken: token, acme } = await withTenants(api));
  });
  afterAll(() => api.dispose());

  const build = async (hostname: string, headers: Record<string, string> = {}) => {
    const response = await api.call("POST", BUILD, {
      token,
      headers,
      body: { organization: { sub_domain: "acme" }, xml: WEB_XML.replace("web-01", hostname) },
    });
    expect(response.statusCode, response.body).toBe(201);
    return response.json();
  };

  it("purges trash past keep_until (the VM is then not found) and keeps younger trash", async () => {
    const db = api.server.store.db;
    const now = Math.floor(Date.now() / 1000);
    const vmOf = async (hostname: string) =>
      (
        await db
          .selectFrom("virtual_machines")
          .select("id")
          .where("hostname", "=", hostname)
          .executeTakeFirstOrThrow()
      ).id;
    await build("old-trash");
    await build("new-trash");
    for (const [hostname, keepUntil] of [
      ["old-trash", now - 1],
      ["new-trash", now + 3600],
    ] as const) {
      const id = await vmOf(hostname);
      await db
        .updateTable("virtual_machines")
        .set({ deleted_at: now - 10 })
        .where("id", "=", id)
        .execute();
      await db
        .insertInto("trash_objects")
        .values({
          id: newId("trashObject"),
          object_type: "VirtualMachine",
          object_id: id,
          organization_id: acme,
          keep_until: keepUntil,
          created_at: now - 10,
        })
        .execute();
    }
    const lookup = async (hostname: string) =>
      (await api.call("GET", `/core/v1/virtual_machines/${await vmOf(hostname)}`, { token })).json().error
        .code;
    expect(await lookup("old-trash")).toBe("object_in_trash");

    expect(await purgeExpired(db, now)).toMatchObject({ trashObjects: 1 });
    expect(await lookup("old-trash")).toBe("virtual_machine_not_found");
    expect(await lookup("new-trash")).toBe("object_in_trash");
  });

  it("purges idempotency keys past their expiry and keeps live ones", async () => {
    const db = api.server.store.db;
    await build("idem-live", { "idempotency-key": "live-key" });
    await build("idem-old", { "idempotency-key": "old-key" });
    await db.updateTable("idempotency_keys").set({ expires_at: 1 }).where("key", "=", "old-key").execute();
    expect(await purgeExpired(db, Math.floor(Date.now() / 1000))).toMatchObject({ idempotencyKeys: 1 });
    const left = await db.selectFrom("idempotency_keys").select("key").execute();
    expect(left.map((k) => k.key)).toEqual(["live-key"]);
    // The live key still replays its build.
    const again = await api.call("POST", BUILD, {
      token,
      headers: { "idempotency-key": "live-key" },
      body: { organization: { sub_domain: "acme" }, xml: WEB_XML.replace("web-01", "idem-live") },
    });
    expect(again.statusCode).toBe(201);
    expect(
      await db.selectFrom("virtual_machines").select("id").where("hostname", "=", "idem-live").execute(),
    ).toHaveLength(1);
  });
});
