import { isAbsolute, join } from "node:path";
import type { Kysely } from "kysely";
import { parseCidr } from "../catalog/addresses.js";
import type { GuestInterface, VmDefinition } from "../hosts/driver.js";
import { inDefinition, storedPlanOf } from "../lifecycle/index.js";
import type { Database } from "../store/index.js";
import { dnsServersColumn } from "../catalog/columns.js";

/** Template paths in the catalog are relative to the host's templates directory, unless absolute. */
export function templatePath(templatesDir: string, path: string): string {
  return isAbsolute(path) ? path : join(templatesDir, path);
}

/**
 * What the host needs to run a VM, read from the database: its size and template,
 * its disks, its interfaces with their addresses and gateways, and the plan's keys
 * and template options.
 */
export async function loadVmDefinition(
  db: Kysely<Database>,
  vmId: string,
  templatesDir: string,
): Promise<VmDefinition> {
  const vm = await db
    .selectFrom("virtual_machines")
    .selectAll()
    .where("id", "=", vmId)
    .executeTakeFirstOrThrow();
  const plan = await storedPlanOf(db, vmId);
  if (!plan) throw new Error(`virtual machine ${vmId} has no build`);
  const version = await db
    .selectFrom("disk_template_versions")
    .selectAll()
    .where("id", "=", vm.disk_template_version_id!)
    .executeTakeFirstOrThrow();
  const disks = await db
    .selectFrom("disks")
    .selectAll()
    .where("virtual_machine_id", "=", vmId)
    .where("state", "!=", "deleted")
    .orderBy("position")
    .execute();
  const nics = await db
    .selectFrom("network_interfaces")
    .selectAll()
    .where("virtual_machine_id", "=", vmId)
    .where("state", "=", "attached")
    .orderBy("position")
    .execute();
  const addresses = await db
    .selectFrom("ip_addresses")
    .innerJoin("subnets", "subnets.id", "ip_addresses.subnet_id")
    .select([
      "ip_addresses.id",
      "ip_addresses.network_id",
      "ip_addresses.network_interface_id",
      "ip_addresses.address",
      "ip_addresses.ip_version",
      "subnets.cidr",
      "subnets.gateway",
    ])
    .where("ip_addresses.allocation_type", "=", "VirtualMachine")
    .where("ip_addresses.allocation_id", "=", vmId)
    .orderBy("ip_addresses.ip_version")
    .orderBy("ip_addresses.address_key")
    .execute();
  const speedIds = [
    ...new Set(nics.map((n) => n.speed_profile_id).filter((id): id is string => id !== null)),
  ];
  const speeds = new Map(
    (speedIds.length > 0
      ? await db.selectFrom("network_speed_profiles").selectAll().where("id", "in", speedIds).execute()
      : []
    ).map((p) => [p.id, { downloadMbit: p.download_speed_in_mbit, uploadMbit: p.upload_speed_in_mbit }]),
  );
  const ioIds = [...new Set(disks.map((d) => d.io_profile_id).filter((id): id is string => id !== null))];
  const ioLimits = new Map(
    (ioIds.length > 0
      ? await db.selectFrom("disk_io_profiles").selectAll().where("id", "in", ioIds).execute()
      : []
    ).map((p) => [p.id, { megabytesPerSecond: p.speed_in_mb, iops: p.iops }]),
  );
  const networkIds = [...new Set(nics.map((n) => n.network_id).filter((id): id is string => id !== null))];
  const networks =
    networkIds.length > 0
      ? await db.selectFrom("networks").selectAll().where("id", "in", networkIds).execute()
      : [];
  const subnets =
    networkIds.length > 0
      ? await db.selectFrom("subnets").selectAll().where("network_id", "in", networkIds).execute()
      : [];

  // Addresses name their interface; rows older than that column follow the build's record.
  const positionOf = new Map<string, number>();
  for (const a of plan.addresses ?? []) positionOf.set(a.id, a.interface);
  const indexOf = new Map(nics.map((nic, index) => [nic.id, index]));
  const interfaces: GuestInterface[] = nics.map((nic) => ({
    id: nic.id,
    mac: nic.mac_address,
    segment: nic.network_id ?? nic.virtual_network_id ?? nic.id,
    gatewayCidrs: subnets
      .filter((s) => s.network_id === nic.network_id && s.gateway)
      .map((s) => `${s.gateway}/${parseCidr(s.cidr)?.prefix ?? (s.ip_version === 4 ? 24 : 64)}`),
    addresses: [],
    ...(nic.speed_profile_id && speeds.has(nic.speed_profile_id)
      ? { speed: speeds.get(nic.speed_profile_id)! }
      : {}),
  }));
  for (const address of addresses) {
    if (address.network_interface_id && !indexOf.has(address.network_interface_id)) continue; // detached
    const position = address.network_interface_id
      ? indexOf.get(address.network_interface_id)
      : positionOf.get(address.id);
    const nic =
      position !== undefined
        ? interfaces[position]
        : interfaces.find((_, index) => nics[index]!.network_id === address.network_id);
    nic?.addresses.push({
      address: address.address,
      prefix: parseCidr(address.cidr)?.prefix ?? (address.ip_version === 4 ? 32 : 128),
      version: address.ip_version,
      gateway: address.gateway,
    });
  }
  const dnsServers = [...new Set(networks.flatMap((n) => dnsServersColumn.decode(n.dns_servers_json)))];

  return {
    id: vm.id,
    hostname: vm.hostname,
    memoryInMb: vm.memory_in_gb * 1024,
    cpuCores: vm.cpu_cores,
    template: {
      kind: version.image_kind,
      image: templatePath(templatesDir, version.image_path),
      kernel: version.kernel_path ? templatePath(templatesDir, version.kernel_path) : null,
      initrd: version.initrd_path ? templatePath(templatesDir, version.initrd_path) : null,
    },
    // Disks made with the VM live in its directory; shared and standalone ones where they were made.
    disks: disks.filter(inDefinition).map((d) => ({
      id: d.id,
      sizeInGb: d.size_in_gb,
      system: d.position === 1 && d.shared === 0 && d.path === null,
      ...(d.path ? { existingPath: d.path } : {}),
      ...(d.io_profile_id && ioLimits.has(d.io_profile_id) ? { limits: ioLimits.get(d.io_profile_id)! } : {}),
    })),
    interfaces,
    dnsServers,
    authorizedKeys: plan.authorizedKeys,
    options: plan.template.options,
  };
}
