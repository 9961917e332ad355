/** The database layer, run against real SQLite and real PostgreSQL. */
import SQLite from "better-sqlite3";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  migrateToLatest,
  migrationStatus,
  newId,
  openStore,
  insertRow,
  prepare,
  readTogether,
  shareReadsUntilTurnEnds,
  transactionQuery,
  type Store,
} from "../../src/store/index.js";
import * as columnDefaults from "../../src/store/migrations/0004-column-defaults.js";
import { DIALECTS, openTestStore, type TestStore } from "../support/stores.js";

const now = () => Math.floor(Date.now() / 1000);

/** One row in every table, linked the way the domain links them. */
async function seedDomain(store: Store) {
  const db = store.db;
  const t = now();
  const org = newId("organization");
  const user = newId("user");
  const dc = newId("dataCenter");
  const zone = newId("zone");
  const host = newId("host");
  const pkg = newId("package");
  const template = newId("diskTemplate");
  const version = newId("diskTemplateVersion");
  const io = newId("diskIOProfile");
  const network = newId("network");
  const subnet = newId("subnet");
  const vnet = newId("virtualNetwork");
  const speed = newId("networkSpeedProfile");
  const group = newId("virtualMachineGroup");
  const tag = newId("tag");
  const iso = newId("iso");
  const vm = newId("virtualMachine");
  const disk = newId("disk");
  const task = newId("task");
  const build = newId("build");

  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto("organizations")
      .values({
        id: org,
        name: "Acme",
        sub_domain: "acme",
        infrastructure_domain: "acme.trebuchet.test",
        state: "active",
        managed: 0,
        currency_iso_code: "GBP",
        country_iso_code: "GB",
        created_at: t,
        activated_at: t,
        suspended_at: null,
      })
      .execute();
    await trx
      .insertInto("users")
      .values({
        id: user,
        email_address: "ops@example.org",
        first_name: "Ops",
        last_name: null,
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("memberships")
      .values({ organization_id: org, user_id: user, role: "admin", created_at: t })
      .execute();
    await trx
      .insertInto("api_tokens")
      .values({
        id: newId("apiToken"),
        name: "ci",
        organization_id: org,
        user_id: user,
        role: "admin",
        secret_hash: "ab".repeat(32),
        scopes_json: JSON.stringify(["virtual_machines"]),
        allowed_networks_json: JSON.stringify(["192.0.2.0/24"]),
        created_at: t,
        expires_at: t + 3600,
        revoked_at: null,
        last_used_at: null,
        last_used_ip: null,
      })
      .execute();
    await trx
      .insertInto("data_centers")
      .values({
        id: dc,
        name: "Lab 1",
        permalink: "lab-1",
        country_name: "United Kingdom",
        country_iso_code: "GB",
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("zones")
      .values({ id: zone, name: "Lab 1 A", permalink: "lab-1-a", data_center_id: dc, created_at: t })
      .execute();
    await trx
      .insertInto("hosts")
      .values({
        id: host,
        name: "host-1",
        data_center_id: dc,
        zone_id: zone,
        driver: "qemu",
        cpu_cores: 2,
        memory_in_gb: 24,
        disk_in_gb: 100,
        state: "active",
        namespace: "trebuchet-host-1",
        heartbeat_at: null,
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("packages")
      .values({
        id: pkg,
        name: "Small 1",
        permalink: "small-1",
        cpu_cores: 1,
        memory_in_gb: 1,
        storage_in_gb: 2,
        ipv4_addresses: 1,
        monthly_bandwidth_allowance_in_gb: null,
        privacy: "public",
        organization_id: null,
        use_dedicated_cpus: 0,
        group_name: "General",
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("disk_templates")
      .values({
        id: template,
        name: "Demo",
        permalink: "templates/demo",
        description: null,
        universal: 1,
        organization_id: null,
        operating_system_name: "Linux",
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("disk_template_versions")
      .values({
        id: version,
        disk_template_id: template,
        number: 1,
        stable: 1,
        size_in_gb: 1,
        image_kind: "kernel",
        image_path: "/var/lib/trebuchet/templates/demo/root.qcow2",
        kernel_path: "/var/lib/trebuchet/templates/demo/vmlinuz",
        initrd_path: "/var/lib/trebuchet/templates/demo/initrd.img",
        options_json: JSON.stringify([{ name: "motd", type: "Text", required: false }]),
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("disk_io_profiles")
      .values({
        id: io,
        name: "Standard",
        permalink: "standard",
        speed_in_mb: 500,
        iops: null,
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("networks")
      .values({
        id: network,
        name: "Public",
        permalink: "lab-1-public",
        data_center_id: dc,
        is_default: 1,
        dns_servers_json: "[]",
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("subnets")
      .values({
        id: subnet,
        network_id: network,
        ip_version: 4,
        cidr: "192.0.2.0/24",
        gateway: "192.0.2.1",
        range_start: "192.0.2.10",
        range_end: "192.0.2.250",
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("virtual_networks")
      .values({ id: vnet, name: "Backend", organization_id: org, data_center_id: dc, created_at: t })
      .execute();
    await trx
      .insertInto("network_speed_profiles")
      .values({
        id: speed,
        name: "1 Gbps",
        permalink: "1gbps",
        upload_speed_in_mbit: 1000,
        download_speed_in_mbit: 1000,
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("ssh_keys")
      .values({
        id: newId("sshKey"),
        organization_id: org,
        user_id: user,
        name: "laptop",
        public_key: "ssh-ed25519 AAAA",
        fingerprint: "SHA256:x",
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("virtual_machine_groups")
      .values({
        id: group,
        organization_id: org,
        name: "web",
        segregate: 1,
        auto_segregate: 0,
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("tags")
      .values({ id: tag, organization_id: org, name: "web", color: "blue", created_at: t })
      .execute();
    await trx
      .insertInto("isos")
      .values({
        id: iso,
        name: "Rescue",
        organization_id: null,
        operating_system_name: null,
        path: "/isos/rescue.iso",
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("virtual_machines")
      .values({
        id: vm,
        organization_id: org,
        name: "Web 1",
        hostname: "web-1",
        fqdn: "web-1.acme.trebuchet.test",
        description: null,
        state: "stopped",
        zone_id: zone,
        host_id: host,
        package_id: pkg,
        group_id: group,
        iso_id: iso,
        disk_template_version_id: version,
        memory_in_gb: 1,
        cpu_cores: 1,
        initial_root_password: null,
        created_at: t,
        deleted_at: null,
      })
      .execute();
    await trx
      .insertInto("virtual_machine_tags")
      .values({ virtual_machine_id: vm, tag_id: tag, position: 1 })
      .execute();
    await trx
      .insertInto("network_interfaces")
      .values({
        id: newId("networkInterface"),
        virtual_machine_id: vm,
        position: 1,
        network_id: network,
        virtual_network_id: null,
        speed_profile_id: speed,
        mac_address: "52:54:00:12:34:56",
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("ip_addresses")
      .values({
        id: newId("ipAddress"),
        organization_id: org,
        network_id: network,
        subnet_id: subnet,
        ip_version: 4,
        address: "192.0.2.10",
        address_key: "c000020a",
        reverse_dns: "web-1.acme.trebuchet.test",
        vip: 0,
        label: null,
        allocation_type: "VirtualMachine",
        allocation_id: vm,
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("disks")
      .values({
        id: disk,
        organization_id: org,
        data_center_id: dc,
        name: "System Disk",
        size_in_gb: 2,
        storage_speed: "ssd",
        io_profile_id: io,
        file_system_type: "ext4",
        virtual_machine_id: vm,
        position: 1,
        shared: 0,
        host_id: host,
        path: null,
        state: "pending",
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("disk_backup_policies")
      .values({
        id: newId("backupPolicy"),
        virtual_machine_id: null,
        disk_id: disk,
        retention: 7,
        schedule_interval: "daily",
        schedule_frequency: 1,
        schedule_time: 2,
        created_at: t,
      })
      .execute();
    await trx
      .insertInto("tasks")
      .values({
        id: task,
        organization_id: org,
        name: "Build virtual machine",
        status: "pending",
        progress: 0,
        object_type: "VirtualMachineBuild",
        object_id: build,
        error: null,
        created_at: t,
        started_at: null,
        finished_at: null,
      })
      .execute();
    await trx
      .insertInto("builds")
      .values({
        id: build,
        organization_id: org,
        virtual_machine_id: vm,
        task_id: task,
        state: "pending",
        submitted_spec: "<VirtualMachineSpec/>",
        spec_xml: '<?xml version="1.0"?>\n<VirtualMachineSpec/>\n',
        plan_json: "{}",
        failure_reason: null,
        lease_owner: null,
        lease_expires_at: null,
        attempts: 0,
        created_at: t,
        updated_at: t,
      })
      .execute();
    await trx
      .insertInto("annotations")
      .values({ object_type: "VirtualMachine", object_id: vm, position: 1, key: "env", value: "prod" })
      .execute();
    await trx
      .insertInto("idempotency_keys")
      .values({
        identity_id: "tok_x",
        key: "k1",
        request_hash: "h",
        outcome_json: "{}",
        created_at: t,
        expires_at: t + 86_400,
      })
      .execute();
    await trx
      .insertInto("rate_limit_counters")
      .values({ identity_id: "tok_x", bucket: "build", window_start: t, count: 1 })
      .execute();
    await trx
      .insertInto("trash_objects")
      .values({
        id: newId("trashObject"),
        object_type: "VirtualMachine",
        object_id: newId("virtualMachine"),
        organization_id: org,
        keep_until: t + 172_800,
        created_at: t,
      })
      .execute();
    await trx.insertInto("settings").values({ key: "maintenance", value: "off", updated_at: t }).execute();
  });
  return { org, vm, network, subnet, build, task, zone, t };
}

describe.each(DIALECTS)("store on %s", (dialect) => {
  let store: TestStore;
  let seeded: Awaited<ReturnType<typeof seedDomain>>;

  beforeAll(async () => {
    store = await openTestStore(dialect);
    seeded = await seedDomain(store);
  });
  afterAll(async () => store?.dispose());

  it("reports its dialect", () => {
    expect(store.dialect).toBe(dialect);
  });

  it("has applied every migration, and migrating again changes nothing", async () => {
    expect(await migrationStatus(store.db)).toEqual([
      { name: "0001-initial", executedAt: expect.any(Date) },
      { name: "0002-work-queue", executedAt: expect.any(Date) },
      { name: "0003-lifecycle", executedAt: expect.any(Date) },
      { name: "0004-column-defaults", executedAt: expect.any(Date) },
      { name: "0005-vm-resources", executedAt: expect.any(Date) },
      { name: "0006-backup-policy-schedules", executedAt: expect.any(Date) },
      { name: "0007-disks-built-for-a-vm", executedAt: expect.any(Date) },
      { name: "0008-organization-limits", executedAt: expect.any(Date) },
    ]);
    expect(await migrateToLatest(store.db)).toEqual({ applied: [], pending: [] });
  });

  it("reads rows back with the declared types: numbers for timestamps and flags", async () => {
    const vm = await store.db
      .selectFrom("virtual_machines")
      .selectAll()
      .where("id", "=", seeded.vm)
      .executeTakeFirstOrThrow();
    expect(vm).toMatchObject({
      hostname: "web-1",
      state: "stopped",
      memory_in_gb: 1,
      created_at: seeded.t,
      deleted_at: null,
    });
    expect(typeof vm.created_at).toBe("number");
    const network = await store.db
      .selectFrom("networks")
      .select(["is_default"])
      .where("id", "=", seeded.network)
      .executeTakeFirstOrThrow();
    expect(network.is_default).toBe(1);
    const counted = await store.db
      .selectFrom("builds")
      .select((eb) => eb.fn.countAll<number>().as("n"))
      .executeTakeFirstOrThrow();
    expect(Number(counted.n)).toBe(1);
  });

  it("never lets two rows hold the same address in a network", async () => {
    const row = await store.db.selectFrom("ip_addresses").selectAll().executeTakeFirstOrThrow();
    await expect(
      store.db
        .insertInto("ip_addresses")
        .values({ ...row, id: newId("ipAddress"), allocation_id: null })
        .execute(),
    ).rejects.toThrow(/unique|UNIQUE/);
  });

  it("keeps hostnames unique among an organization's live VMs only", async () => {
    const vm = await store.db
      .selectFrom("virtual_machines")
      .selectAll()
      .where("id", "=", seeded.vm)
      .executeTakeFirstOrThrow();
    const twin = { ...vm, id: newId("virtualMachine") };
    await expect(store.db.insertInto("virtual_machines").values(twin).execute()).rejects.toThrow(
      /unique|UNIQUE/,
    );
    await store.db
      .updateTable("virtual_machines")
      .set({ deleted_at: now() })
      .where("id", "=", seeded.vm)
      .execute();
    await store.db.insertInto("virtual_machines").values(twin).execute();
    await store.db.deleteFrom("virtual_machines").where("id", "=", twin.id).execute();
    await store.db
      .updateTable("virtual_machines")
      .set({ deleted_at: null })
      .where("id", "=", seeded.vm)
      .execute();
  });

  it("fills columns with an obvious starting value from the schema's defaults", async () => {
    const id = newId("task");
    await store.db
      .insertInto("tasks")
      .values({ id, name: "x", status: "pending", created_at: now() })
      .execute();
    const task = await store.db
      .selectFrom("tasks")
      .selectAll()
      .where("id", "=", id)
      .executeTakeFirstOrThrow();
    expect(task).toMatchObject({ progress: 0, error: null, object_id: null });
    await store.db.deleteFrom("tasks").where("id", "=", id).execute();
    const address = await store.db.selectFrom("ip_addresses").selectAll().executeTakeFirstOrThrow();
    const { vip: _vip, ...withoutVip } = address;
    const copy = { ...withoutVip, id: newId("ipAddress"), address_key: "ff", allocation_id: null };
    await store.db.insertInto("ip_addresses").values(copy).execute();
    const read = await store.db
      .selectFrom("ip_addresses")
      .select("vip")
      .where("id", "=", copy.id)
      .executeTakeFirstOrThrow();
    expect(read.vip).toBe(0);
    await store.db.deleteFrom("ip_addresses").where("id", "=", copy.id).execute();
  });

  it("changes column defaults without losing rows, indexes or foreign keys (and back)", async () => {
    const fresh = await openTestStore(dialect);
    try {
      await seedDomain(fresh);
      const count = async (table: "tasks" | "builds" | "disks" | "ip_addresses") =>
        Number(
          (
            await fresh.db
              .selectFrom(table)
              .select((eb) => eb.fn.countAll<number>().as("n"))
              .executeTakeFirstOrThrow()
          ).n,
        );
      const before = [
        await count("tasks"),
        await count("builds"),
        await count("disks"),
        await count("ip_addresses"),
      ];
      expect(before.every((n) => n > 0)).toBe(true);
      const bare = () =>
        fresh.db
          .insertInto("tasks")
          .values({ id: newId("task"), name: "x", status: "pending", created_at: now() });
      await columnDefaults.down(fresh.db as never);
      await expect(bare().execute()).rejects.toThrow(/not.null/i);
      await columnDefaults.up(fresh.db as never);
      expect([
        await count("tasks"),
        await count("builds"),
        await count("disks"),
        await count("ip_addresses"),
      ]).toEqual(before);
      await bare().execute();
      // Builds still point at real tasks, and the rebuilt tables keep their indexes.
      const build = await fresh.db.selectFrom("builds").selectAll().executeTakeFirstOrThrow();
      await expect(
        fresh.db
          .insertInto("builds")
          .values({ ...build, id: newId("build"), task_id: "task_missing" })
          .execute(),
      ).rejects.toThrow(/foreign key|FOREIGN KEY/i);
      await expect(fresh.db.deleteFrom("tasks").where("id", "=", build.task_id).execute()).rejects.toThrow(
        /foreign key|FOREIGN KEY/i,
      );
      const indexes =
        dialect === "sqlite"
          ? await sql<{ name: string }>`
              select name from sqlite_master where type = 'index' and tbl_name in ('tasks', 'builds')`.execute(
              fresh.db,
            )
          : await sql<{ name: string }>`
              select indexname as name from pg_indexes where tablename in ('tasks', 'builds')`.execute(
              fresh.db,
            );
      expect(indexes.rows.map((r) => r.name)).toEqual(
        expect.arrayContaining(["builds_state", "tasks_object_queue"]),
      );
    } finally {
      await fresh.dispose();
    }
  });

  it("enforces foreign keys", async () => {
    await expect(
      store.db
        .insertInto("zones")
        .values({
          id: newId("zone"),
          name: "x",
          permalink: null,
          data_center_id: "dc_missing",
          created_at: now(),
        })
        .execute(),
    ).rejects.toThrow(/foreign key|FOREIGN KEY/i);
  });

  it("enforces unique sub-domains and permalinks", async () => {
    const org = await store.db.selectFrom("organizations").selectAll().executeTakeFirstOrThrow();
    await expect(
      store.db
        .insertInto("organizations")
        .values({ ...org, id: newId("organization") })
        .execute(),
    ).rejects.toThrow(/unique|UNIQUE/);
  });

  it("rolls a failed transaction back completely", async () => {
    const before = await store.db.selectFrom("tasks").select("id").execute();
    await expect(
      store.db.transaction().execute(async (trx) => {
        await trx
          .insertInto("tasks")
          .values({
            id: newId("task"),
            organization_id: null,
            name: "x",
            status: "pending",
            progress: 0,
            object_type: null,
            object_id: null,
            error: null,
            created_at: now(),
            started_at: null,
            finished_at: null,
          })
          .execute();
        throw new Error("abort");
      }),
    ).rejects.toThrow("abort");
    expect(await store.db.selectFrom("tasks").select("id").execute()).toEqual(before);
  });

  it("lets a second process open the same database and see the same rows", async () => {
    const second = await openStore(store.options);
    try {
      const build = await second.db.selectFrom("builds").select(["id", "state"]).executeTakeFirstOrThrow();
      expect(build).toEqual({ id: seeded.build, state: "pending" });
    } finally {
      await second.close();
    }
  });
});

describe.each(DIALECTS)("group commit on %s", (dialect) => {
  let store: TestStore;
  let observer: Store;
  const setting = (key: string) => ({ key, value: "v", updated_at: now() });
  const keysSeenByAnotherConnection = async () =>
    (await observer.db.selectFrom("settings").select("key").where("key", "like", "gc-%").execute())
      .map((row) => row.key)
      .sort();

  beforeAll(async () => {
    store = await openTestStore(dialect);
    observer = await openStore(store.options);
  });
  afterAll(async () => {
    await observer?.close();
    await store?.dispose();
  });

  it("commits the units of one turn together, keeps a failed unit's writes out, and settles only after the commit", async () => {
    const seenAtFirstSettlement: string[][] = [];
    const first = store.groupCommit.run(async (trx) => {
      await trx.insertInto("settings").values(setting("gc-1")).execute();
      return "one";
    });
    const failing = store.groupCommit.run(async (trx) => {
      // Both ways of writing in a unit (Kysely's, and compiled statements run on the connection) roll back.
      await trx.insertInto("settings").values(setting("gc-2")).execute();
      await insertRow(trx, "settings", setting("gc-2b"));
      throw new Error("unit two fails");
    });
    const third = store.groupCommit.run(async (trx) => {
      // Earlier units of the group are visible to later ones.
      const earlier = await trx.selectFrom("settings").select("key").where("key", "=", "gc-1").execute();
      await insertRow(trx, "settings", setting("gc-3"));
      return earlier.length;
    });
    const settled = Promise.allSettled([
      first.then(async (value) => {
        seenAtFirstSettlement.push(await keysSeenByAnotherConnection());
        return value;
      }),
      failing,
      third,
    ]);
    // Nothing is committed before the turn ends.
    expect(await keysSeenByAnotherConnection()).toEqual([]);
    const [one, two, three] = await settled;
    expect(one).toEqual({ status: "fulfilled", value: "one" });
    expect(two).toMatchObject({ status: "rejected", reason: { message: "unit two fails" } });
    expect(three).toEqual({ status: "fulfilled", value: 1 });
    // When the first unit settled, the third unit's write was already committed: one commit for all.
    expect(seenAtFirstSettlement).toEqual([["gc-1", "gc-3"]]);
    expect(await keysSeenByAnotherConnection()).toEqual(["gc-1", "gc-3"]);
  });

  it("fails every unit of the group when the commit itself fails, and writes none of them", async () => {
    const good = store.groupCommit.run(async (trx) => {
      await trx.insertInto("settings").values(setting("gc-4")).execute();
    });
    // A deferred foreign key is checked at COMMIT: the whole group's commit fails.
    const poison = store.groupCommit.run(async (trx) => {
      await sql`create table group_commit_probe (id integer primary key, parent integer references group_commit_probe (id) deferrable initially deferred)`.execute(
        trx,
      );
      await sql`insert into group_commit_probe (id, parent) values (1, 99)`.execute(trx);
    });
    const [a, b] = await Promise.allSettled([good, poison]);
    expect(a.status).toBe("rejected");
    expect(b.status).toBe("rejected");
    expect(await keysSeenByAnotherConnection()).toEqual(["gc-1", "gc-3"]);
    // The store goes on working: the next group commits.
    await store.groupCommit.run((trx) => trx.insertInto("settings").values(setting("gc-5")).execute());
    expect(await keysSeenByAnotherConnection()).toEqual(["gc-1", "gc-3", "gc-5"]);
  });
});

describe.each(DIALECTS)("compiled statements on %s", (dialect) => {
  let store: TestStore;
  beforeAll(async () => {
    store = await openTestStore(dialect);
  });
  afterAll(async () => store?.dispose());

  const settingByKey = transactionQuery(
    (d, key: string) => d.selectFrom("settings").select(["key", "value"]).where("key", "=", key),
    1,
  );

  it("inserts exactly the columns of each row, whatever their order, and reads inside the transaction", async () => {
    await store.db.transaction().execute(async (trx) => {
      await insertRow(trx, "settings", { key: "s-1", value: "a", updated_at: 1 });
      // Another column order reuses nothing it should not: the values land in their columns.
      await insertRow(trx, "settings", { updated_at: 2, value: "b", key: "s-2" });
      await insertRow(trx, "settings", { key: "s-3", value: "c", updated_at: 3 });
      // The transaction's own writes are visible to its compiled queries.
      expect(await settingByKey(trx, "s-2")).toEqual([{ key: "s-2", value: "b" }]);
    });
    const rows = await store.db
      .selectFrom("settings")
      .select(["key", "value", "updated_at"])
      .where("key", "like", "s-%")
      .orderBy("key")
      .execute();
    expect(rows).toEqual([
      { key: "s-1", value: "a", updated_at: 1 },
      { key: "s-2", value: "b", updated_at: 2 },
      { key: "s-3", value: "c", updated_at: 3 },
    ]);
    expect(await settingByKey(store.db, "s-missing")).toEqual([]);
  });
});

describe.each(DIALECTS)("store timeouts on %s", (dialect) => {
  it("gives up on a statement that runs past the timeout instead of hanging", async () => {
    const store = await openTestStore(dialect, { timeoutMs: 300 });
    try {
      const started = Date.now();
      if (dialect === "postgres") {
        await expect(sql`select pg_sleep(5)`.execute(store.db)).rejects.toThrow(/timeout|cancel/i);
      } else {
        // Another connection holds the write lock; this writer waits at most the timeout.
        const SQLite = (await import("better-sqlite3")).default;
        const other = new SQLite(store.location);
        other.exec("begin immediate");
        try {
          await expect(
            store.db.insertInto("settings").values({ key: "k", value: "v", updated_at: 0 }).execute(),
          ).rejects.toThrow(/locked|busy/i);
        } finally {
          other.exec("rollback");
          other.close();
        }
      }
      expect(Date.now() - started).toBeLessThan(4000);
    } finally {
      await store.dispose();
    }
  });
});

describe("sqlite specifics", () => {
  it("uses write-ahead logging", async () => {
    const store = await openTestStore("sqlite");
    try {
      const mode = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(store.db);
      expect(mode.rows[0]?.journal_mode).toBe("wal");
    } finally {
      await store.dispose();
    }
  });

  it("runs prepared reads on their own connection: never blocked by, and never seeing, an open transaction", async () => {
    const store = await openTestStore("sqlite");
    try {
      const bySubDomain = prepare(
        store.db,
        (d, sub: string) => d.selectFrom("organizations").select("id").where("sub_domain", "=", sub),
        1,
      );
      const id = newId("organization");
      await store.db.transaction().execute(async (trx) => {
        await trx
          .insertInto("organizations")
          .values({
            id,
            name: "Pending",
            sub_domain: "pending",
            infrastructure_domain: "pending.test",
            state: "active",
            managed: 0,
            currency_iso_code: "GBP",
            country_iso_code: null,
            created_at: 0,
            activated_at: 0,
            suspended_at: null,
          })
          .execute();
        // The writer connection is held by this transaction; a Kysely read would wait for it.
        expect(await bySubDomain("pending")).toEqual([]);
      });
      expect(await bySubDomain("pending")).toEqual([{ id }]);
    } finally {
      await store.dispose();
    }
  });

  it("lets the requests of one poll phase share a read snapshot, and reads this process's writes at once", async () => {
    const store = await openTestStore("sqlite");
    const otherProcess = new SQLite(store.location);
    try {
      const bySubDomain = prepare(
        store.db,
        (d, sub: string) => d.selectFrom("organizations").select("sub_domain").where("sub_domain", "=", sub),
        1,
      );
      const insertElsewhere = otherProcess.prepare(
        `insert into organizations (id, name, sub_domain, infrastructure_domain, state, managed,
           currency_iso_code, country_iso_code, created_at, activated_at, suspended_at)
         values (?, ?, ?, 'x.test', 'active', 0, 'GBP', null, 0, 0, null)`,
      );
      const turnEnds = () => new Promise((resolve) => setImmediate(resolve));

      // Outside a request's window, every read sees the latest commit.
      expect(await bySubDomain("first")).toEqual([]);
      insertElsewhere.run(newId("organization"), "First", "first");
      expect(await bySubDomain("first")).toEqual([{ sub_domain: "first" }]);

      // Within one: the snapshot the window's first read opened, until the turn ends.
      shareReadsUntilTurnEnds(store.db);
      expect(await bySubDomain("second")).toEqual([]);
      insertElsewhere.run(newId("organization"), "Second", "second");
      expect(await bySubDomain("second")).toEqual([]);
      await turnEnds();
      expect(await bySubDomain("second")).toEqual([{ sub_domain: "second" }]);

      // A write of this process ends the snapshot before it runs: no turn need pass.
      shareReadsUntilTurnEnds(store.db);
      expect(await bySubDomain("here")).toEqual([]);
      await store.db
        .updateTable("organizations")
        .set({ sub_domain: "here" })
        .where("sub_domain", "=", "second")
        .execute();
      expect(await bySubDomain("here")).toEqual([{ sub_domain: "here" }]);

      // Outside a window, reads made together share one snapshot, which ends with them.
      await turnEnds();
      const [before, after] = readTogether(store.db, () => {
        const first = bySubDomain("third");
        insertElsewhere.run(newId("organization"), "Third", "third");
        return [first, bySubDomain("third")];
      });
      expect(await before).toEqual([]);
      expect(await after).toEqual([]);
      expect(await bySubDomain("third")).toEqual([{ sub_domain: "third" }]);
    } finally {
      otherProcess.close();
      await store.dispose();
    }
  });
});
