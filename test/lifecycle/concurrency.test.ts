/**
 * One action at a time per VM, under load, on both databases: three workers (one per
 * host, each running up to four jobs), fifty VMs, and five hundred power actions and
 * deletions fired at random, all at once, through the API. Checked afterwards from the
 * hosts' own logs of driver calls and from the database.
 */
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { Worker } from "../../src/engine/worker.js";
import { LoggedDriver } from "../../src/hosts/call-log.js";
import { FakeDriver } from "../../src/hosts/fake/driver.js";
import { CANCELLED_BY_DELETION, stateOfPower } from "../../src/lifecycle/index.js";
import { EXAMPLE_CATALOG, startTestApi, withTenants, type TestApi } from "../support/api.js";
import { eventually } from "../support/eventually.js";
import { DIALECTS } from "../support/stores.js";

const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");
const HOSTS = ["local", "local-2", "local-3"];
const VMS = 50;
const ACTIONS = 500;
const POWER_ACTIONS = ["start", "stop", "shutdown", "reset"] as const;

/** A small deterministic generator, so a failure can be replayed. */
function random(seed: number) {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

describe.each(DIALECTS)("one action at a time per VM on %s", (dialect) => {
  let api: TestApi;
  const workers: Worker[] = [];

  afterEach(async () => {
    for (const w of workers.splice(0)) await w.stop();
    await api?.dispose();
  });

  it("500 actions at once on 50 VMs: never two at once on a VM, none stuck, records match the hosts", async () => {
    const catalog = structuredClone(EXAMPLE_CATALOG);
    catalog.hosts = HOSTS.map((name) => ({
      ...catalog.hosts[0]!,
      name,
      driver: "fake",
      memory_in_gb: 64,
      disk_in_gb: 1000,
    }));
    api = await startTestApi(dialect, {
      catalog,
      config: { rateLimits: { read: 1_000_000, write: 1_000_000, build: 1_000_000 } },
    });
    const { acmeToken: token } = await withTenants(api);
    const db = api.server.store.db;
    const drivers = new Map<string, LoggedDriver>();
    for (const hostName of HOSTS) {
      const fake = new FakeDriver(hostName);
      fake.bootMs = 5;
      fake.operationMs = 3;
      const driver = new LoggedDriver(fake);
      drivers.set(hostName, driver);
      const worker = new Worker({ db, driver, hostName, templatesDir: "/t", pollMs: 10, leaseSeconds: 5 });
      workers.push(worker);
      await worker.start();
    }

    const built = await Promise.all(
      Array.from({ length: VMS }, async (_, i) => {
        const response = await api.call("POST", "/core/v1/organizations/_/virtual_machines/build_from_spec", {
          token,
          body: { organization: { sub_domain: "acme" }, xml: WEB_XML.replace("web-01", `load-${i}`) },
        });
        expect(response.statusCode, response.body).toBe(201);
        return response.json().build.id as string;
      }),
    );
    await eventually(
      async () => {
        const rows = await db.selectFrom("builds").select("state").where("id", "in", built).execute();
        return rows.every((r) => r.state === "complete") ? true : undefined;
      },
      60_000,
      "every build complete",
    );
    const vmIds = (
      await db.selectFrom("builds").select("virtual_machine_id").where("id", "in", built).execute()
    ).map((r) => r.virtual_machine_id!);

    const next = random(dialect === "sqlite" ? 7 : 11);
    const requests = Array.from({ length: ACTIONS }, () => {
      const vmId = vmIds[Math.floor(next() * vmIds.length)]!;
      const action = next() < 0.04 ? "delete" : POWER_ACTIONS[Math.floor(next() * POWER_ACTIONS.length)]!;
      return { vmId, action };
    });
    const answers = await Promise.all(
      requests.map(({ vmId, action }) =>
        action === "delete"
          ? api.call("DELETE", `/core/v1/virtual_machines/_?virtual_machine[id]=${vmId}`, { token })
          : api.call("POST", `/core/v1/virtual_machines/_/${action}?virtual_machine[id]=${vmId}`, { token }),
      ),
    );
    // Accepted, or refused because the VM was deleted meanwhile: never anything else.
    const outcomes = answers.map((a) =>
      a.statusCode === 200 ? "queued" : `${a.statusCode} ${a.json().error.code}`,
    );
    for (const outcome of outcomes)
      expect(["queued", "406 object_in_trash", "406 task_queueing_error"]).toContain(outcome);
    expect(outcomes.filter((o) => o === "queued").length).toBeGreaterThan(ACTIONS / 2);

    // No task is stuck: every action ends, and nobody holds a lease.
    await eventually(
      async () => {
        const open = await db
          .selectFrom("tasks")
          .select("id")
          .where("action", "is not", null)
          .where("status", "in", ["pending", "running"])
          .execute();
        return open.length === 0 ? true : undefined;
      },
      120_000,
      "every action finished",
    );
    const tasks = await db.selectFrom("tasks").selectAll().where("action", "is not", null).execute();
    expect(tasks.length).toBe(outcomes.filter((o) => o === "queued").length);
    for (const task of tasks) {
      expect(task.lease_owner).toBeNull();
      // The only failures are actions cancelled by their VM's deletion.
      if (task.status === "failed") expect(task.error).toBe(CANCELLED_BY_DELETION);
      else expect(task.status).toBe("completed");
    }

    // No VM ever had two calls in progress at once, on any host.
    for (const driver of drivers.values()) expect(driver.overlaps).toEqual([]);
    const acted = [...drivers.values()].flatMap((d) => d.log.filter((c) => c.operation !== "create"));
    expect(acted.length).toBeGreaterThan(100);

    // Every VM's record matches its host; deleted ones wait in the trash, powered off,
    // still holding their addresses.
    const vms = await db.selectFrom("virtual_machines").selectAll().where("id", "in", vmIds).execute();
    const hostOf = async (vm: (typeof vms)[number]) =>
      drivers.get(
        (await db.selectFrom("hosts").select("name").where("id", "=", vm.host_id!).executeTakeFirstOrThrow())
          .name,
      )!;
    const heldBy = (vmId: string) =>
      db.selectFrom("ip_addresses").select("id").where("allocation_id", "=", vmId).execute();
    const trashed = vms.filter((vm) => vm.deleted_at !== null);
    expect(trashed.length).toBeGreaterThan(0);
    for (const vm of vms) {
      expect({ vm: vm.id, state: vm.state }).toEqual({
        vm: vm.id,
        state: stateOfPower(await (await hostOf(vm)).state(vm.id)),
      });
      if (vm.deleted_at !== null) {
        expect(vm.state).toBe("stopped");
        expect((await heldBy(vm.id)).length).toBeGreaterThan(0);
      }
    }

    // Purging the whole trash leaves nothing of the deleted VMs on their hosts, and gives
    // their addresses back.
    const purge = await api.call("POST", "/core/v1/organizations/_/trash_objects/purge_all", {
      token,
      body: { organization: { sub_domain: "acme" } },
    });
    expect(purge.statusCode, purge.body).toBe(200);
    const purgeTask = purge.json().task.id as string;
    await eventually(
      async () => {
        const task = await db
          .selectFrom("tasks")
          .selectAll()
          .where("id", "=", purgeTask)
          .executeTakeFirstOrThrow();
        return task.status === "completed" ? task : undefined;
      },
      60_000,
      "the trash purged",
    );
    for (const vm of trashed) {
      expect(await (await hostOf(vm)).list()).not.toContain(vm.id);
      expect(await heldBy(vm.id)).toEqual([]);
    }
    const live = new Set(vms.filter((vm) => vm.deleted_at === null).map((vm) => vm.id));
    const onHosts = (await Promise.all([...drivers.values()].map((d) => d.list()))).flat();
    expect(onHosts.sort()).toEqual([...live].sort());
    const leases = await db
      .selectFrom("builds")
      .select("lease_owner")
      .where("lease_owner", "is not", null)
      .execute();
    expect(leases).toEqual([]);
  }, 240_000);
});
