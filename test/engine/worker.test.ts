/** The build engine against real databases, with the fake host driver (the QEMU driver has its own e2e tests). */
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { Worker } from "../../src/engine/worker.js";
import { EXAMPLE_CATALOG, startTestApi, withTenants, type TestApi } from "../support/api.js";
import { FakeDriver } from "../../src/hosts/fake/driver.js";
import { DIALECTS } from "../support/stores.js";

const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");
const BUILD = "/core/v1/organizations/_/virtual_machines/build_from_spec";

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.each(DIALECTS)("the worker on %s", (dialect) => {
  let api: TestApi;
  let token: string;
  const workers: Worker[] = [];

  async function setup(hosts = 1) {
    const catalog = structuredClone(EXAMPLE_CATALOG);
    for (let i = 2; i <= hosts; i++) catalog.hosts.push({ ...catalog.hosts[0]!, name: `local-${i}` });
    api = await startTestApi(dialect, {
      catalog,
      config: { rateLimits: { read: 100_000, write: 100_000, build: 100_000 } },
    });
    token = (await withTenants(api)).acmeToken;
  }

  function worker(
    hostName = "local",
    driver = new FakeDriver(hostName),
    options: Partial<ConstructorParameters<typeof Worker>[0]> = {},
  ) {
    const w = new Worker({
      db: api.server.store.db,
      driver,
      hostName,
      templatesDir: "/templates",
      pollMs: 10,
      leaseSeconds: 2,
      ...options,
    });
    workers.push(w);
    return { worker: w, driver };
  }

  async function build(hostname: string, xml = WEB_XML) {
    const response = await api.call("POST", BUILD, {
      token,
      body: { organization: { sub_domain: "acme" }, xml: xml.replace("web-01", hostname) },
    });
    expect(response.statusCode, response.body).toBe(201);
    return response.json() as { virtual_machine_build: { id: string }; task: { id: string } };
  }

  const buildRow = (id: string) =>
    api.server.store.db.selectFrom("builds").selectAll().where("id", "=", id).executeTakeFirstOrThrow();
  const finished = (id: string) =>
    until(async () => {
      const row = await buildRow(id);
      return row.state === "complete" || row.state === "failed" ? row : undefined;
    });

  afterEach(async () => {
    for (const w of workers.splice(0)) await w.stop();
    await api?.dispose();
  });

  it("takes a build from pending to complete, and its task from pending to completed", async () => {
    await setup();
    const { worker: w, driver } = worker();
    const accepted = await build("one");
    await w.start();
    const done = await finished(accepted.virtual_machine_build.id);
    expect(done).toMatchObject({ state: "complete", failure_reason: null, attempts: 1, lease_owner: null });
    const task = await api.server.store.db
      .selectFrom("tasks")
      .selectAll()
      .where("id", "=", accepted.task.id)
      .executeTakeFirstOrThrow();
    expect(task).toMatchObject({ status: "completed", progress: 100 });
    expect(task.started_at).not.toBeNull();
    expect(task.finished_at).not.toBeNull();
    const vm = await api.server.store.db
      .selectFrom("virtual_machines")
      .selectAll()
      .where("id", "=", done.virtual_machine_id!)
      .executeTakeFirstOrThrow();
    expect(vm.state).toBe("started");
    expect(driver.calls).toEqual([`create ${vm.id}`, `start ${vm.id}`]);
    const definition = driver.vms.get(vm.id)!.definition;
    expect(definition.interfaces.map((i) => i.addresses.map((a) => `${a.address}/${a.prefix}`))).toEqual([
      ["192.0.2.10/24", "2001:db8:100::10/64"],
      ["198.51.100.10/24"],
    ]);
    expect(definition.authorizedKeys).toHaveLength(1);
    expect(definition.options).toEqual([
      { key: "motd", value: "Built by Trebuchet" },
      { key: "fail_boot", value: "false" },
      { key: "install_agent", value: "false" },
    ]);
  });

  it("fails a build the host cannot make, says why, and gives back what it held", async () => {
    await setup();
    const { worker: w, driver } = worker();
    driver.failNext.create = "disk image unreadable";
    const accepted = await build("broken");
    await w.start();
    const done = await finished(accepted.virtual_machine_build.id);
    expect(done).toMatchObject({ state: "failed", failure_reason: "disk image unreadable" });
    const db = api.server.store.db;
    expect(await db.selectFrom("ip_addresses").select("id").execute()).toEqual([]);
    const vm = await db
      .selectFrom("virtual_machines")
      .selectAll()
      .where("id", "=", done.virtual_machine_id!)
      .executeTakeFirstOrThrow();
    expect(vm.state).toBe("failed");
    expect(vm.deleted_at).not.toBeNull();
    expect(
      (await db.selectFrom("disks").select("state").where("virtual_machine_id", "=", vm.id).execute()).map(
        (d) => d.state,
      ),
    ).toEqual(["deleted", "deleted"]);
    expect(driver.calls).toContain(`destroy ${vm.id}`);
    // The hostname is free again.
    expect(
      (
        await api.call("POST", BUILD, {
          token,
          body: { organization: { sub_domain: "acme" }, xml: WEB_XML.replace("web-01", "broken") },
        })
      ).statusCode,
    ).toBe(201);
  });

  it("runs every build exactly once with several workers on several hosts", async () => {
    await setup(3);
    const accepted = [];
    for (let i = 0; i < 9; i++) accepted.push(await build(`many-${i}`));
    const fleet = [worker("local"), worker("local-2"), worker("local-3")];
    await Promise.all(fleet.map((f) => f.worker.start()));
    const done = await Promise.all(accepted.map((a) => finished(a.virtual_machine_build.id)));
    expect(done.every((b) => b.state === "complete" && b.attempts === 1)).toBe(true);
    const creates = fleet.flatMap((f) => f.driver.calls.filter((c) => c.startsWith("create")));
    expect(creates).toHaveLength(9);
    expect(new Set(creates).size).toBe(9);
  });

  it("takes over a build whose worker died (expired lease), clears the host and builds it again", async () => {
    await setup();
    const accepted = await build("orphan");
    const db = api.server.store.db;
    const past = Math.floor(Date.now() / 1000) - 5;
    await db
      .updateTable("builds")
      .set({ state: "building", lease_owner: "elsewhere:dead", lease_expires_at: past, attempts: 1 })
      .where("id", "=", accepted.virtual_machine_build.id)
      .execute();
    const { worker: w, driver } = worker();
    await w.start();
    const done = await finished(accepted.virtual_machine_build.id);
    expect(done).toMatchObject({ state: "complete", attempts: 2 });
    expect(driver.calls[0]).toBe(`destroy ${done.virtual_machine_id}`);
  });

  it("gives up on a build after its attempts are spent", async () => {
    await setup();
    const accepted = await build("cursed");
    await api.server.store.db
      .updateTable("builds")
      .set({
        state: "building",
        lease_owner: "local:previous",
        lease_expires_at: Math.floor(Date.now() / 1000) + 600,
        attempts: 3,
      })
      .where("id", "=", accepted.virtual_machine_build.id)
      .execute();
    const { worker: w } = worker();
    await w.start();
    const done = await finished(accepted.virtual_machine_build.id);
    expect(done.state).toBe("failed");
    expect(done.failure_reason).toMatch(/gave up after 3 attempts/);
  });

  it("carries out power actions and deletion as tasks, moving the VM through its states", async () => {
    await setup();
    const { worker: w, driver } = worker();
    await w.start();
    const accepted = await build("power");
    const done = await finished(accepted.virtual_machine_build.id);
    const vmId = done.virtual_machine_id!;
    const state = async () =>
      (
        await api.server.store.db
          .selectFrom("virtual_machines")
          .select("state")
          .where("id", "=", vmId)
          .executeTakeFirstOrThrow()
      ).state;
    const act = async (action: string) => {
      const response = await api.call(
        "POST",
        `/core/v1/virtual_machines/_/${action}?virtual_machine[id]=${vmId}`,
        { token },
      );
      expect(response.statusCode, response.body).toBe(200);
      const taskId = response.json().task.id;
      return until(async () => {
        const task = await api.server.store.db
          .selectFrom("tasks")
          .selectAll()
          .where("id", "=", taskId)
          .executeTakeFirstOrThrow();
        return task.status === "completed" || task.status === "failed" ? task : undefined;
      });
    };
    expect((await act("stop")).status).toBe("completed");
    expect(await state()).toBe("stopped");
    // A reset of a stopped VM no longer makes sense when its turn comes: it completes, doing nothing.
    const callsBefore = driver.calls.length;
    const noop = await act("reset");
    expect(noop.status).toBe("completed");
    expect(noop.error).toBeNull();
    expect(driver.calls.slice(callsBefore)).toEqual([]);
    expect(await state()).toBe("stopped");
    expect((await act("start")).status).toBe("completed");
    expect(await state()).toBe("started");
    expect((await act("reset")).status).toBe("completed");
    expect(driver.vms.get(vmId)!.boots).toBe(3);
    // And a start of a started VM, likewise.
    const startsBefore = driver.calls.filter((c) => c.startsWith("start")).length;
    expect((await act("start")).status).toBe("completed");
    expect(driver.calls.filter((c) => c.startsWith("start")).length).toBe(startsBefore);
    expect((await act("shutdown")).status).toBe("completed");
    expect(await state()).toBe("stopped");
    const deleted = await api.call("DELETE", `/core/v1/virtual_machines/_?virtual_machine[id]=${vmId}`, {
      token,
    });
    expect(deleted.statusCode).toBe(200);
    const deletion = await until(async () => {
      const task = await api.server.store.db
        .selectFrom("tasks")
        .selectAll()
        .where("object_id", "=", vmId)
        .where("action", "=", "delete")
        .executeTakeFirstOrThrow();
      return task.status === "completed" ? task : undefined;
    });
    expect(deletion.name).toBe("Delete virtual machine");
    // In the trash: still on its host, powered off, its addresses held.
    expect(await driver.state(vmId)).toBe("stopped");
    const held = await api.server.store.db.selectFrom("ip_addresses").select("id").execute();
    expect(held.length).toBeGreaterThan(0);
    const purge = await api.call("DELETE", `/core/v1/trash_objects/_?trash_object[object_id]=${vmId}`, {
      token,
    });
    expect(purge.statusCode, purge.body).toBe(200);
    await until(async () => (driver.vms.has(vmId) ? undefined : true));
    await until(async () =>
      (await api.server.store.db.selectFrom("ip_addresses").select("id").execute()).length === 0
        ? true
        : undefined,
    );
  });

  it("builds a standalone disk on a host, gives it to a VM there, and purges it from the trash", async () => {
    await setup();
    const { worker: w, driver } = worker();
    await w.start();
    const db = api.server.store.db;
    const vm = (await finished((await build("disky")).virtual_machine_build.id)).virtual_machine_id!;
    const call = async (method: string, path: string, body: Record<string, unknown>) => {
      const response = await api.call(method, `/core/v1${path}`, { token, body });
      expect(response.statusCode, `${method} ${path}: ${response.body}`).toBeLessThan(300);
      return response.json();
    };
    const taskDone = (id: string) =>
      until(async () => {
        const task = await db.selectFrom("tasks").selectAll().where("id", "=", id).executeTakeFirstOrThrow();
        return task.status === "completed" || task.status === "failed" ? task : undefined;
      });
    const created = await call("POST", "/organizations/_/disks", {
      organization: { sub_domain: "acme" },
      properties: { name: "data", size_in_gb: 7, data_center: { permalink: "lab-1" } },
    });
    expect(created.task).toMatchObject({ name: "Build disk", status: "pending" });
    expect((await taskDone(created.task.id)).status).toBe("completed");
    const diskId = created.disk.id as string;
    expect(driver.disks.get(diskId)).toBe(7);
    const read = await call("GET", `/disks/_?disk[id]=${diskId}`, {});
    expect(read.disk.state).toBe("built");

    // Assigned: the VM has it, detached, outside its machine.
    await call("POST", "/disks/_/assign", { disk: { id: diskId }, virtual_machine: { id: vm } });
    const definitionDisks = () => driver.vms.get(vm)!.definition.disks.map((d) => d.id);
    const attached = await call("POST", "/disks/_/attach", { disk: { id: diskId } });
    expect(attached.disk.virtual_machine_disk).toMatchObject({
      state: "attached",
      virtual_machine: { id: vm },
    });
    expect((await taskDone(attached.task.id)).status).toBe("completed");
    // The host got the VM's new definition: the disk by the path its build made.
    expect(definitionDisks()).toContain(diskId);
    expect(driver.vms.get(vm)!.definition.disks.find((d) => d.id === diskId)).toMatchObject({
      existingPath: `fake://local/disks/${diskId}`,
      system: false,
    });
    const listed = await call("GET", `/virtual_machines/_/disks?virtual_machine[id]=${vm}`, {});
    expect(listed.disks.map((d: { disk: { id: string } }) => d.disk.id)).toContain(diskId);
    const stillAttached = await api.call("POST", "/core/v1/disks/_/unassign", {
      token,
      body: { disk: { id: diskId } },
    });
    expect(stillAttached.json().error.code).toBe("unable_to_unassign");
    // Detached from the running VM: its host lets go of the disk at once.
    const detached = await call("POST", "/disks/_/detach", { disk: { id: diskId } });
    expect(await taskDone(detached.task.id)).toMatchObject({
      status: "completed",
      name: "Apply configuration to virtual machine (disks changed live)",
    });
    expect(definitionDisks()).not.toContain(diskId);
    await call("POST", "/disks/_/unassign", { disk: { id: diskId } });

    // Shrunk, offline only; a shrink the host refuses leaves the disk its size.
    const online = await api.call("PUT", "/core/v1/disks/_/resize", {
      token,
      body: { disk: { id: diskId }, size_in_gb: 3 },
    });
    expect([online.statusCode, online.json().error.code]).toEqual([422, "validation_error"]);
    driver.failNext.shrinkDisk = "the disk holds data beyond 3 GB";
    const refused = await call("PUT", "/disks/_/resize", {
      disk: { id: diskId },
      size_in_gb: 3,
      resize_method: "offline",
    });
    expect(refused.disk.size_in_gb).toBe(3);
    expect(await taskDone(refused.task.id)).toMatchObject({ status: "failed", name: "Shrink disk" });
    expect((await call("GET", `/disks/_?disk[id]=${diskId}`, {})).disk.size_in_gb).toBe(7);
    const shrunk = await call("PUT", "/disks/_/resize", {
      disk: { id: diskId },
      size_in_gb: 3,
      resize_method: "offline",
    });
    expect(await taskDone(shrunk.task.id)).toMatchObject({ status: "completed", name: "Shrink disk" });
    expect(driver.disks.get(diskId)).toBe(3);
    expect((await call("GET", `/disks/_?disk[id]=${diskId}`, {})).disk.size_in_gb).toBe(3);

    // Deleted to the trash, then purged: its file is gone from the host.
    const deleted = await call("DELETE", "/disks/_", { disk: { id: diskId } });
    expect(deleted.trash_object).toMatchObject({ object_id: diskId, object_type: "Disk" });
    expect(driver.disks.has(diskId)).toBe(true);
    const purge = await call("DELETE", "/trash_objects/_", { trash_object: { id: deleted.trash_object.id } });
    expect((await taskDone(purge.task.id)).status).toBe("completed");
    expect(driver.disks.has(diskId)).toBe(false);
    const gone = await api.call("GET", `/core/v1/disks/_?disk[id]=${diskId}`, { token });
    expect(gone.json().error.code).toBe("disk_not_found");
  });

  it("builds a disk made for a VM on the VM's host and gives it to the VM once built: attached, or only assigned", async () => {
    await setup(2);
    const db = api.server.store.db;
    // The first host has room for a small disk, not for a VM: the VM goes to local-2.
    await db.updateTable("hosts").set({ disk_in_gb: 3 }).where("name", "=", "local").execute();
    const { worker: w, driver } = worker("local-2");
    await w.start();
    const vm = (await finished((await build("for-disks")).virtual_machine_build.id)).virtual_machine_id!;
    const vmRow = await db
      .selectFrom("virtual_machines")
      .selectAll()
      .where("id", "=", vm)
      .executeTakeFirstOrThrow();
    const create = (virtualMachineDisk: Record<string, unknown>, t = token) =>
      api.call("POST", "/core/v1/organizations/_/disks", {
        token: t,
        body: {
          organization: { sub_domain: t === token ? "acme" : "globex" },
          properties: {
            name: "for-vm",
            size_in_gb: 2,
            data_center: { permalink: "lab-1" },
            virtual_machine_disk: virtualMachineDisk,
          },
        },
      });
    const taskDone = (id: string) =>
      until(async () => {
        const task = await db.selectFrom("tasks").selectAll().where("id", "=", id).executeTakeFirstOrThrow();
        return task.status === "completed" || task.status === "failed" ? task : undefined;
      });

    const attached = await create({ virtual_machine: { id: vm }, attach: true });
    expect(attached.statusCode, attached.body).toBe(201);
    const attachedId = attached.json().disk.id as string;
    const row = await db
      .selectFrom("disks")
      .selectAll()
      .where("id", "=", attachedId)
      .executeTakeFirstOrThrow();
    // Built on the VM's host, though the data center's first host has room for it.
    const hostOf = (id: string | null) =>
      db.selectFrom("hosts").select("name").where("id", "=", id!).executeTakeFirstOrThrow();
    expect((await hostOf(vmRow.host_id)).name).toBe("local-2");
    expect((await hostOf(row.host_id)).name).toBe("local-2");
    expect(row.virtual_machine_id).toBeNull();
    expect((await taskDone(attached.json().task.id)).status).toBe("completed");
    const read = (id: string) =>
      api.call("GET", `/core/v1/disks/_?disk[id]=${id}`, { token }).then((r) => r.json());
    expect((await read(attachedId)).disk.virtual_machine_disk).toMatchObject({
      state: "attached",
      virtual_machine: { id: vm },
    });
    // Its VM's reconfiguration puts it in the machine.
    await until(async () =>
      driver.vms.get(vm)!.definition.disks.some((d) => d.id === attachedId) ? true : undefined,
    );

    const assigned = await create({ virtual_machine: { fqdn: vmRow.fqdn } });
    expect(assigned.statusCode, assigned.body).toBe(201);
    expect((await taskDone(assigned.json().task.id)).status).toBe("completed");
    expect((await read(assigned.json().disk.id)).disk.virtual_machine_disk).toMatchObject({
      state: "detached",
      virtual_machine: { id: vm },
    });
    expect(driver.vms.get(vm)!.definition.disks.map((d) => d.id)).not.toContain(assigned.json().disk.id);

    // Another organization's VM is not found; a new disk is no boot disk.
    const stranger = await create({ virtual_machine: { id: vm }, attach: true }, await api.token("globex"));
    expect([stranger.statusCode, stranger.json().error.code]).toEqual([404, "virtual_machine_not_found"]);
    const boot = await create({ virtual_machine: { id: vm }, boot: true });
    expect([boot.statusCode, boot.json().error.code]).toEqual([422, "validation_error"]);
  });

  it("a purge gives back the addresses made for the VM and leaves the organization's own with it", async () => {
    await setup();
    const { worker: w } = worker();
    await w.start();
    const db = api.server.store.db;
    const vm = (await finished((await build("addressed")).virtual_machine_build.id)).virtual_machine_id!;
    const network = await db
      .selectFrom("networks")
      .select("id")
      .where("permalink", "=", "lab-1-public")
      .executeTakeFirstOrThrow();
    const owned = await api.call("POST", "/core/v1/organizations/_/ip_addresses", {
      token,
      body: {
        organization: { sub_domain: "acme" },
        network: { id: network.id },
        version: "ipv4",
        label: "kept",
      },
    });
    const ownedId = owned.json().ip_address.id as string;
    const allocated = await api.call("POST", "/core/v1/virtual_machines/_/allocate_ip", {
      token,
      body: { virtual_machine: { id: vm }, ip_address: { id: ownedId } },
    });
    expect(allocated.statusCode, allocated.body).toBe(200);
    const madeForIt = (
      await db
        .selectFrom("ip_addresses")
        .select("id")
        .where("allocation_id", "=", vm)
        .where("id", "!=", ownedId)
        .execute()
    ).map((r) => r.id);
    expect(madeForIt.length).toBeGreaterThan(0);
    const deleted = await api.call("DELETE", `/core/v1/virtual_machines/_?virtual_machine[id]=${vm}`, {
      token,
    });
    const purge = await api.call(
      "DELETE",
      `/core/v1/trash_objects/_?trash_object[id]=${deleted.json().trash_object.id}`,
      {
        token,
      },
    );
    const purgeId = purge.json().task.id as string;
    await until(async () => {
      const task = await db
        .selectFrom("tasks")
        .select("status")
        .where("id", "=", purgeId)
        .executeTakeFirstOrThrow();
      return task.status === "completed" ? true : undefined;
    });
    const after = await db.selectFrom("ip_addresses").selectAll().execute();
    expect(after.map((r) => r.id)).toEqual([ownedId]);
    expect(after[0]).toMatchObject({ allocation_id: null, network_interface_id: null, label: "kept" });
  });

  it("a change made while the VM is being built reaches its host once the build is over", async () => {
    await setup();
    const driver = new FakeDriver("local");
    driver.bootMs = 600;
    const { worker: w } = worker("local", driver);
    await w.start();
    const db = api.server.store.db;
    const accepted = await build("renamed-early");
    const vm = (await buildRow(accepted.virtual_machine_build.id)).virtual_machine_id!;
    // The host has read the definition and is booting the guest.
    await until(async () => (driver.vms.get(vm)?.running ? true : undefined));
    const patched = await api.call("PATCH", "/core/v1/virtual_machines/_", {
      token,
      body: { virtual_machine: { id: vm }, properties: { hostname: "renamed-late" } },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect((await finished(accepted.virtual_machine_build.id)).state).toBe("complete");
    // The reconfiguration ran after the build (its host got the new hostname) and completed.
    const task = await until(async () => {
      const row = await db
        .selectFrom("tasks")
        .selectAll()
        .where("object_id", "=", vm)
        .where("action", "=", "reconfigure")
        .executeTakeFirstOrThrow();
      return row.status === "completed" || row.status === "failed" ? row : undefined;
    });
    expect(task.status).toBe("completed");
    // Its addresses did not change: the task's name says nothing of them.
    expect(task.name).toBe("Apply configuration to virtual machine");
    expect(driver.vms.get(vm)!.definition.hostname).toBe("renamed-late");
  });

  it("an interface added, attached and sped up, and a disk's IO profile, reach the host's definition", async () => {
    await setup();
    const driver = new FakeDriver("local");
    const { worker: w } = worker("local", driver);
    await w.start();
    const db = api.server.store.db;
    const vm = (await finished((await build("nic-flow")).virtual_machine_build.id)).virtual_machine_id!;
    const network = await db
      .selectFrom("networks")
      .select("id")
      .where("permalink", "=", "lab-1-public")
      .executeTakeFirstOrThrow();
    const added = await api.call("POST", "/core/v1/virtual_machines/_/network_interfaces", {
      token,
      body: {
        virtual_machine: { id: vm },
        network: { id: network.id },
        speed_profile: { permalink: "10mbps" },
      },
    });
    expect(added.statusCode, added.body).toBe(200);
    const nic = added.json().virtual_machine_network_interface.id as string;
    const completed = (taskId: string) =>
      until(async () => {
        const row = await db
          .selectFrom("tasks")
          .selectAll()
          .where("id", "=", taskId)
          .executeTakeFirstOrThrow();
        return row.status === "completed" || row.status === "failed" ? row : undefined;
      });
    // Detached, it is not in the machine.
    expect(driver.vms.get(vm)!.definition.interfaces.map((i) => i.id)).not.toContain(nic);
    const attached = await api.call("POST", "/core/v1/virtual_machine_network_interfaces/_/attach", {
      token,
      body: { virtual_machine_network_interface: { id: nic } },
    });
    expect((await completed(attached.json().task.id)).status).toBe("completed");
    const inMachine = () => driver.vms.get(vm)!.definition.interfaces.find((i) => i.id === nic);
    expect(inMachine()?.speed).toEqual({ downloadMbit: 10, uploadMbit: 10 });
    const sped = await api.call(
      "PATCH",
      "/core/v1/virtual_machine_network_interfaces/_/update_speed_profile",
      {
        token,
        body: { virtual_machine_network_interface: { id: nic }, speed_profile: { permalink: "1mbps" } },
      },
    );
    expect((await completed(sped.json().task.id)).status).toBe("completed");
    expect(inMachine()?.speed).toEqual({ downloadMbit: 1, uploadMbit: 1 });
    // A new address reaches the running (fake) guest at once; the task's name says so.
    const allocated = await api.call(
      "POST",
      "/core/v1/virtual_machine_network_interfaces/_/allocate_new_ip",
      {
        token,
        body: { virtual_machine_network_interface: { id: nic }, address_version: "ipv4" },
      },
    );
    expect(allocated.statusCode, allocated.body).toBe(200);
    const reconfiguration = await until(async () => {
      const row = await db
        .selectFrom("tasks")
        .selectAll()
        .where("object_id", "=", vm)
        .where("action", "=", "reconfigure")
        .orderBy("queue_position", "desc")
        .executeTakeFirstOrThrow();
      return row.status === "completed" ? row : undefined;
    });
    expect(reconfiguration.name).toBe("Apply configuration to virtual machine (addresses applied live)");
    expect(inMachine()?.addresses.map((a) => a.address)).toContain(allocated.json().ip_address.address);

    const system = await db
      .selectFrom("disks")
      .select("id")
      .where("virtual_machine_id", "=", vm)
      .where("position", "=", 1)
      .executeTakeFirstOrThrow();
    const throttled = await api.call("PUT", "/core/v1/disks/_/io_profile", {
      token,
      body: { disk: { id: system.id }, io_profile: { permalink: "throttled" } },
    });
    expect((await completed(throttled.json().task.id)).status).toBe("completed");
    expect(driver.vms.get(vm)!.definition.disks.find((d) => d.id === system.id)?.limits).toEqual({
      megabytesPerSecond: 10,
      iops: 200,
    });
  });

  it("refuses power actions while the VM is still being built", async () => {
    await setup();
    const accepted = await build("early");
    const vm = await api.server.store.db
      .selectFrom("builds")
      .select("virtual_machine_id")
      .where("id", "=", accepted.virtual_machine_build.id)
      .executeTakeFirstOrThrow();
    const response = await api.call(
      "POST",
      `/core/v1/virtual_machines/_/start?virtual_machine[id]=${vm.virtual_machine_id}`,
      { token },
    );
    expect(response.statusCode).toBe(406);
    expect(response.json().error.code).toBe("task_queueing_error");
  });

  it("reconciles records with the host after a restart", async () => {
    await setup();
    const first = worker();
    await first.worker.start();
    const done = await finished((await build("drift")).virtual_machine_build.id);
    const trashed = (await finished((await build("trashed")).virtual_machine_build.id)).virtual_machine_id!;
    const deleted = await api.call("DELETE", `/core/v1/virtual_machines/_?virtual_machine[id]=${trashed}`, {
      token,
    });
    expect(deleted.statusCode).toBe(200);
    await until(async () => {
      const task = await api.server.store.db
        .selectFrom("tasks")
        .select("status")
        .where("object_id", "=", trashed)
        .where("action", "=", "delete")
        .executeTakeFirstOrThrow();
      return task.status === "completed" ? true : undefined;
    });
    await first.worker.stop();
    // While the control plane was down, the VM's process died and a stray VM appeared on the host.
    first.driver.vms.get(done.virtual_machine_id!)!.running = false;
    first.driver.vms.set("vm_strayAAAAAAAAAAA", {
      definition: { id: "vm_strayAAAAAAAAAAA" } as never,
      running: true,
      console: "",
      boots: 1,
    });
    const second = worker("local", first.driver);
    await second.worker.start();
    const vm = await api.server.store.db
      .selectFrom("virtual_machines")
      .select("state")
      .where("id", "=", done.virtual_machine_id!)
      .executeTakeFirstOrThrow();
    expect(vm.state).toBe("stopped");
    expect(first.driver.vms.has("vm_strayAAAAAAAAAAA")).toBe(false);
    // A VM in the trash is kept (it may be restored) until its purge.
    expect(first.driver.vms.has(trashed)).toBe(true);
  });
});
