import { sql, type CreateTableBuilder, type Kysely } from "kysely";

// Migrations are frozen history: they use only portable column types (text, integer,
// bigint) and never import the live schema types, so they run unchanged on SQLite and PostgreSQL.
type Table = CreateTableBuilder<string, never>;

const withId = (t: Table) => t.addColumn("id", "text", (c) => c.primaryKey());
const createdAt = (t: Table) => t.addColumn("created_at", "bigint", (c) => c.notNull());

export async function up(db: Kysely<unknown>): Promise<void> {
  const table = (name: string, build: (t: Table) => Table) =>
    build(createdAt(withId(db.schema.createTable(name) as unknown as Table))).execute();

  await table("organizations", (t) =>
    t
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("sub_domain", "text", (c) => c.notNull().unique())
      .addColumn("infrastructure_domain", "text", (c) => c.notNull())
      .addColumn("state", "text", (c) => c.notNull())
      .addColumn("managed", "integer", (c) => c.notNull().defaultTo(0))
      .addColumn("currency_iso_code", "text", (c) => c.notNull())
      .addColumn("country_iso_code", "text")
      .addColumn("activated_at", "bigint")
      .addColumn("suspended_at", "bigint"),
  );
  await table("users", (t) =>
    t
      .addColumn("email_address", "text", (c) => c.notNull().unique())
      .addColumn("first_name", "text")
      .addColumn("last_name", "text"),
  );
  await db.schema
    .createTable("memberships")
    .addColumn("organization_id", "text", (c) =>
      c.notNull().references("organizations.id").onDelete("cascade"),
    )
    .addColumn("user_id", "text", (c) => c.notNull().references("users.id").onDelete("cascade"))
    .addColumn("role", "text", (c) => c.notNull())
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("memberships_pk", ["organization_id", "user_id"])
    .execute();
  await table("api_tokens", (t) =>
    t
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("organization_id", "text", (c) =>
        c.notNull().references("organizations.id").onDelete("cascade"),
      )
      .addColumn("user_id", "text", (c) => c.references("users.id").onDelete("set null"))
      .addColumn("role", "text", (c) => c.notNull())
      .addColumn("secret_hash", "text", (c) => c.notNull().unique())
      .addColumn("scopes_json", "text", (c) => c.notNull())
      .addColumn("allowed_networks_json", "text", (c) => c.notNull())
      .addColumn("expires_at", "bigint")
      .addColumn("revoked_at", "bigint")
      .addColumn("last_used_at", "bigint")
      .addColumn("last_used_ip", "text"),
  );

  // Catalog: where VMs can run and what they are made of.
  await table("data_centers", (t) =>
    t
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("permalink", "text", (c) => c.notNull().unique())
      .addColumn("country_name", "text", (c) => c.notNull())
      .addColumn("country_iso_code", "text", (c) => c.notNull()),
  );
  await table("zones", (t) =>
    t
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("permalink", "text", (c) => c.unique())
      .addColumn("data_center_id", "text", (c) => c.notNull().references("data_centers.id")),
  );
  await table("hosts", (t) =>
    t
      .addColumn("name", "text", (c) => c.notNull().unique())
      .addColumn("data_center_id", "text", (c) => c.notNull().references("data_centers.id"))
      .addColumn("zone_id", "text", (c) => c.notNull().references("zones.id"))
      .addColumn("driver", "text", (c) => c.notNull())
      .addColumn("cpu_cores", "integer", (c) => c.notNull())
      .addColumn("memory_in_gb", "integer", (c) => c.notNull())
      .addColumn("disk_in_gb", "integer", (c) => c.notNull())
      .addColumn("state", "text", (c) => c.notNull())
      .addColumn("namespace", "text")
      .addColumn("heartbeat_at", "bigint"),
  );
  await table("packages", (t) =>
    t
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("permalink", "text", (c) => c.notNull().unique())
      .addColumn("cpu_cores", "integer", (c) => c.notNull())
      .addColumn("memory_in_gb", "integer", (c) => c.notNull())
      .addColumn("storage_in_gb", "integer", (c) => c.notNull())
      .addColumn("ipv4_addresses", "integer", (c) => c.notNull())
      .addColumn("monthly_bandwidth_allowance_in_gb", "integer")
      .addColumn("privacy", "text", (c) => c.notNull())
      .addColumn("organization_id", "text", (c) => c.references("organizations.id").onDelete("cascade"))
      .addColumn("use_dedicated_cpus", "integer", (c) => c.notNull())
      .addColumn("group_name", "text", (c) => c.notNull()),
  );
  await table("disk_templates", (t) =>
    t
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("permalink", "text", (c) => c.notNull().unique())
      .addColumn("description", "text")
      .addColumn("universal", "integer", (c) => c.notNull())
      .addColumn("organization_id", "text", (c) => c.references("organizations.id").onDelete("cascade"))
      .addColumn("operating_system_name", "text"),
  );
  await table("disk_template_versions", (t) =>
    t
      .addColumn("disk_template_id", "text", (c) =>
        c.notNull().references("disk_templates.id").onDelete("cascade"),
      )
      .addColumn("number", "integer", (c) => c.notNull())
      .addColumn("stable", "integer", (c) => c.notNull())
      .addColumn("size_in_gb", "integer", (c) => c.notNull())
      .addColumn("image_kind", "text", (c) => c.notNull())
      .addColumn("image_path", "text", (c) => c.notNull())
      .addColumn("kernel_path", "text")
      .addColumn("initrd_path", "text")
      .addColumn("options_json", "text", (c) => c.notNull())
      .addUniqueConstraint("disk_template_versions_number", ["disk_template_id", "number"]),
  );
  await table("disk_io_profiles", (t) =>
    t
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("permalink", "text", (c) => c.notNull().unique())
      .addColumn("speed_in_mb", "integer")
      .addColumn("iops", "integer"),
  );
  await table("networks", (t) =>
    t
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("permalink", "text", (c) => c.unique())
      .addColumn("data_center_id", "text", (c) => c.notNull().references("data_centers.id"))
      .addColumn("is_default", "integer", (c) => c.notNull())
      .addColumn("dns_servers_json", "text", (c) => c.notNull()),
  );
  await table("subnets", (t) =>
    t
      .addColumn("network_id", "text", (c) => c.notNull().references("networks.id").onDelete("cascade"))
      .addColumn("ip_version", "integer", (c) => c.notNull())
      .addColumn("cidr", "text", (c) => c.notNull().unique())
      .addColumn("gateway", "text")
      .addColumn("range_start", "text", (c) => c.notNull())
      .addColumn("range_end", "text", (c) => c.notNull()),
  );
  await table("virtual_networks", (t) =>
    t
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("organization_id", "text", (c) =>
        c.notNull().references("organizations.id").onDelete("cascade"),
      )
      .addColumn("data_center_id", "text", (c) => c.notNull().references("data_centers.id")),
  );
  await table("network_speed_profiles", (t) =>
    t
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("permalink", "text", (c) => c.notNull().unique())
      .addColumn("upload_speed_in_mbit", "integer")
      .addColumn("download_speed_in_mbit", "integer"),
  );
  await table("ip_addresses", (t) =>
    t
      .addColumn("organization_id", "text", (c) => c.references("organizations.id").onDelete("set null"))
      .addColumn("network_id", "text", (c) => c.notNull().references("networks.id"))
      .addColumn("subnet_id", "text", (c) => c.notNull().references("subnets.id"))
      .addColumn("ip_version", "integer", (c) => c.notNull())
      .addColumn("address", "text", (c) => c.notNull())
      .addColumn("address_key", "text", (c) => c.notNull())
      .addColumn("reverse_dns", "text")
      .addColumn("vip", "integer", (c) => c.notNull())
      .addColumn("label", "text")
      .addColumn("allocation_type", "text")
      .addColumn("allocation_id", "text")
      // One row per address in a network: two builds can never hold the same address.
      .addUniqueConstraint("ip_addresses_network_address", ["network_id", "address_key"]),
  );
  await table("ssh_keys", (t) =>
    t
      .addColumn("organization_id", "text", (c) =>
        c.notNull().references("organizations.id").onDelete("cascade"),
      )
      .addColumn("user_id", "text", (c) => c.references("users.id").onDelete("cascade"))
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("public_key", "text", (c) => c.notNull())
      .addColumn("fingerprint", "text", (c) => c.notNull())
      .addUniqueConstraint("ssh_keys_fingerprint", ["organization_id", "fingerprint"]),
  );
  await table("virtual_machine_groups", (t) =>
    t
      .addColumn("organization_id", "text", (c) =>
        c.notNull().references("organizations.id").onDelete("cascade"),
      )
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("segregate", "integer", (c) => c.notNull())
      .addColumn("auto_segregate", "integer", (c) => c.notNull())
      .addUniqueConstraint("virtual_machine_groups_name", ["organization_id", "name"]),
  );
  await table("tags", (t) =>
    t
      .addColumn("organization_id", "text", (c) =>
        c.notNull().references("organizations.id").onDelete("cascade"),
      )
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("color", "text", (c) => c.notNull())
      .addUniqueConstraint("tags_name", ["organization_id", "name"]),
  );
  await table("isos", (t) =>
    t
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("organization_id", "text", (c) => c.references("organizations.id").onDelete("cascade"))
      .addColumn("operating_system_name", "text")
      .addColumn("path", "text", (c) => c.notNull()),
  );

  // Virtual machines and what they hold.
  await table("virtual_machines", (t) =>
    t
      .addColumn("organization_id", "text", (c) => c.notNull().references("organizations.id"))
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("hostname", "text", (c) => c.notNull())
      .addColumn("fqdn", "text", (c) => c.notNull())
      .addColumn("description", "text")
      .addColumn("state", "text", (c) => c.notNull())
      .addColumn("zone_id", "text", (c) => c.notNull().references("zones.id"))
      .addColumn("host_id", "text", (c) => c.references("hosts.id"))
      .addColumn("package_id", "text", (c) => c.references("packages.id"))
      .addColumn("group_id", "text", (c) => c.references("virtual_machine_groups.id").onDelete("set null"))
      .addColumn("iso_id", "text", (c) => c.references("isos.id").onDelete("set null"))
      .addColumn("disk_template_version_id", "text", (c) => c.references("disk_template_versions.id"))
      .addColumn("memory_in_gb", "integer", (c) => c.notNull())
      .addColumn("cpu_cores", "integer", (c) => c.notNull())
      .addColumn("initial_root_password", "text")
      .addColumn("deleted_at", "bigint"),
  );
  // A hostname names one live VM per organization (its fqdn is a lookup key).
  await db.schema
    .createIndex("virtual_machines_live_hostname")
    .on("virtual_machines")
    .columns(["organization_id", "hostname"])
    .unique()
    .where(sql.ref("deleted_at"), "is", null)
    .execute();
  await db.schema
    .createTable("virtual_machine_tags")
    .addColumn("virtual_machine_id", "text", (c) =>
      c.notNull().references("virtual_machines.id").onDelete("cascade"),
    )
    .addColumn("tag_id", "text", (c) => c.notNull().references("tags.id").onDelete("cascade"))
    .addColumn("position", "integer", (c) => c.notNull())
    .addPrimaryKeyConstraint("virtual_machine_tags_pk", ["virtual_machine_id", "tag_id"])
    .execute();
  await table("network_interfaces", (t) =>
    t
      .addColumn("virtual_machine_id", "text", (c) =>
        c.notNull().references("virtual_machines.id").onDelete("cascade"),
      )
      .addColumn("position", "integer", (c) => c.notNull())
      .addColumn("network_id", "text", (c) => c.references("networks.id"))
      .addColumn("virtual_network_id", "text", (c) => c.references("virtual_networks.id"))
      .addColumn("speed_profile_id", "text", (c) => c.references("network_speed_profiles.id"))
      .addColumn("mac_address", "text", (c) => c.notNull().unique()),
  );
  await table("disks", (t) =>
    t
      .addColumn("organization_id", "text", (c) => c.notNull().references("organizations.id"))
      .addColumn("data_center_id", "text", (c) => c.notNull().references("data_centers.id"))
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("size_in_gb", "integer", (c) => c.notNull())
      .addColumn("storage_speed", "text", (c) => c.notNull())
      .addColumn("io_profile_id", "text", (c) => c.references("disk_io_profiles.id"))
      .addColumn("file_system_type", "text")
      .addColumn("virtual_machine_id", "text", (c) =>
        c.references("virtual_machines.id").onDelete("set null"),
      )
      .addColumn("position", "integer")
      .addColumn("shared", "integer", (c) => c.notNull())
      .addColumn("host_id", "text", (c) => c.references("hosts.id"))
      .addColumn("path", "text")
      .addColumn("state", "text", (c) => c.notNull()),
  );
  await table("disk_backup_policies", (t) =>
    t
      .addColumn("virtual_machine_id", "text", (c) => c.references("virtual_machines.id").onDelete("cascade"))
      .addColumn("disk_id", "text", (c) => c.references("disks.id").onDelete("cascade"))
      .addColumn("retention", "integer", (c) => c.notNull())
      .addColumn("schedule_interval", "text")
      .addColumn("schedule_frequency", "integer")
      .addColumn("schedule_time", "integer"),
  );

  // Work: builds and the tasks that report on them.
  await table("tasks", (t) =>
    t
      .addColumn("organization_id", "text", (c) => c.references("organizations.id"))
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("progress", "integer", (c) => c.notNull())
      .addColumn("object_type", "text")
      .addColumn("object_id", "text")
      .addColumn("error", "text")
      .addColumn("started_at", "bigint")
      .addColumn("finished_at", "bigint"),
  );
  await table("builds", (t) =>
    t
      .addColumn("organization_id", "text", (c) => c.notNull().references("organizations.id"))
      .addColumn("virtual_machine_id", "text", (c) => c.references("virtual_machines.id"))
      .addColumn("task_id", "text", (c) => c.notNull().references("tasks.id"))
      .addColumn("state", "text", (c) => c.notNull())
      .addColumn("submitted_spec", "text", (c) => c.notNull())
      .addColumn("spec_xml", "text", (c) => c.notNull())
      .addColumn("plan_json", "text", (c) => c.notNull())
      .addColumn("failure_reason", "text")
      .addColumn("lease_owner", "text")
      .addColumn("lease_expires_at", "bigint")
      .addColumn("attempts", "integer", (c) => c.notNull())
      .addColumn("updated_at", "bigint", (c) => c.notNull()),
  );
  await db.schema.createIndex("builds_state").on("builds").columns(["state", "created_at"]).execute();
  await db.schema
    .createTable("annotations")
    .addColumn("object_type", "text", (c) => c.notNull())
    .addColumn("object_id", "text", (c) => c.notNull())
    .addColumn("position", "integer", (c) => c.notNull())
    .addColumn("key", "text", (c) => c.notNull())
    .addColumn("value", "text")
    .addPrimaryKeyConstraint("annotations_pk", ["object_type", "object_id", "position"])
    .execute();
  await db.schema
    .createIndex("annotations_key_value")
    .on("annotations")
    .columns(["object_type", "key", "value"])
    .execute();
  await db.schema
    .createTable("idempotency_keys")
    .addColumn("identity_id", "text", (c) => c.notNull())
    .addColumn("key", "text", (c) => c.notNull())
    .addColumn("request_hash", "text", (c) => c.notNull())
    .addColumn("response_status", "integer", (c) => c.notNull())
    .addColumn("response_body", "text", (c) => c.notNull())
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("expires_at", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("idempotency_keys_pk", ["identity_id", "key"])
    .execute();
  await db.schema
    .createTable("rate_limit_counters")
    .addColumn("identity_id", "text", (c) => c.notNull())
    .addColumn("bucket", "text", (c) => c.notNull())
    .addColumn("window_start", "bigint", (c) => c.notNull())
    .addColumn("count", "integer", (c) => c.notNull())
    .addPrimaryKeyConstraint("rate_limit_counters_pk", ["identity_id", "bucket", "window_start"])
    .execute();
  await table("trash_objects", (t) =>
    t
      .addColumn("object_type", "text", (c) => c.notNull())
      .addColumn("object_id", "text", (c) => c.notNull().unique())
      .addColumn("organization_id", "text", (c) => c.notNull().references("organizations.id"))
      .addColumn("keep_until", "bigint", (c) => c.notNull()),
  );
  await db.schema
    .createTable("settings")
    .addColumn("key", "text", (c) => c.primaryKey())
    .addColumn("value", "text", (c) => c.notNull())
    .addColumn("updated_at", "bigint", (c) => c.notNull())
    .execute();

  // Foreign keys that lookups and lists follow.
  for (const [table, column] of [
    ["zones", "data_center_id"],
    ["networks", "data_center_id"],
    ["subnets", "network_id"],
    ["ip_addresses", "organization_id"],
    ["ip_addresses", "allocation_id"],
    ["ssh_keys", "organization_id"],
    ["virtual_machines", "organization_id"],
    ["network_interfaces", "virtual_machine_id"],
    ["disks", "virtual_machine_id"],
    ["disks", "organization_id"],
    ["builds", "organization_id"],
    ["tasks", "object_id"],
    ["api_tokens", "organization_id"],
  ] as const) {
    await db.schema.createIndex(`${table}_${column}`).on(table).column(column).execute();
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const name of [
    "settings",
    "trash_objects",
    "rate_limit_counters",
    "idempotency_keys",
    "annotations",
    "builds",
    "tasks",
    "disk_backup_policies",
    "disks",
    "network_interfaces",
    "virtual_machine_tags",
    "virtual_machines",
    "isos",
    "tags",
    "virtual_machine_groups",
    "ssh_keys",
    "ip_addresses",
    "network_speed_profiles",
    "virtual_networks",
    "subnets",
    "networks",
    "disk_io_profiles",
    "disk_template_versions",
    "disk_templates",
    "packages",
    "hosts",
    "zones",
    "data_centers",
    "api_tokens",
    "memberships",
    "users",
    "organizations",
  ]) {
    await db.schema.dropTable(name).ifExists().execute();
  }
}
