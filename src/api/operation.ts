import type { FastifyReply, FastifyRequest } from "fastify";
import type { Kysely } from "kysely";
import type { Identity } from "../auth/identity.js";
import type { RateLimits } from "../auth/rate-limit.js";
import type { SnapshotLoader } from "../catalog/snapshot.js";
import type { OneAtATime } from "../lifecycle/idempotency.js";
import type { OrganizationLimits } from "../lifecycle/quota.js";
import type { HotQueries } from "./hot-queries.js";
import type { RenderedBodies } from "./rendered-bodies.js";
import type { Database, GroupCommit, Role, Row } from "../store/index.js";
import type { ArgumentBag } from "./arguments.js";

/** What a handler needs from the server besides its request. */
export interface Services {
  db: Kysely<Database>;
  /** Where builds are accepted: their writes are committed together, turn by turn. */
  groupCommit: GroupCommit;
  /** Domain of VM FQDNs under each organization (`<hostname>.<sub_domain>.<baseDomain>`). */
  baseDomain: string;
  snapshots: SnapshotLoader;
  queries: HotQueries;
  renderedBodies: RenderedBodies;
  /** Requests with the same Idempotency-Key run one at a time in this process. */
  idempotentRequests: OneAtATime;
  now: () => number;
  /** Limits of organizations that have none of their own (the configuration's). */
  organizationLimits: OrganizationLimits;
  /** How long a deleted object stays in the trash (seconds). */
  trashKeepSeconds: number;
  /** Tells an in-process worker there is new work (builds, power actions). */
  notifyWork?: () => void;
  /** The serial console of a VM, when this process runs the host agent for it. */
  consoles?: (vmId: string) => Promise<string> | undefined;
  /** Aborted when the server starts draining: long-lived responses (event streams) end. */
  closing: AbortSignal;
}

export type Access = "read" | "write";

/** One API operation: where it lives, what it needs, and what it does. */
export interface Operation {
  /** Stable name (used by capabilities tokens to narrow a grant), e.g. `build_from_spec`. */
  name: string;
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** The schema's path with its placeholder words, e.g. `/organizations/organization/virtual_machines`. */
  path: string;
  /** Scopes that allow it (any one is enough); empty = any valid identity. */
  scopes: readonly string[];
  /** What the identity's role in the organization must allow. */
  access: Access;
  /** The rate-limit bucket it counts against. */
  bucket: keyof RateLimits;
  /** A top-level argument holding a document its own reader checks byte by byte (a spec). */
  documentArgument?: string;
  handle(context: OperationContext): Promise<OperationResult>;
}

export interface OperationResult {
  status?: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface ResolvedOrganization extends Row<"organizations"> {
  role: Role;
}

export interface OperationContext {
  services: Services;
  identity: Identity;
  args: ArgumentBag;
  /** Path placeholder segments by name (`organization` -> `_`). */
  segments: Record<string, string>;
  request: FastifyRequest;
  reply: FastifyReply;
  operation: Operation;
}

/** Placeholder words of the schema's paths: a segment equal to one of these is a path parameter. */
export const PLACEHOLDERS = new Set([
  "organization",
  "virtual_machine",
  "virtual_machine_build",
  "task",
  "data_center",
  "zone",
  "disk_template",
  "disk_template_version",
  "virtual_machine_package",
  "network",
  "ip_address",
  "ssh_key",
  "disk",
  "virtual_network",
  "trash_object",
  "virtual_machine_network_interface",
  "address_version",
  "virtual_machine_group",
  "tag",
  "disk_backup_policy",
]);

/** `/organizations/organization/x` -> `/organizations/:organization/x` for the router. */
export function routePath(schemaPath: string): string {
  return schemaPath
    .split("/")
    .map((segment, index, all) =>
      PLACEHOLDERS.has(segment) && index > 0 && all[index - 1] !== "" ? `:${segment}` : segment,
    )
    .join("/");
}
