import {
  createBackupPolicy,
  deleteBackupPolicy,
  nextInvocation,
  SCHEDULE_INTERVALS,
  scheduleBackupPolicyDeletion,
  scheduleOf,
  updateBackupPolicy,
  type BackupPolicyFields,
  type BackupSchedule,
} from "../../lifecycle/index.js";
import { ApiError, missingArgument } from "../../errors.js";
import type { Database, Row } from "../../store/index.js";
import type { Kysely } from "kysely";
import {
  booleanArgument,
  enumArgument,
  integerArgument,
  objectArgument,
  pagination,
  paginationObject,
  requireLookup,
  type ArgumentBag,
} from "../arguments.js";
import { findVirtualMachine } from "../lookups.js";
import type { Operation, OperationContext } from "../operation.js";
import { checkOwnership, resolveOrganization } from "../resolve.js";
import * as present from "../presenters.js";
import { diskView, virtualMachineView } from "../views.js";
import { findDisk } from "./disks.js";

/**
 * Disk backup policies of VMs and disks: stored, edited and shown with their next run.
 * No backups are taken yet (see the README).
 */

const READ_SCOPES = ["disk_backup_policies", "disk_backup_policies:read"];
const WRITE_SCOPES = ["disk_backup_policies"];
const MAX_RETENTION = 1000;

type Policy = Row<"disk_backup_policies">;

function bounded(args: ArgumentBag, name: string, path: string[], min: number, max: number) {
  const value = integerArgument(args, name, path);
  if (value !== undefined && (value < min || value > max))
    throw new ApiError("validation_error", { errors: [`${path.join(".")} must be ${min} to ${max}`] });
  return value;
}

/** A policy's `properties` argument; `creating` requires retention and a schedule interval. */
function policyFields(context: OperationContext, creating: true): BackupPolicyFields;
function policyFields(
  context: OperationContext,
  creating: false,
  current: Policy,
): Partial<BackupPolicyFields>;
function policyFields(
  context: OperationContext,
  creating: boolean,
  current?: Policy,
): Partial<BackupPolicyFields> {
  const properties = objectArgument(context.args, "properties");
  if (!properties) throw missingArgument(["properties"]);
  const retention = bounded(properties, "retention", ["properties", "retention"], 1, MAX_RETENTION);
  if (creating && retention === undefined) throw missingArgument(["properties", "retention"]);
  const schedule = objectArgument(properties, "schedule");
  if (creating && !schedule) throw missingArgument(["properties", "schedule"]);
  let parsed: BackupSchedule | undefined;
  if (schedule) {
    const at = (name: string) => ["properties", "schedule", name];
    const base = current ? scheduleOf(current) : undefined;
    const interval = enumArgument(schedule, "interval", SCHEDULE_INTERVALS) ?? base?.interval;
    if (!interval) throw missingArgument(at("interval"));
    parsed = {
      interval,
      frequency: bounded(schedule, "frequency", at("frequency"), 1, 1000) ?? base?.frequency ?? 1,
      time: bounded(schedule, "time", at("time"), 0, 23) ?? base?.time ?? 0,
      minute: bounded(schedule, "minute", at("minute"), 0, 59) ?? base?.minute ?? 0,
    };
  }
  return { ...(retention !== undefined ? { retention } : {}), ...(parsed ? { schedule: parsed } : {}) };
}

/** The schema's whole VirtualMachine: as read, and its hypervisor, which Trebuchet does not expose. */
async function wholeVirtualMachine(db: Kysely<Database>, vmId: string, baseDomain: string) {
  const vm = await db
    .selectFrom("virtual_machines")
    .selectAll()
    .where("id", "=", vmId)
    .executeTakeFirstOrThrow();
  return { ...(await virtualMachineView(db, vm, baseDomain)), hypervisor: null };
}

/** The schema's whole Disk: as read, with its data center's country and its VM whole. */
async function wholeDisk(db: Kysely<Database>, diskId: string, baseDomain: string) {
  const disk = await db.selectFrom("disks").selectAll().where("id", "=", diskId).executeTakeFirstOrThrow();
  const view = await diskView(db, disk);
  const dc = await db
    .selectFrom("data_centers")
    .selectAll()
    .where("id", "=", disk.data_center_id)
    .executeTakeFirstOrThrow();
  return {
    ...view,
    data_center: present.dataCenter(dc),
    virtual_machine_disk:
      view.virtual_machine_disk && disk.virtual_machine_id
        ? {
            ...view.virtual_machine_disk,
            virtual_machine: await wholeVirtualMachine(db, disk.virtual_machine_id, baseDomain),
            disk: { id: disk.id, name: disk.name },
          }
        : null,
  };
}

async function policyView(db: Kysely<Database>, policy: Policy, baseDomain: string) {
  const target = policy.virtual_machine_id
    ? await wholeVirtualMachine(db, policy.virtual_machine_id, baseDomain)
    : policy.disk_id
      ? await wholeDisk(db, policy.disk_id, baseDomain)
      : null;
  const schedule = scheduleOf(policy);
  return {
    id: policy.id,
    retention: policy.retention,
    // Nothing is backed up yet.
    total_size: 0,
    target: { target },
    schedule: {
      ...schedule,
      next_invocation_at: nextInvocation(schedule, Number(policy.created_at), Math.floor(Date.now() / 1000)),
    },
    auto_move_to_trash_at: policy.delete_at === null ? null : Number(policy.delete_at),
  };
}

/** The policy a request names, if it belongs to a VM or disk the identity reaches. */
async function findPolicy(context: OperationContext): Promise<Policy> {
  const { db } = context.services;
  const lookup = requireLookup(
    context.args,
    "disk_backup_policy",
    ["id"] as const,
    context.segments.disk_backup_policy,
  );
  const policy = await db
    .selectFrom("disk_backup_policies")
    .selectAll()
    .where("id", "=", lookup.value)
    .executeTakeFirst();
  const owner = policy?.virtual_machine_id
    ? await db
        .selectFrom("virtual_machines")
        .select("organization_id")
        .where("id", "=", policy.virtual_machine_id)
        .where("purged_at", "is", null)
        .executeTakeFirst()
    : policy?.disk_id
      ? await db
          .selectFrom("disks")
          .select("organization_id")
          .where("id", "=", policy.disk_id)
          .where("state", "!=", "deleted")
          .executeTakeFirst()
      : undefined;
  if (!policy || !owner) throw new ApiError("disk_backup_policy_not_found");
  await checkOwnership(context, owner.organization_id, "disk_backup_policy_not_found");
  return policy;
}

async function listed(context: OperationContext, policies: Policy[]) {
  const page = pagination(context.args);
  const shown = policies.slice((page.page - 1) * page.perPage, page.page * page.perPage);
  return {
    body: {
      pagination: paginationObject(page, policies.length),
      disk_backup_policies: await Promise.all(
        shown.map((p) => policyView(context.services.db, p, context.services.baseDomain)),
      ),
    },
  };
}

async function freshAnswer(context: OperationContext, policyId: string) {
  const { db, baseDomain } = context.services;
  const policy = await db
    .selectFrom("disk_backup_policies")
    .selectAll()
    .where("id", "=", policyId)
    .executeTakeFirstOrThrow();
  return { body: { disk_backup_policy: await policyView(db, policy, baseDomain) } };
}

export const backupPolicyOperations: Operation[] = [
  {
    name: "list_disk_backup_policies",
    method: "GET",
    path: "/organizations/organization/disk_backup_policies",
    scopes: READ_SCOPES,
    access: "read",
    bucket: "read",
    async handle(context) {
      const { db } = context.services;
      const org = await resolveOrganization(context);
      const ofVms = await db
        .selectFrom("disk_backup_policies")
        .innerJoin("virtual_machines", "virtual_machines.id", "disk_backup_policies.virtual_machine_id")
        .selectAll("disk_backup_policies")
        .where("virtual_machines.organization_id", "=", org.id)
        .where("virtual_machines.purged_at", "is", null)
        .execute();
      const ofDisks = await db
        .selectFrom("disk_backup_policies")
        .innerJoin("disks", "disks.id", "disk_backup_policies.disk_id")
        .selectAll("disk_backup_policies")
        .where("disks.organization_id", "=", org.id)
        .where("disks.state", "!=", "deleted")
        .execute();
      const all = [...ofVms, ...ofDisks].sort(
        (a, b) => Number(a.created_at) - Number(b.created_at) || a.id.localeCompare(b.id),
      );
      return listed(context, all);
    },
  },
  {
    name: "list_virtual_machine_disk_backup_policies",
    method: "GET",
    path: "/virtual_machines/virtual_machine/disk_backup_policies",
    scopes: READ_SCOPES,
    access: "read",
    bucket: "read",
    async handle(context) {
      const { db } = context.services;
      const vm = await findVirtualMachine(context);
      const includeDisks = booleanArgument(context.args, "include_disks") ?? false;
      const diskIds = includeDisks
        ? (
            await db
              .selectFrom("disks")
              .select("id")
              .where("virtual_machine_id", "=", vm.id)
              .where("state", "!=", "deleted")
              .execute()
          ).map((d) => d.id)
        : [];
      const policies = await db
        .selectFrom("disk_backup_policies")
        .selectAll()
        .where((eb) =>
          diskIds.length > 0
            ? eb.or([eb("virtual_machine_id", "=", vm.id), eb("disk_id", "in", diskIds)])
            : eb("virtual_machine_id", "=", vm.id),
        )
        .orderBy("created_at")
        .orderBy("id")
        .execute();
      return listed(context, policies);
    },
  },
  {
    name: "create_virtual_machine_disk_backup_policy",
    method: "POST",
    path: "/virtual_machines/virtual_machine/disk_backup_policies",
    scopes: WRITE_SCOPES,
    access: "write",
    bucket: "write",
    async handle(context) {
      const vm = await findVirtualMachine(context);
      const policy = await createBackupPolicy(
        context.services.db,
        { vmId: vm.id },
        policyFields(context, true),
      );
      return freshAnswer(context, policy.id);
    },
  },
  {
    name: "list_disk_disk_backup_policies",
    method: "GET",
    path: "/disks/disk/disk_backup_policies",
    scopes: READ_SCOPES,
    access: "read",
    bucket: "read",
    async handle(context) {
      const disk = await findDisk(context);
      const policies = await context.services.db
        .selectFrom("disk_backup_policies")
        .selectAll()
        .where("disk_id", "=", disk.id)
        .orderBy("created_at")
        .orderBy("id")
        .execute();
      return listed(context, policies);
    },
  },
  {
    name: "create_disk_disk_backup_policy",
    method: "POST",
    path: "/disks/disk/disk_backup_policies",
    scopes: WRITE_SCOPES,
    access: "write",
    bucket: "write",
    async handle(context) {
      const disk = await findDisk(context);
      const policy = await createBackupPolicy(
        context.services.db,
        { diskId: disk.id },
        policyFields(context, true),
      );
      return freshAnswer(context, policy.id);
    },
  },
  {
    name: "get_disk_backup_policy",
    method: "GET",
    path: "/disk_backup_policies/disk_backup_policy",
    scopes: READ_SCOPES,
    access: "read",
    bucket: "read",
    async handle(context) {
      return freshAnswer(context, (await findPolicy(context)).id);
    },
  },
  {
    name: "update_disk_backup_policy",
    method: "PATCH",
    path: "/disk_backup_policies/disk_backup_policy",
    scopes: WRITE_SCOPES,
    access: "write",
    bucket: "write",
    async handle(context) {
      const policy = await findPolicy(context);
      await updateBackupPolicy(context.services.db, policy.id, policyFields(context, false, policy));
      return freshAnswer(context, policy.id);
    },
  },
  {
    name: "delete_disk_backup_policy",
    method: "DELETE",
    path: "/disk_backup_policies/disk_backup_policy",
    scopes: WRITE_SCOPES,
    access: "write",
    bucket: "write",
    async handle(context) {
      const policy = await findPolicy(context);
      const view = await policyView(context.services.db, policy, context.services.baseDomain);
      await deleteBackupPolicy(context.services.db, policy.id);
      return { body: { disk_backup_policy: view } };
    },
  },
  {
    name: "schedule_disk_backup_policy_deletion",
    method: "DELETE",
    path: "/disk_backup_policies/disk_backup_policy/schedule",
    scopes: WRITE_SCOPES,
    access: "write",
    bucket: "write",
    async handle(context) {
      const policy = await findPolicy(context);
      const at = integerArgument(context.args, "timestamp");
      if (at === undefined) throw missingArgument(["timestamp"]);
      if (at < 0) throw new ApiError("validation_error", { errors: ["timestamp must be a time in seconds"] });
      await scheduleBackupPolicyDeletion(context.services.db, policy.id, at);
      return freshAnswer(context, policy.id);
    },
  },
];
