import { randomBytes } from "node:crypto";
import type { Kysely, Transaction } from "kysely";
import { AddressesExhausted, allocateAddress, isUniqueViolation } from "./addresses.js";
import type { HostnameGenerator } from "../planner/hostnames.js";
import type { BuildPlan, KeyValue, PlannedBackupPolicy, PlanProblem } from "../planner/plan.js";
import {
  insertRow,
  isObject,
  jsonColumn,
  newId,
  randomByte,
  retryingConflicts,
  transactionQuery,
  type Database,
  type GroupCommit,
  type NewRow,
  type Row,
} from "../store/index.js";
import { recordedOutcome, recordOutcome, type IdempotencyKey } from "./idempotency.js";
import { ensureWithinLimits, lockOrganization } from "./organization-limits.js";
import type { OrganizationLimits } from "./quota.js";
import { planColumn, type ReservedAddress, type StoredPlan } from "./stored-plan.js";

/** The build's task name, as the real API names it. */
export const BUILD_TASK_NAME = "Build virtual machine";

export interface Acceptance {
  organizationId: string;
  plan: BuildPlan;
  /** Normalised spec XML, before the hostname is final (it is re-rendered if a generated one changes). */
  renderSpecXml: (hostname: string) => string;
  submittedSpec: string;
  annotations: KeyValue[];
  fqdnSuffix: string;
  /** The configured limits of organizations that have none of their own. */
  defaultLimits: OrganizationLimits;
  /** Record the outcome under this key, so a retry of the request gets it again. */
  idempotency?: IdempotencyKey;
}

export interface AcceptedBuild {
  buildId: string;
  taskId: string;
  virtualMachineId: string;
  hostname: string;
  /** Addresses reserved, interface by interface, in the order of the spec. */
  addresses: ReservedAddress[];
  annotations: KeyValue[];
}

/** `idempotency_keys.outcome_json` of a build request. */
export const acceptedBuildColumn = jsonColumn<AcceptedBuild>(
  "idempotency_keys.outcome_json",
  (value): value is AcceptedBuild =>
    isObject(value) &&
    typeof value.buildId === "string" &&
    typeof value.taskId === "string" &&
    typeof value.hostname === "string" &&
    Array.isArray(value.annotations),
);

/** A plan that cannot be reserved (address pool empty, hostname taken, address taken meanwhile). */
export class ReservationFailed extends Error {
  constructor(readonly problems: PlanProblem[]) {
    super(problems.map((p) => p.message).join("; "));
  }
}

const HOSTNAME_ATTEMPTS = 20;

/**
 * A backup policy of a disk or of a whole VM. Both owner columns are always given, so
 * every policy row is one compiled statement (insertRow compiles per list of columns).
 */
function backupPolicyRow(
  owner: { diskId?: string; vmId?: string },
  policy: PlannedBackupPolicy,
  now: number,
): NewRow<"disk_backup_policies"> {
  return {
    id: newId("backupPolicy"),
    virtual_machine_id: owner.vmId ?? null,
    disk_id: owner.diskId ?? null,
    retention: policy.retention,
    schedule_interval: policy.interval,
    schedule_frequency: policy.frequency,
    schedule_time: policy.time,
    created_at: now,
  };
}

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
export async function freshMacAddress(trx: Transaction<Database>): Promise<string> {
  for (;;) {
    const mac = macAddress();
    if ((await interfaceWithMac(trx, mac)).length === 0) return mac;
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
 *
 * With an idempotency key, a request that raced another with the same key (both
 * checked before either committed) gets the outcome the other recorded.
 */
export async function acceptBuild(
  commits: GroupCommit,
  db: Kysely<Database>,
  acceptance: Acceptance,
  generateHostname: HostnameGenerator,
): Promise<{ build: AcceptedBuild; replayed: boolean }> {
  try {
    // The group takes its organizations' locks first, in order; a deadlock PostgreSQL
    // still breaks (over locks taken in other orders) fails a unit, which runs again.
    const organizationId = acceptance.plan.organizationId;
    const build = await retryingConflicts(() =>
      commits.run((trx) => reserve(trx, acceptance, generateHostname), {
        key: organizationId,
        take: (trx) => lockOrganization(trx, organizationId),
      }),
    );
    return { build, replayed: false };
  } catch (error) {
    const key = acceptance.idempotency;
    if (key && isUniqueViolation(error)) {
      const recorded = await recordedOutcome(db, acceptedBuildColumn, key);
      if (recorded) return { build: recorded, replayed: true };
    }
    throw error;
  }
}

/** The build an earlier request with this key accepted, if any (IdempotencyKeyReused for another request). */
export function acceptedEarlier(
  db: Kysely<Database>,
  key: IdempotencyKey,
): Promise<AcceptedBuild | undefined> {
  return recordedOutcome(db, acceptedBuildColumn, key);
}

/** What acceptBuild would reserve now (addresses, hostname), in a transaction that is rolled back. */
export async function previewBuild(
  db: Kysely<Database>,
  acceptance: Acceptance,
  generateHostname: HostnameGenerator,
): Promise<AcceptedBuild> {
  let result: AcceptedBuild | undefined;
  try {
    await db.transaction().execute(async (trx) => {
      result = await reserve(trx, acceptance, generateHostname);
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
  acceptance: Acceptance,
  generateHostname: HostnameGenerator,
): Promise<AcceptedBuild> {
  const { plan } = acceptance;
  const now = Math.floor(Date.now() / 1000);
  const problems: PlanProblem[] = [];

  // First, so that every count and write after it is this organization's alone (in a
  // group commit the group holds it already; a preview takes it here).
  await lockOrganization(trx, plan.organizationId);
  await ensureWithinLimits(
    trx,
    { organizationId: plan.organizationId, defaults: acceptance.defaultLimits },
    {
      virtual_machines: 1,
      virtual_machine_memory: plan.memoryInGb,
      disk_space: plan.disks.reduce((sum, disk) => sum + disk.sizeInGb, 0),
    },
  );

  // Hostname: unique among the organization's live VMs. A generated one is drawn again.
  let hostname = plan.hostname;
  for (let attempt = 0; ; attempt++) {
    const [taken] = await liveVirtualMachineNamed(trx, plan.organizationId, hostname);
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
  await insertRow(trx, "virtual_machines", {
    id: vmId,
    organization_id: plan.organizationId,
    name: plan.hostnameGenerated && plan.name === plan.hostname ? hostname : plan.name,
    hostname,
    fqdn,
    description: plan.description,
    state: "stopped",
    zone_id: plan.zoneId,
    package_id: plan.packageId,
    group_id: plan.groupId,
    iso_id: plan.isoId,
    disk_template_version_id: plan.template.versionId,
    memory_in_gb: plan.memoryInGb,
    cpu_cores: plan.cpuCores,
    created_at: now,
  });

  // Interfaces and their addresses.
  const addresses: ReservedAddress[] = [];
  for (const [position, nic] of plan.interfaces.entries()) {
    const networkInterfaceId = newId("networkInterface");
    await insertRow(trx, "network_interfaces", {
      id: networkInterfaceId,
      virtual_machine_id: vmId,
      position: position + 1,
      network_id: nic.networkId,
      virtual_network_id: nic.virtualNetworkId,
      speed_profile_id: nic.speedProfileId,
      mac_address: await freshMacAddress(trx),
      created_at: now,
    });
    for (const [index, allocation] of nic.allocations.entries()) {
      const path = `/VirtualMachineSpec/NetworkInterfaces/NetworkInterface[${position + 1}]/IPAddressAllocation[${index + 1}]`;
      let row: Row<"ip_addresses"> | undefined;
      if (allocation.kind === "new") {
        try {
          row = await allocateAddress(trx, {
            networkId: nic.networkId!,
            version: allocation.version,
            subnetId: allocation.subnetId,
            organizationId: plan.organizationId,
            allocationType: "VirtualMachine",
            allocationId: vmId,
            networkInterfaceId,
            releaseWithVm: true,
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
          .set({
            allocation_type: "VirtualMachine",
            allocation_id: vmId,
            network_interface_id: networkInterfaceId,
            reverse_dns: fqdn,
          })
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
    await insertRow(trx, "disks", {
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
      state: "pending",
      created_at: now,
    });
    for (const policy of disk.backupPolicies)
      await insertRow(trx, "disk_backup_policies", backupPolicyRow({ diskId }, policy, now));
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
  for (const policy of plan.backupPolicies)
    await insertRow(trx, "disk_backup_policies", backupPolicyRow({ vmId }, policy, now));

  // Tags, created on first use.
  for (const [index, name] of plan.tags.entries()) {
    let [tag] = await tagNamed(trx, plan.organizationId, name);
    if (!tag) {
      tag = { id: newId("tag") };
      await insertRow(trx, "tags", {
        id: tag.id,
        organization_id: plan.organizationId,
        name,
        color: "light_blue",
        created_at: now,
      });
    }
    await insertRow(trx, "virtual_machine_tags", {
      virtual_machine_id: vmId,
      tag_id: tag.id,
      position: index + 1,
    });
  }

  await insertRow(trx, "tasks", {
    id: taskId,
    organization_id: plan.organizationId,
    name: BUILD_TASK_NAME,
    status: "pending",
    object_type: "VirtualMachineBuild",
    object_id: buildId,
    created_at: now,
  });
  const storedPlan: StoredPlan = { ...plan, hostname, addresses };
  await insertRow(trx, "builds", {
    id: buildId,
    organization_id: plan.organizationId,
    virtual_machine_id: vmId,
    task_id: taskId,
    state: "pending",
    submitted_spec: acceptance.submittedSpec,
    spec_xml: acceptance.renderSpecXml(hostname),
    plan_json: planColumn.encode(storedPlan),
    created_at: now,
    updated_at: now,
  });
  for (const [index, annotation] of acceptance.annotations.entries()) {
    for (const objectType of ["VirtualMachineBuild", "VirtualMachine"]) {
      await insertRow(trx, "annotations", {
        object_type: objectType,
        object_id: objectType === "VirtualMachine" ? vmId : buildId,
        position: index + 1,
        key: annotation.key,
        value: annotation.value,
      });
    }
  }
  const result: AcceptedBuild = {
    buildId,
    taskId,
    virtualMachineId: vmId,
    hostname,
    addresses,
    annotations: acceptance.annotations,
  };
  if (acceptance.idempotency) await recordOutcome(trx, acceptedBuildColumn, acceptance.idempotency, result);
  return result;
}
