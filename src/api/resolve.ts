import { roleIn } from "../auth/authenticate.js";
import { ROLE_ABILITIES } from "../auth/identity.js";
import { ApiError, type ErrorCode } from "../errors.js";
import type { Role } from "../store/index.js";
import { lookupArgument, requireLookup } from "./arguments.js";
import type { Access, OperationContext, ResolvedOrganization } from "./operation.js";

/**
 * Finds the organization a request names (`organization[id|sub_domain]`, else the path
 * segment) and checks, in Apia's order: exists and is reachable by this identity
 * (else 404, never revealing another tenant's organization), state, then permission.
 */
export async function resolveOrganization(
  context: OperationContext,
  options: { required?: boolean; access?: Access } = {},
): Promise<ResolvedOrganization> {
  const lookup = requireLookup(
    context.args,
    "organization",
    ["id", "sub_domain"] as const,
    context.segments.organization,
  );
  return organizationFromLookup(context, lookup, options.access ?? context.operation.access);
}

export async function optionalOrganization(
  context: OperationContext,
): Promise<ResolvedOrganization | undefined> {
  const lookup = lookupArgument(
    context.args,
    "organization",
    ["id", "sub_domain"] as const,
    context.segments.organization,
  );
  return lookup ? organizationFromLookup(context, lookup, "read") : undefined;
}

async function organizationFromLookup(
  context: OperationContext,
  lookup: { key: "id" | "sub_domain"; value: string },
  access: Access,
): Promise<ResolvedOrganization> {
  const { db, queries } = context.services;
  const [org] =
    lookup.key === "id"
      ? await queries.organizationById(lookup.value)
      : await queries.organizationBySubDomain(lookup.value);
  const role = org ? await roleIn(db, context.identity, org.id) : undefined;
  if (!org || !role) throw new ApiError("organization_not_found");
  if (org.state === "suspended") throw new ApiError("organization_suspended");
  if (org.state === "not_activated") throw new ApiError("organization_not_activated");
  checkPermission(role, access, org.sub_domain);
  return { ...org, role };
}

export function checkPermission(role: Role, access: Access, subDomain: string): void {
  if (!ROLE_ABILITIES[role][access]) {
    throw new ApiError("permission_denied", {
      details: `The ${role} role may only read in organization ${subDomain}; this action changes it`,
    });
  }
}

/**
 * Checks that an object found by ID belongs to an organization the identity reaches;
 * otherwise it answers exactly as if the object did not exist.
 */
export async function checkOwnership(
  context: OperationContext,
  organizationId: string | null,
  notFound: ErrorCode,
  access: Access = context.operation.access,
): Promise<Role> {
  const role = organizationId
    ? await roleIn(context.services.db, context.identity, organizationId)
    : undefined;
  if (!role) throw new ApiError(notFound);
  const [org] = await context.services.queries.organizationById(organizationId!);
  if (!org) throw new ApiError(notFound);
  if (org.state === "suspended") throw new ApiError("organization_suspended");
  if (org.state === "not_activated") throw new ApiError("organization_not_activated");
  checkPermission(role, access, org.sub_domain);
  return role;
}
