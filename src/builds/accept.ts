import { randomBytes } from "node:crypto";
import type { Kysely, Transaction } from "kysely";
import { AddressesExhausted, allocateAddress } from "../catalog/allocate.js";
import type { HostnameGenerator } from "../planner/hostnames.js";
import type { BuildPlan, PlanProblem } from "../planner/plan.js";
import {
  insertRow,
  newId,
  randomByte,
  transactionQuery,
  type Database,
  type DialectName,
  type GroupCommit,
  type IpAddressesTable,
} from "../store/index.js";

/** The build's task name, as the real API names it. */
export const BUILD_TASK_NAME = "Build virtual machine";

export interface Acceptance {
  organizationId: string;
  plan: BuildPlan;
  /** Normalised spec XML, before the hostname is final (it is re-rendered if a generated one changes). */
  renderSpecXml: (hostname: string) => string;
  submittedSpec: string;
  annotations: { key: string; value: string }[];
  fqdnSuffix: string;
  /** Idempotency: remember the response under this key for the identity. */
  idempotency?: {
    identityId: string;
    key: string;
    requestHash: string;
    ttlSeconds: number;
    respond: (result: AcceptedBuild) => { status: number; body: unknown };
  };
}

export interface AcceptedBuild {
  buildId: string;
  taskId: string;
  virtualMachineId: string;
  hostname: string;
  /** Addresses reserved, interface by interface (0-based position), in the order of the spec. */
  addresses: {
    interface: number;
    id: string;
    address: string;
    version: 4 | 6;
    networkId: string;
    kind: "new" | "existing";
  }[];
}

/** A plan that cannot be reserved (address pool empty, hostname taken, address taken meanwhile). */
export class ReservationFailed extends Error {
  constructor(readonly problems: PlanProblem[]) {
    super(problems.map((p) => p.message).join("; "));
  }
}

const HOSTNAME_ATTEMPTS = 20;

/** A locally administered unicast MAC (first octet 0x52, as QEMU's own) with 40 random bits. */
function macAddress(): string {
  let mac = "52";
  for (let i = 0; i < 5; i++) mac += ":" + randomByte().toString(16).padStart(2, "0");
  return mac;
}

const interfaceWithMac = transactionQuery(
  (d, mac: string) => d.selectFrom("network_interfaces").select("id").where("mac_address", "=", mac),
  1,
);

/** A MAC no interface has yet: collisions are rare (40 bits) but must not fail a build. */
async function freshMacAddress(trx: Transaction<Database>, dialect: DialectName): Promise<string> {
  for (;;) {
    const mac = macAddress();
    if ((await interfaceWithMac(trx, dialect, mac)).length === 0) return mac;
  }
}

const liveVirtualMachineNamed = transactionQuery(
  (d, organizationId: string, hostname: string) =>
    d
      .selectFrom("virtual_machines")
      .select("id")
      .where("organization_id", "=", organizationId)
      .where("hostname", "=", hostname)
      .where("deleted_at", "is", null),
  2,
);

const tagNamed = transactionQuery(
  (d, organizationId: string, name: string) =>
    d.selectFrom("tags").select("id").where("organization_id", "=", organizationId).where("name", "=", name),
  2,
);

/**
 * Reserves everything a plan needs and records the build, in one unit of work: the VM
 * record, its interfaces, addresses, disks, tags and backup policies, the build
 * (`pending`) and its task (`pending`), annotations and the idempotency key. Either all
 * of it is written or none of it; it is committed with the other builds of the same
 * turn (group commit), and the promise settles only once that commit is done.
 */
export function acceptBuild(
  commits: GroupCommit,
  dialect: DialectName,
  acceptance: Acceptance,
  generateHostname: HostnameGenerator,
): Promise<AcceptedBuild> {
  return commits.run((trx) => reserve(trx, dialect, acceptance, generateHostname));
}

/** What acceptBuild would reserve now (addresses, hostname), in a transaction that is rolled back. */
export async function previewBuild(
  db: Kysely<Database>,
  dialect: DialectName,
  acceptance: Acceptance,
  generateHostname: HostnameGenerator,
): Promise<AcceptedBuild> {
  let result: AcceptedBuild | undefined;
  try {
    await db.transaction().execute(async (trx) => {
      result = await reserve(trx, dialect, acceptance, generateHostname);
      throw new DryRunRollback();
    });
  } catch (error) {
    if (!(error instanceof DryRunRollback)) throw error;
  }
  return result!;
}

class DryRunRollback extends Error {}

async function reserve(
  trx: Transaction<Database>,
  dialect: DialectName,
  acceptance: Acceptance,
  generateHostname: HostnameGenerator,
): Promise<AcceptedBuild> {
  const { plan } = acceptance;
  const now = Math.floor(Date.now() / 1000);
  const problems: PlanProblem[] = [];

  // Hostname: unique among the organization's live VMs. A generated one is drawn again.
  let hostname = plan.hostname;
  for (let attempt = 0; ; attempt++) {
    const [taken] = await liveVirtualMachineNamed(trx, dialect, plan.organizationId, hostname);
    if (!taken) break;
    if (!plan.hostnameGenerated) {
      throw new ReservationFailed([
        {
          path: "/VirtualMachineSpec/Hostname/Hostname",
          code: "unavailable",
          message: `hostname ${hostname} is already used by ${taken.id}`,
        },
      ]);
    }
    if (attempt >= HOSTNAME_ATTEMPTS) hostname = `${generateHostname()}-${randomBytes(2).toString("hex")}`;
    else hostname = generateHostname();
  }
  const fqdn = `${hostname}.${acceptance.fqdnSuffix}`;

  const vmId = newId("virtualMachine");
  const buildId = newId("build");
  const taskId = newId("task");
  await insertRow(trx, dialect, "virtual_machines", {
    id: vmId,
    organization_id: plan.organizationId,
    name: plan.hostnameGenerated && plan.name === plan.hostname ? hostname : plan.name,
    hostname,
    fqdn,
    description: plan.description,
    state: "stopped",
    zone_id: plan.zoneId,
    host_id: null,
    package_id: plan.packageId,
    group_id: plan.groupId,
    iso_id: plan.isoId,
    disk_template_version_id: plan.template.versionId,
    memory_in_gb: plan.memoryInGb,
    cpu_cores: plan.cpuCores,
    initial_root_password: null,
    created_at: now,
    deleted_at: null,
  });

  // Interfaces and their addresses.
  const addresses: AcceptedBuild["addresses"] = [];
  for (const [position, nic] of plan.interfaces.entries()) {
    await insertRow(trx, dialect, "network_interfaces", {
      id: newId("networkInterface"),
      virtual_machine_id: vmId,
      position: position + 1,
      network_id: nic.networkId,
      virtual_network_id: nic.virtualNetworkId,
      speed_profile_id: nic.speedProfileId,
      mac_address: await freshMacAddress(trx, dialect),
      created_at: now,
    });
    for (const [index, allocation] of nic.allocations.entries()) {
      const path = `/VirtualMachineSpec/NetworkInterfaces/NetworkInterface[${position + 1}]/IPAddressAllocation[${index + 1}]`;
      let row: IpAddressesTable | undefined;
      if (allocation.kind === "new") {
        try {
          row = await allocateAddress(trx, dialect, {
            networkId: nic.networkId!,
            version: allocation.version,
            subnetId: allocation.subnetId,
            organizationId: plan.organizationId,
            allocationType: "VirtualMachine",
            allocationId: vmId,
            reverseDns: fqdn,
          });
        } catch (error) {
          if (!(error instanceof AddressesExhausted)) throw error;
          problems.push({
            path,
            code: "unavailable",
            message: `no free IPv${allocation.version} address is left on this network`,
          });
          continue;
        }
      } else {
        const claimed = await trx
          .updateTable("ip_addresses")
          .set({ allocation_type: "VirtualMachine", allocation_id: vmId, reverse_dns: fqdn })
          .where("id", "=", allocation.ipAddressId)
          .where("organization_id", "=", plan.organizationId)
          .where("allocation_id", "is", null)
          .executeTakeFirst();
        if (Number(claimed.numUpdatedRows) !== 1) {
          problems.push({
            path,
            code: "unavailable",
            message: "this IP address was allocated by another build meanwhile",
          });
          continue;
        }
        row = await trx
          .selectFrom("ip_addresses")
          .selectAll()
          .where("id", "=", allocation.ipAddressId)
          .executeTakeFirstOrThrow();
      }
      addresses.push({
        interface: position,
        id: row.id,
        address: row.address,
        version: row.ip_version,
        networkId: row.network_id,
        kind: allocation.kind,
      });
    }
  }
  if (problems.length > 0) throw new ReservationFailed(problems);

  // Disks: the system disk and data disks are created by the build; shared disks are attached now.
  for (const [index, disk] of plan.disks.entries()) {
    const diskId = newId("disk");
    await insertRow(trx, dialect, "disks", {
      id: diskId,
      organization_id: plan.organizationId,
      data_center_id: plan.dataCenterId,
      name: disk.name,
      size_in_gb: disk.sizeInGb,
      storage_speed: disk.speed,
      io_profile_id: disk.ioProfileId,
      file_system_type: disk.fileSystemType,
      virtual_machine_id: vmId,
      position: index + 1,
      shared: 0,
      host_id: null,
      path: null,
      state: "pending",
      created_at: now,
    });
    for (const policy of disk.backupPolicies) {
      await insertRow(trx, dialect, "disk_backup_policies", {
        id: newId("backupPolicy"),
        virtual_machine_id: null,
        disk_id: diskId,
        retention: policy.retention,
        schedule_interval: policy.interval,
        schedule_frequency: policy.frequency,
        schedule_time: policy.time,
        created_at: now,
      });
    }
  }
  for (const [index, diskId] of plan.sharedDiskIds.entries()) {
    const attached = await trx
      .updateTable("disks")
      .set({ virtual_machine_id: vmId, position: plan.disks.length + index + 1, state: "attached" })
      .where("id", "=", diskId)
      .where("virtual_machine_id", "is", null)
      .executeTakeFirst();
    if (Number(attached.numUpdatedRows) !== 1) {
      problems.push({
        path: `/VirtualMachineSpec/SharedDisks/Disk[${index + 1}]`,
        code: "unavailable",
        message: "this disk was attached elsewhere meanwhile",
      });
    }
  }
  if (problems.length > 0) throw new ReservationFailed(problems);
  for (const policy of plan.backupPolicies) {
    await insertRow(trx, dialect, "disk_backup_policies", {
      id: newId("backupPolicy"),
      virtual_machine_id: vmId,
      disk_id: null,
      retention: policy.retention,
      schedule_interval: policy.interval,
      schedule_frequency: policy.frequency,
      schedule_time: policy.time,
      created_at: now,
    });
  }

  // Tags, created on first use.
  for (const [index, name] of plan.tags.entries()) {
    let [tag] = await tagNamed(trx, dialect, plan.organizationId, name);
    if (!tag) {
      tag = { id: newId("tag") };
      await insertRow(trx, dialect, "tags", {
        id: tag.id,
        organization_id: plan.organizationId,
        name,
        color: "light_blue",
        created_at: now,
      });
    }
    await insertRow(trx, dialect, "virtual_machine_tags", {
      virtual_machine_id: vmId,
      tag_id: tag.id,
      position: index + 1,
    });
  }

  await insertRow(trx, dialect, "tasks", {
    id: taskId,
    organization_id: plan.organizationId,
    name: BUILD_TASK_NAME,
    status: "pending",
    progress: 0,
    object_type: "VirtualMachineBuild",
    object_id: buildId,
    error: null,
    created_at: now,
    started_at: null,
    finished_at: null,
  });
  const finalPlan: BuildPlan = { ...plan, hostname };
  await insertRow(trx, dialect, "builds", {
    id: buildId,
    organization_id: plan.organizationId,
    virtual_machine_id: vmId,
    task_id: taskId,
    state: "pending",
    submitted_spec: acceptance.submittedSpec,
    spec_xml: acceptance.renderSpecXml(hostname),
    plan_json: JSON.stringify({ ...finalPlan, addresses }),
    failure_reason: null,
    lease_owner: null,
    lease_expires_at: null,
    attempts: 0,
    created_at: now,
    updated_at: now,
  });
  for (const [index, annotation] of acceptance.annotations.entries()) {
    for (const objectType of ["VirtualMachineBuild", "VirtualMachine"]) {
      await insertRow(trx, dialect, "annotations", {
        object_type: objectType,
        object_id: objectType === "VirtualMachine" ? vmId : buildId,
        position: index + 1,
        key: annotation.key,
        value: annotation.value,
      });
    }
  }
  const result: AcceptedBuild = { buildId, taskId, virtualMachineId: vmId, hostname, addresses };
  if (acceptance.idempotency) {
    const { identityId, key, requestHash, ttlSeconds, respond } = acceptance.idempotency;
    const response = respond(result);
    await insertRow(trx, dialect, "idempotency_keys", {
      identity_id: identityId,
      key,
      request_hash: requestHash,
      response_status: response.status,
      response_body: JSON.stringify(response.body),
      created_at: now,
      expires_at: now + ttlSeconds,
    });
  }
  return result;
}
