import type { Kysely } from "kysely";
import type { Database, Row } from "../store/index.js";
import { parseCidr } from "../catalog/addresses.js";
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

async function interfaceParts(db: Kysely<Database>, nic: Row<"network_interfaces">) {
  const network = nic.network_id
    ? await db
        .selectFrom("networks")
        .select(["id", "name"])
        .where("id", "=", nic.network_id)
        .executeTakeFirst()
    : undefined;
  const virtualNetwork = nic.virtual_network_id
    ? await db
        .selectFrom("virtual_networks")
        .select(["id", "name"])
        .where("id", "=", nic.virtual_network_id)
        .executeTakeFirst()
    : undefined;
  const addresses = await db
    .selectFrom("ip_addresses")
    .innerJoin("subnets", "subnets.id", "ip_addresses.subnet_id")
    .select([
      "ip_addresses.id",
      "ip_addresses.address",
      "ip_addresses.reverse_dns",
      "ip_addresses.ip_version",
      "subnets.cidr",
    ])
    .where("ip_addresses.network_interface_id", "=", nic.id)
    .orderBy("ip_addresses.ip_version")
    .orderBy("ip_addresses.address_key")
    .execute();
  return { network: network ?? null, virtualNetwork: virtualNetwork ?? null, addresses };
}

/** Katapult names an interface after its network and its VM: `Public Network on web-1`. */
function interfaceName(
  network: { name: string } | null,
  virtualNetwork: { name: string } | null,
  vm: Row<"virtual_machines">,
) {
  return `${network?.name ?? virtualNetwork?.name ?? "Interface"} on ${vm.hostname}`;
}

export async function networkInterfaceListItem(
  db: Kysely<Database>,
  nic: Row<"network_interfaces">,
  vm: Row<"virtual_machines">,
  baseDomain: string,
) {
  const { network, virtualNetwork, addresses } = await interfaceParts(db, nic);
  return {
    id: nic.id,
    name: interfaceName(network, virtualNetwork, vm),
    network,
    virtual_network: virtualNetwork,
    ip_addresses: addresses.map((ip) => ({
      id: ip.id,
      address: ip.address,
      reverse_dns: ip.reverse_dns ?? present.reverseDnsFor(ip.address, baseDomain),
      address_with_mask: `${ip.address}/${parseCidr(ip.cidr)?.prefix ?? (ip.ip_version === 4 ? 32 : 128)}`,
    })),
  };
}

export async function networkInterfaceView(
  db: Kysely<Database>,
  nic: Row<"network_interfaces">,
  vm: Row<"virtual_machines">,
) {
  const { network, virtualNetwork, addresses } = await interfaceParts(db, nic);
  const speed = nic.speed_profile_id
    ? await db
        .selectFrom("network_speed_profiles")
        .select(["id", "name", "permalink"])
        .where("id", "=", nic.speed_profile_id)
        .executeTakeFirst()
    : undefined;
  return {
    id: nic.id,
    virtual_machine: { id: vm.id, name: vm.name },
    name: interfaceName(network, virtualNetwork, vm),
    network,
    virtual_network: virtualNetwork,
    mac_address: nic.mac_address,
    state: nic.state,
    ip_addresses: addresses.map((ip) => ({ id: ip.id, address: ip.address })),
    speed_profile: speed ?? null,
  };
}

/** One disk, whole: where it lives, its profile, what it is attached to, what it was installed from. */
export async function diskView(db: Kysely<Database>, disk: Row<"disks">) {
  const dc = await db
    .selectFrom("data_centers")
    .select(["id", "name", "permalink"])
    .where("id", "=", disk.data_center_id)
    .executeTakeFirstOrThrow();
  const profile = disk.io_profile_id
    ? await db
        .selectFrom("disk_io_profiles")
        .selectAll()
        .where("id", "=", disk.io_profile_id)
        .executeTakeFirst()
    : undefined;
  const vm = disk.virtual_machine_id
    ? await db
        .selectFrom("virtual_machines")
        .selectAll()
        .where("id", "=", disk.virtual_machine_id)
        .executeTakeFirst()
    : undefined;
  const system = vm !== undefined && disk.position === 1 && disk.shared === 0;
  const version =
    system && vm.disk_template_version_id
      ? await db
          .selectFrom("disk_template_versions")
          .selectAll()
          .where("id", "=", vm.disk_template_version_id)
          .executeTakeFirst()
      : undefined;
  const template = version
    ? await db
        .selectFrom("disk_templates")
        .selectAll()
        .where("id", "=", version.disk_template_id)
        .executeTakeFirst()
    : undefined;
  const latest = template
    ? await db
        .selectFrom("disk_template_versions")
        .selectAll()
        .where("disk_template_id", "=", template.id)
        .orderBy("number", "desc")
        .executeTakeFirst()
    : undefined;
  const { virtual_machine_disk: _attachment, ...summary } = present.disk(disk, undefined);
  return {
    ...summary,
    created_at: disk.created_at,
    storage_speed: disk.storage_speed,
    io_profile: profile ? present.diskIOProfile(profile) : null,
    bus_type: "virtio",
    data_center: dc,
    virtual_machine_disk: vm
      ? {
          virtual_machine: { id: vm.id, fqdn: vm.fqdn },
          attach_on_boot: present.diskAttachmentState(disk) !== "detached",
          boot: disk.position === 1,
          state: present.diskAttachmentState(disk),
        }
      : null,
    installation:
      version && template
        ? {
            // One installation per system disk: named after it.
            id: `dinst_${disk.id.slice(disk.id.indexOf("_") + 1)}`,
            disk_template_version: {
              ...present.diskTemplateVersion(version, template),
              disk_template: present.diskTemplate(template, latest),
            },
            attributes: vm?.initial_root_password
              ? [
                  {
                    key: "root_password",
                    label: "Root password",
                    value: vm.initial_root_password,
                    description:
                      "This is the password we have set for your root user.\nYou should change this.",
                    protect: true,
                  },
                ]
              : [],
          }
        : null,
  };
}
