/**
 * END TO END, real QEMU (TCG): power actions and a deletion fired at one VM all at once.
 * They run one at a time (checked from the host driver's own log of calls), none is left
 * stuck, the recorded state matches the QEMU process, and the deletion leaves no process
 * and no tap behind.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LoggedDriver } from "../../src/hosts/call-log.js";
import { tapName } from "../../src/hosts/qemu/args.js";
import { CANCELLED_BY_DELETION, stateOfPower } from "../../src/lifecycle/index.js";
import {
  demoTemplate,
  inNamespace,
  qemuProcesses,
  removeNamespace,
  ROOT,
  startE2eServer,
  uniqueNamespace,
  type E2eServer,
} from "../support/e2e.js";
import { until } from "../support/eventually.js";

const WEB_XML = readFileSync(join(ROOT, "examples/web.xml"), "utf8");
const namespace = uniqueNamespace();
let e2e: E2eServer | undefined;
let driver: LoggedDriver;

async function call(method: string, path: string) {
  const response = await e2e!.server.app.inject({
    method: method as "GET",
    url: path,
    headers: { authorization: `Bearer ${e2e!.token}` },
  });
  return { status: response.statusCode, body: response.json() as any };
}

const fire = (vmId: string, action: string) =>
  action === "delete"
    ? call("DELETE", `/core/v1/virtual_machines/_?virtual_machine[id]=${vmId}`)
    : call("POST", `/core/v1/virtual_machines/_/${action}?virtual_machine[id]=${vmId}`);

beforeAll(async () => {
  await demoTemplate();
  e2e = await startE2eServer({
    namespace,
    timeouts: { ready: 300_000, shutdown: 20_000 },
    instrument: (qemu) => (driver = new LoggedDriver(qemu)),
  });
}, 600_000);

afterAll(async () => {
  await (e2e ? e2e.stop() : removeNamespace(namespace));
}, 60_000);

describe("actions fired at one VM at once (real QEMU)", () => {
  it("run one at a time, end in a state that matches QEMU, and a deletion leaves nothing", async () => {
    const db = e2e!.server.store.db;
    const built = await e2e!.server.app.inject({
      method: "POST",
      url: "/core/v1/organizations/_/virtual_machines/build_from_spec",
      headers: { authorization: `Bearer ${e2e!.token}`, "content-type": "application/json" },
      payload: JSON.stringify({
        organization: { sub_domain: "acme" },
        xml: WEB_XML.replace("web-01", "busy"),
      }),
    });
    expect(built.statusCode, built.body).toBe(201);
    const buildId = built.json().build.id as string;
    const build = await until(`build ${buildId}`, async () => {
      const row = await db
        .selectFrom("builds")
        .selectAll()
        .where("id", "=", buildId)
        .executeTakeFirstOrThrow();
      return row.state === "complete" || row.state === "failed" ? row : undefined;
    });
    expect(build.state).toBe("complete");
    const vmId = build.virtual_machine_id!;
    const openTasks = async () =>
      (
        await db
          .selectFrom("tasks")
          .select("id")
          .where("object_id", "=", vmId)
          .where("status", "in", ["pending", "running"])
          .execute()
      ).length;

    // Round 1: every power action twice, all at once.
    const round1 = await Promise.all(
      ["stop", "start", "reset", "shutdown", "start", "stop", "reset", "start"].map((a) => fire(vmId, a)),
    );
    expect(round1.map((r) => r.status)).toEqual(round1.map(() => 200));
    await until("round 1 finished", async () => ((await openTasks()) === 0 ? true : undefined));
    const vm = await db
      .selectFrom("virtual_machines")
      .selectAll()
      .where("id", "=", vmId)
      .executeTakeFirstOrThrow();
    const power = await driver.state(vmId);
    expect(vm.state).toBe(stateOfPower(power));
    expect(qemuProcesses(vmId).length > 0).toBe(power === "running");
    const failed = await db
      .selectFrom("tasks")
      .selectAll()
      .where("object_id", "=", vmId)
      .where("status", "=", "failed")
      .execute();
    expect(failed).toEqual([]);

    // Round 2: power actions and the deletion, all at once.
    const nics = await db
      .selectFrom("network_interfaces")
      .select("id")
      .where("virtual_machine_id", "=", vmId)
      .execute();
    for (const nic of nics)
      expect((await inNamespace(namespace, "ip", ["link", "show", tapName(nic.id)])).code).toBe(0);
    const round2 = await Promise.all(
      ["start", "stop", "reset", "shutdown", "delete"].map((a) => fire(vmId, a)),
    );
    for (const answer of round2) expect([200, 406]).toContain(answer.status); // 406 object_in_trash: the deletion was accepted first
    expect(round2.at(-1)!.status).toBe(200);
    await until("round 2 finished", async () => ((await openTasks()) === 0 ? true : undefined));

    const tasks = await db.selectFrom("tasks").selectAll().where("object_id", "=", vmId).execute();
    for (const task of tasks) {
      expect(task.lease_owner).toBeNull();
      if (task.status === "failed") expect(task.error).toBe(CANCELLED_BY_DELETION);
      else expect(task.status).toBe("completed");
    }
    // In the trash: powered off, still on its host.
    expect(qemuProcesses(vmId)).toEqual([]);
    expect(await driver.list()).toContain(vmId);
    // Purged (asked twice at once: one purge), then nothing is left of it.
    const purges = await Promise.all(
      [1, 2].map(() => call("DELETE", `/core/v1/trash_objects/_?trash_object[object_id]=${vmId}`)),
    );
    expect(purges.map((p) => p.status)).toEqual([200, 200]);
    expect(new Set(purges.map((p) => p.body.task.id)).size).toBe(1);
    await until("the purge", async () => ((await openTasks()) === 0 ? true : undefined));
    // One call at a time on the VM, all along, as the driver saw them.
    expect(driver.overlaps).toEqual([]);
    expect(driver.log.filter((c) => c.vmId === vmId && c.operation === "destroy").length).toBe(1);
    // The purge left nothing: no process, no tap, no trace on the host, no address held.
    expect(qemuProcesses(vmId)).toEqual([]);
    for (const nic of nics) {
      const shown = await inNamespace(namespace, "ip", ["link", "show", tapName(nic.id)]);
      expect(shown.code).not.toBe(0);
      expect(shown.stderr).toMatch(/does not exist/);
    }
    expect(await driver.list()).not.toContain(vmId);
    expect(
      await db.selectFrom("ip_addresses").select("id").where("allocation_id", "=", vmId).execute(),
    ).toEqual([]);
  }, 900_000);
});
