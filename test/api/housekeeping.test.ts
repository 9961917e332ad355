/** Housekeeping against real databases: expired trash and idempotency keys are purged, nothing else. */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { purgeExpiredTrash } from "../../src/lifecycle/index.js";
import { purgeExpired } from "../../src/store/index.js";
import { startTestApi, withTenants, type TestApi } from "../support/api.js";
import { DIALECTS } from "../support/stores.js";

const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");
const BUILD = "/core/v1/organizations/_/virtual_machines/build_from_spec";

describe.each(DIALECTS)("housekeeping on %s", (dialect) => {
  let api: TestApi;
  let token: string;
  beforeAll(async () => {
    api = await startTestApi(dialect);
    ({ acmeToken: token } = await withTenants(api));
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

  it("queues the purge of trash past keep_until, once, and leaves younger trash alone", async () => {
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
    for (const hostname of ["old-trash", "new-trash"]) {
      await build(hostname);
      const id = await vmOf(hostname);
      // Built (no worker here): the VM may be deleted.
      await db
        .updateTable("builds")
        .set({ state: "complete" })
        .where("virtual_machine_id", "=", id)
        .execute();
      await db.updateTable("virtual_machines").set({ state: "stopped" }).where("id", "=", id).execute();
      const deleted = await api.call("DELETE", `/core/v1/virtual_machines/_?virtual_machine[id]=${id}`, {
        token,
      });
      expect(deleted.statusCode, deleted.body).toBe(200);
    }
    const old = await vmOf("old-trash");
    await db
      .updateTable("trash_objects")
      .set({ keep_until: now - 1 })
      .where("object_id", "=", old)
      .execute();
    const purges = (vmId: string) =>
      db
        .selectFrom("tasks")
        .selectAll()
        .where("object_id", "=", vmId)
        .where("action", "=", "purge")
        .execute();

    expect(await purgeExpiredTrash(db, now)).toBe(1);
    expect(await purgeExpiredTrash(db, now)).toBe(0);
    expect(await purges(old)).toMatchObject([{ name: "Purge items from trash", status: "pending" }]);
    expect(await purges(await vmOf("new-trash"))).toEqual([]);
    // Until its purge has run, the VM is still in the trash.
    const lookup = await api.call("GET", `/core/v1/virtual_machines/${old}`, { token });
    expect(lookup.json().error.code).toBe("object_in_trash");
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
