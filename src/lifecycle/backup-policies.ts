import type { Kysely } from "kysely";
import { insertRow, newId, type Database, type Row } from "../store/index.js";
import { now } from "./leases.js";

/**
 * Disk backup policies of a VM (all its disks) or of one disk: stored and shown with
 * their schedule's next run. Trebuchet takes no backups yet: a policy records what the
 * organization asked for, nothing runs it.
 */

export const SCHEDULE_INTERVALS = ["hourly", "daily", "weekly", "monthly"] as const;
export type ScheduleInterval = (typeof SCHEDULE_INTERVALS)[number];

export interface BackupSchedule {
  interval: ScheduleInterval;
  /** Every how many intervals. */
  frequency: number;
  /** Hour of the day (UTC) for daily and longer intervals. */
  time: number;
  /** Minute of the hour. */
  minute: number;
}

export interface BackupPolicyFields {
  retention: number;
  schedule: BackupSchedule;
}

const HOUR = 3600;
const DAY = 24 * HOUR;

/**
 * The first run of a schedule after `at` (seconds), counting from `anchor` (when the
 * policy was made): hourly at its minute, daily and weekly at its time and minute,
 * monthly on the anchor's day of the month (or the month's last day). Pure.
 */
export function nextInvocation(schedule: BackupSchedule, anchor: number, at: number): number {
  const frequency = Math.max(1, schedule.frequency);
  const start = new Date(anchor * 1000);
  if (schedule.interval === "monthly") {
    const day = start.getUTCDate();
    for (let months = 0; ; months += frequency) {
      const year = start.getUTCFullYear();
      const month = start.getUTCMonth() + months;
      const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
      const run = Date.UTC(year, month, Math.min(day, lastDay), schedule.time, schedule.minute) / 1000;
      if (run > at) return run;
    }
  }
  let base: number;
  let step: number;
  if (schedule.interval === "hourly") {
    base = Math.floor(anchor / HOUR) * HOUR + schedule.minute * 60;
    step = frequency * HOUR;
  } else {
    base = Math.floor(anchor / DAY) * DAY + schedule.time * HOUR + schedule.minute * 60;
    step = frequency * (schedule.interval === "weekly" ? 7 : 1) * DAY;
  }
  if (base > at) return base;
  return base + (Math.floor((at - base) / step) + 1) * step;
}

/** A stored policy's schedule; rows made from a spec may lack parts, which default to the first of each. */
export function scheduleOf(policy: Row<"disk_backup_policies">): BackupSchedule {
  const interval = SCHEDULE_INTERVALS.find((i) => i === policy.schedule_interval) ?? "daily";
  return {
    interval,
    frequency: policy.schedule_frequency ?? 1,
    time: policy.schedule_time ?? 0,
    minute: policy.schedule_minute ?? 0,
  };
}

export async function createBackupPolicy(
  db: Kysely<Database>,
  owner: { vmId: string } | { diskId: string },
  fields: BackupPolicyFields,
): Promise<Row<"disk_backup_policies">> {
  const row: Row<"disk_backup_policies"> = {
    id: newId("backupPolicy"),
    virtual_machine_id: "vmId" in owner ? owner.vmId : null,
    disk_id: "diskId" in owner ? owner.diskId : null,
    retention: fields.retention,
    schedule_interval: fields.schedule.interval,
    schedule_frequency: fields.schedule.frequency,
    schedule_time: fields.schedule.time,
    schedule_minute: fields.schedule.minute,
    delete_at: null,
    created_at: now(),
  };
  await insertRow(db, "disk_backup_policies", row);
  return row;
}

export async function updateBackupPolicy(
  db: Kysely<Database>,
  policyId: string,
  fields: Partial<BackupPolicyFields>,
): Promise<void> {
  const changes = {
    ...(fields.retention !== undefined ? { retention: fields.retention } : {}),
    ...(fields.schedule
      ? {
          schedule_interval: fields.schedule.interval,
          schedule_frequency: fields.schedule.frequency,
          schedule_time: fields.schedule.time,
          schedule_minute: fields.schedule.minute,
        }
      : {}),
  };
  if (Object.keys(changes).length === 0) return;
  await db.updateTable("disk_backup_policies").set(changes).where("id", "=", policyId).execute();
}

/** Schedules a policy to go at `at` (seconds); housekeeping deletes it then. */
export async function scheduleBackupPolicyDeletion(
  db: Kysely<Database>,
  policyId: string,
  at: number,
): Promise<void> {
  await db.updateTable("disk_backup_policies").set({ delete_at: at }).where("id", "=", policyId).execute();
}

export async function deleteBackupPolicy(db: Kysely<Database>, policyId: string): Promise<void> {
  await db.deleteFrom("disk_backup_policies").where("id", "=", policyId).execute();
}

/** Housekeeping: deletes the policies whose scheduled deletion has come; answers how many. */
export async function deleteDueBackupPolicies(db: Kysely<Database>, at: number): Promise<number> {
  const result = await db
    .deleteFrom("disk_backup_policies")
    .where("delete_at", "is not", null)
    .where("delete_at", "<=", at)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
