/**
 * The worker under the lifecycle's rules, on both databases, with the in-memory driver:
 * a VM's actions run in the order they were accepted, a deletion cancels what is queued
 * behind it, and a worker whose lease was taken writes nothing more and cleans its host.
 */
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { Worker } from "../../src/engine/worker.js";
import { LoggedDriver } from "../../src/hosts/call-log.js";
import { FakeDriver } from "../../src/hosts/fake/driver.js";
import { CANCELLED_BY_DELETION } from "../../src/lifecycle/index.js";
import { EXAMPLE_CATALOG, startTestApi, withTenants, type TestApi } from "../support/api.js";
import { eventually } from "../support/eventually.js";
import { takeDatabaseAway } from "../support/outages.js";
import { DIALECTS } from "../support/stores.js";

const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");

describe.each(DIALECTS)("queues and leases on %s", (dialect) => {
  let api: TestApi;
  let token: string;
  const workers: Worker[] = [];

  afterEach(async () => {
    for (const w of workers.splice(0)) await w.stop();
    await api?.dispose();
  });

  async function setup() {
    const catalog = structuredClone(EXAMPLE_CATALOG);
    catalog.hosts = ["local", "local-2"].map((name) => ({ ...catalog.hosts[0]!, name, driver: "fake" }));
    api = await startTestApi(dialect, { catalog });
    token = (await withTenants(api)).acmeToken;
  }

  /** A worker on a host; pass the fake of an earlier worker to restart "the same host". */
  function worker(hostName = "local", bootMs = 5, fake = new FakeDriver(hostName)) {
    fake.bootMs = bootMs;
    const driver = new LoggedDriver(fake);
    const w = new Worker({
      db: api.server.store.db,
      driver,
      hostName,
      templatesDir: "/t",
      pollMs: 10,
      leaseSeconds: 3,
    });
    workers.push(w);
    return { worker: w, driver, fake };
  }

  const db = () => api.server.store.db;

  async function buildOne(hostname: string): Promise<{ buildId: string; vmId: string }> {
    const response = await api.call("POST", "/core/v1/organizations/_/virtual_machines/build_from_spec", {
      token,
      body: { organization: { sub_domain: "acme" }, xml: WEB_XML.replace("web-01", hostname) },
    });
    expect(response.statusCode, response.body).toBe(201);
    const buildId = response.json().build.id as string;
    const row = await db()
      .selectFrom("builds")
      .select("virtual_machine_id")
      .where("id", "=", buildId)
      .executeTakeFirstOrThrow();
    return { buildId, vmId: row.virtual_machine_id! };
  }

  const complete = (buildId: string) =>
    eventually(
      async () =>
        (await db().selectFrom("builds").select("state").where("id", "=", buildId).executeTakeFirst())
          ?.state === "complete"
          ? true
          : undefined,
      20_000,
      `build ${buildId} complete`,
    );

  const act = async (vmId: string, action: string) => {
    const response =
      action === "delete"
        ? await api.call("DELETE", `/core/v1/virtual_machines/_?virtual_machine[id]=${vmId}`, { token })
        : await api.call("POST", `/core/v1/virtual_machines/_/${action}?virtual_machine[id]=${vmId}`, {
            token,
          });
    expect(response.statusCode, response.body).toBe(200);
    return (response.json().task?.id ?? null) as string | null;
  };

  const taskRows = (vmId: string) =>
    db().selectFrom("tasks").selectAll().where("object_id", "=", vmId).orderBy("queue_position").execute();

  it("runs a VM's actions one at a time in the order they were accepted; a deletion cancels those queued behind a running one", async () => {
    await setup();
    const { worker: w, driver, fake } = worker();
    await w.start();
    const { buildId, vmId } = await buildOne("ordered");
    await complete(buildId);
    // Queued while the worker is away, so they are all waiting when it comes back.
    await w.stop();
    for (const action of ["stop", "start", "reset", "shutdown", "start", "stop"]) await act(vmId, action);
    const { worker: again, driver: driver2 } = worker("local", 5, fake);
    await again.start();
    await eventually(
      async () => ((await taskRows(vmId)).every((t) => t.status === "completed") ? true : undefined),
      20_000,
    );
    const powerCalls = driver2.log.filter((c) => c.operation !== "waitReady").map((c) => c.operation);
    expect(powerCalls).toEqual(["stop", "start", "reset", "shutdown", "start", "stop"]);
    expect(driver2.overlaps).toEqual([]);
    expect(driver.overlaps).toEqual([]);

    // Now: a start that takes a while runs; a stop and a reset queue behind it; the VM is deleted.
    await again.stop();
    const slow = worker("local", 800, fake);
    await slow.worker.start();
    const running = await act(vmId, "start");
    await eventually(
      async () =>
        (await db().selectFrom("tasks").select("status").where("id", "=", running!).executeTakeFirst())
          ?.status === "running"
          ? true
          : undefined,
      10_000,
    );
    const stop = await act(vmId, "stop");
    const reset = await act(vmId, "reset");
    const deletion = await api.call("DELETE", `/core/v1/virtual_machines/_?virtual_machine[id]=${vmId}`, {
      token,
    });
    expect(deletion.statusCode).toBe(200);
    await eventually(
      async () =>
        (await taskRows(vmId)).every((t) => t.status === "completed" || t.status === "failed")
          ? true
          : undefined,
      20_000,
    );
    const byId = new Map((await taskRows(vmId)).map((t) => [t.id, t]));
    expect(byId.get(running!)!.status).toBe("completed");
    for (const cancelled of [stop!, reset!])
      expect(byId.get(cancelled)).toMatchObject({ status: "failed", error: CANCELLED_BY_DELETION });
    const last = [...byId.values()].at(-1)!;
    expect(last).toMatchObject({ action: "delete", status: "completed" });
    // Deleted: powered off, kept on its host in the trash.
    expect(slow.driver.log.map((c) => c.operation)).toEqual(["start", "waitReady", "stop"]);
    expect(await slow.driver.state(vmId)).toBe("stopped");
    // After the deletion, the VM takes no action.
    const refused = await api.call("POST", `/core/v1/virtual_machines/_/start?virtual_machine[id]=${vmId}`, {
      token,
    });
    expect(refused.json().error.code).toBe("object_in_trash");
    // Purged: destroyed on its host, then not found.
    const purge = await api.call("DELETE", `/core/v1/trash_objects/_?trash_object[object_id]=${vmId}`, {
      token,
    });
    expect(purge.statusCode, purge.body).toBe(200);
    expect(purge.json().task).toMatchObject({ name: "Purge items from trash", status: "pending" });
    await eventually(
      async () =>
        (await taskRows(vmId)).find((t) => t.id === purge.json().task.id)?.status === "completed"
          ? true
          : undefined,
      20_000,
    );
    expect(slow.driver.log.map((c) => c.operation)).toEqual(["start", "waitReady", "stop", "destroy"]);
    expect(await slow.driver.list()).toEqual([]);
    const gone = await api.call("GET", `/core/v1/virtual_machines/_?virtual_machine[id]=${vmId}`, { token });
    expect(gone.json().error.code).toBe("virtual_machine_not_found");
  });

  it("a worker whose lease is taken over mid-build writes nothing more and leaves nothing on its host", async () => {
    await setup();
    const { worker: w, driver } = worker("local", 1500);
    await w.start();
    const { buildId, vmId } = await buildOne("taken");
    // Mid-build: the VM exists on the host and the guest is booting.
    await eventually(
      async () => (driver.log.some((c) => c.operation === "waitReady") ? true : undefined),
      10_000,
    );
    const other = await db()
      .selectFrom("hosts")
      .select("id")
      .where("name", "=", "local-2")
      .executeTakeFirstOrThrow();
    // What another host's worker's claim writes (claimBuild): its lease, its host.
    await db()
      .transaction()
      .execute(async (trx) => {
        await trx
          .updateTable("builds")
          .set((eb) => ({
            lease_owner: "local-2:intruder/claim",
            lease_expires_at: Math.floor(Date.now() / 1000) + 600,
            attempts: eb("attempts", "+", 1),
          }))
          .where("id", "=", buildId)
          .execute();
        await trx.updateTable("virtual_machines").set({ host_id: other.id }).where("id", "=", vmId).execute();
      });
    const snapshot = async () => ({
      build: await db().selectFrom("builds").selectAll().where("id", "=", buildId).executeTakeFirstOrThrow(),
      tasks: await db().selectFrom("tasks").selectAll().orderBy("id").execute(),
      vm: await db()
        .selectFrom("virtual_machines")
        .selectAll()
        .where("id", "=", vmId)
        .executeTakeFirstOrThrow(),
      disks: await db().selectFrom("disks").selectAll().orderBy("id").execute(),
      addresses: await db().selectFrom("ip_addresses").selectAll().orderBy("id").execute(),
    });
    const taken = await snapshot();
    // The job notices (at its heartbeat, or its next write), undoes its work on the host and stops.
    await eventually(
      async () => (driver.log.some((c) => c.operation === "destroy") ? true : undefined),
      10_000,
    );
    await w.stop();
    expect(await snapshot()).toEqual(taken);
    expect(await driver.list()).toEqual([]);
    expect(taken.build.state).toBe("building");
    expect(taken.vm.state).toBe("starting");
  });

  // Where hosts really compete for builds, PostgreSQL, this goes red without the grace
  // after an outage (LeaseHolder.noteOutage); on SQLite the renewal usually wins anyway.
  it("an outage longer than the lease does not hand a build in flight to another host", async () => {
    await setup();
    const a = worker("local", 7000);
    const b = worker("local-2", 5);
    await a.worker.start();
    const { buildId, vmId } = await buildOne("outlasting");
    await eventually(
      async () => (a.driver.log.some((c) => c.operation === "waitReady") ? true : undefined),
      10_000,
    );
    await b.worker.start();
    // Twice the 3 s lease: nobody renews it meanwhile.
    const outage = await takeDatabaseAway(api.store);
    await new Promise((resolve) => setTimeout(resolve, 6000));
    await outage.end();
    await complete(buildId);
    const build = await db()
      .selectFrom("builds")
      .selectAll()
      .where("id", "=", buildId)
      .executeTakeFirstOrThrow();
    expect(build.attempts).toBe(1);
    expect(b.driver.log.filter((c) => c.vmId === vmId)).toEqual([]);
    expect(a.driver.log.filter((c) => c.vmId === vmId).map((c) => c.operation)).toEqual([
      "create",
      "start",
      "waitReady",
    ]);
  });
});
