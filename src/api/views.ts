import type { Kysely } from "kysely";
import type { Database, Row } from "../store/index.js";
import * as present from "./presenters.js";

/** Composite objects that need several rows: the full virtual machine and its list items. */

export async function annotationsOf(db: Kysely<Database>, objectType: string, objectId: string) {
  const rows = await db
    .selectFrom("annotations")
    .select(["key", "value"])
    .where("object_type", "=", objectType)
    .where("object_id", "=", objectId)
    .orderBy("position")
    .execute();
  return rows.map((r) => ({ key: r.key, value: r.value ?? "" }));
}

async function zoneOf(db: Kysely<Database>, zoneId: string) {
  const zone = await db.selectFrom("zones").selectAll().where("id", "=", zoneId).executeTakeFirstOrThrow();
  const dc = await db
    .selectFrom("data_centers")
    .selectAll()
    .where("id", "=", zone.data_center_id)
    .executeTakeFirstOrThrow();
  return { zone, dc };
}

/** A VM's addresses, IPv4 first, in address order. */
function addressesOf(db: Kysely<Database>, vmId: string) {
  return db
    .selectFrom("ip_addresses")
    .select(["id", "address"])
    .where("allocation_type", "=", "VirtualMachine")
    .where("allocation_id", "=", vmId)
    .orderBy("ip_version")
    .orderBy("address_key")
    .execute();
}

export async function ipAddressView(db: Kysely<Database>, ipId: string, baseDomain: string) {
  const ip = await db.selectFrom("ip_addresses").selectAll().where("id", "=", ipId).executeTakeFirstOrThrow();
  const subnet = await db
    .selectFrom("subnets")
    .selectAll()
    .where("id", "=", ip.subnet_id)
    .executeTakeFirstOrThrow();
  const network = await db
    .selectFrom("networks")
    .selectAll()
    .where("id", "=", ip.network_id)
    .executeTakeFirstOrThrow();
  const dc = await db
    .selectFrom("data_centers")
    .selectAll()
    .where("id", "=", network.data_center_id)
    .executeTakeFirstOrThrow();
  return present.ipAddress(ip, subnet, network, dc, baseDomain);
}

export async function virtualMachineView(
  db: Kysely<Database>,
  vm: Row<"virtual_machines">,
  baseDomain: string,
) {
  const { zone, dc } = await zoneOf(db, vm.zone_id);
  const org = await db
    .selectFrom("organizations")
    .selectAll()
    .where("id", "=", vm.organization_id)
    .executeTakeFirstOrThrow();
  const pkg = vm.package_id
    ? await db.selectFrom("packages").selectAll().where("id", "=", vm.package_id).executeTakeFirst()
    : undefined;
  const group = vm.group_id
    ? await db
        .selectFrom("virtual_machine_groups")
        .selectAll()
        .where("id", "=", vm.group_id)
        .executeTakeFirst()
    : undefined;
  const iso = vm.iso_id
    ? await db.selectFrom("isos").selectAll().where("id", "=", vm.iso_id).executeTakeFirst()
    : undefined;
  const tags = await db
    .selectFrom("virtual_machine_tags")
    .innerJoin("tags", "tags.id", "virtual_machine_tags.tag_id")
    .selectAll("tags")
    .where("virtual_machine_tags.virtual_machine_id", "=", vm.id)
    .orderBy("virtual_machine_tags.position")
    .execute();
  const ips = await addressesOf(db, vm.id);
  return {
    id: vm.id,
    name: vm.name,
    hostname: vm.hostname,
    fqdn: vm.fqdn,
    description: vm.description,
    created_at: vm.created_at,
    initial_root_password: vm.initial_root_password,
    state: vm.state,
    suspended: false,
    suspended_at: null,
    zone: present.zone(zone, dc),
    organization: present.organization(org),
    group: group ? present.virtualMachineGroup(group) : null,
    package: pkg ? present.virtualMachinePackage(pkg) : null,
    attached_iso: iso ? present.iso(iso) : null,
    memory_in_gb: vm.memory_in_gb,
    cpu_cores: vm.cpu_cores,
    use_dedicated_cpus: pkg ? pkg.use_dedicated_cpus === 1 : false,
    gpu_type: null,
    gpus: [],
    tags: tags.map(present.tag),
    tag_names: tags.map((t) => t.name),
    ip_addresses: await Promise.all(ips.map((ip) => ipAddressView(db, ip.id, baseDomain))),
  };
}

export async function virtualMachineListItem(db: Kysely<Database>, vm: Row<"virtual_machines">) {
  const { zone, dc } = await zoneOf(db, vm.zone_id);
  const pkg = vm.package_id
    ? await db.selectFrom("packages").select("name").where("id", "=", vm.package_id).executeTakeFirst()
    : undefined;
  const ips = await addressesOf(db, vm.id);
  return {
    id: vm.id,
    name: vm.name,
    hostname: vm.hostname,
    fqdn: vm.fqdn,
    created_at: vm.created_at,
    zone: present.zone(zone, dc, { country: false }),
    package: pkg ? { name: pkg.name } : null,
    gpu_type: null,
    ip_addresses: ips.map((ip) => ({ address: ip.address })),
  };
}
