import type { Kysely } from "kysely";
import type { BuildPlan } from "../planner/plan.js";
import { isObject, jsonColumn, type Database } from "../store/index.js";

/** An address a build holds, as recorded with its plan. */
export interface ReservedAddress {
  /** The interface's 0-based position. */
  interface: number;
  id: string;
  address: string;
  version: 4 | 6;
  networkId: string;
  /** `new`: drawn from the pool for this VM (returned on release); `existing`: the organization's own. */
  kind: "new" | "existing";
}

/** `builds.plan_json`: the plan resolved at acceptance, with the hostname and addresses it got. */
export interface StoredPlan extends BuildPlan {
  addresses?: ReservedAddress[];
}

export const planColumn = jsonColumn<StoredPlan>(
  "builds.plan_json",
  (value): value is StoredPlan =>
    isObject(value) &&
    typeof value.organizationId === "string" &&
    typeof value.hostname === "string" &&
    // Plans recorded before addresses were kept with them have none.
    (value.addresses === undefined || Array.isArray(value.addresses)) &&
    Array.isArray(value.interfaces) &&
    Array.isArray(value.disks),
);

/** The plan of a VM's latest build (the one that made it), if it has one. */
export async function storedPlanOf(db: Kysely<Database>, vmId: string): Promise<StoredPlan | undefined> {
  const build = await db
    .selectFrom("builds")
    .select("plan_json")
    .where("virtual_machine_id", "=", vmId)
    .orderBy("created_at", "desc")
    .executeTakeFirst();
  return build ? planColumn.decode(build.plan_json) : undefined;
}
