import { ApiError } from "../errors.js";
import { describeBreach, type LimitCheck, type LimitReached } from "../lifecycle/index.js";
import type { OperationContext } from "./operation.js";

/** Runs a lifecycle change, answering its refusals in Katapult's words (`translate` maps them to ApiErrors). */
export async function inKatapultWords<T>(
  translate: (error: unknown) => unknown,
  change: () => Promise<T>,
): Promise<T> {
  try {
    return await change();
  } catch (error) {
    throw translate(error);
  }
}

/** The limits a change to what this organization holds is checked against. */
export function limitCheck(context: OperationContext, owner: { organization_id: string }): LimitCheck {
  return { organizationId: owner.organization_id, defaults: context.services.organizationLimits };
}

/**
 * A request past an organization's limit, as Katapult answers it (`resource_creation_restricted`,
 * its reasons in `errors`), with each limit, its current use and what was asked for.
 */
export function limitReachedError(error: LimitReached): ApiError {
  return new ApiError("resource_creation_restricted", {
    errors: error.breaches.map(describeBreach),
    limits: error.breaches.map((breach) => ({
      name: breach.limit,
      limit: breach.maximum,
      current: breach.current,
      requested: breach.requested,
      unit: breach.unit,
    })),
  });
}
