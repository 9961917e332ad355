import type { Operation } from "../operation.js";
import type { OpenApiDocument, OpenApiOperation } from "./katapult-document.js";
import {
  IDEMPOTENCY_KEY_PARAMETER,
  IDEMPOTENT_OPERATIONS,
  OWN_OPERATIONS,
  SERVICE_PATHS,
  TREBUCHET_TAG_NAME,
} from "./own-operations.js";

export interface DocumentOptions {
  /** Trebuchet's version, for info.version. */
  version: string;
}

/** An operation the route table serves with no definition in Katapult's document or ours. */
export class UndocumentedOperation extends Error {}

/**
 * The OpenAPI document of exactly the operations in the route table: Katapult's own
 * definition of each (unchanged), Trebuchet's for its own operations, the
 * Idempotency-Key header where it is honoured, the service endpoints outside
 * /core/v1, and only the components, tags and tag groups those reach. Pure.
 */
export function openApiDocument(
  katapult: OpenApiDocument,
  operations: readonly Operation[],
  options: DocumentOptions,
): OpenApiDocument {
  const paths: OpenApiDocument["paths"] = {};
  for (const operation of operations) {
    const method = operation.method.toLowerCase();
    const theirs = katapult.paths[operation.path]?.[method];
    const definition = theirs ?? OWN_OPERATIONS[operation.name];
    if (!definition)
      throw new UndocumentedOperation(
        `${operation.method} ${operation.path} (${operation.name}) has no definition`,
      );
    (paths[operation.path] ??= {})[method] = IDEMPOTENT_OPERATIONS.has(operation.name)
      ? withIdempotencyKey(definition)
      : definition;
  }
  for (const [path, item] of Object.entries(SERVICE_PATHS))
    paths[path] = item as unknown as Record<string, OpenApiOperation>;

  const components = reachableComponents(katapult.components, paths);
  const usedTags = new Set(
    Object.values(paths).flatMap((item) =>
      Object.values(item).flatMap((op) =>
        typeof op === "object" && op && "tags" in op ? (op.tags ?? []) : [],
      ),
    ),
  );
  const tags = [
    ...(katapult.tags ?? []).filter((tag) => usedTags.has(tag.name)),
    { name: TREBUCHET_TAG_NAME, description: "Trebuchet's own operations, beyond Katapult's API" },
  ];
  const tagGroups = [
    ...(katapult["x-tagGroups"] ?? [])
      .map((group) => ({ ...group, tags: group.tags.filter((tag) => usedTags.has(tag)) }))
      .filter((group) => group.tags.length > 0),
    { name: TREBUCHET_TAG_NAME, tags: [TREBUCHET_TAG_NAME] },
  ];
  return {
    openapi: katapult.openapi,
    info: {
      title: "Trebuchet: the Katapult Core API, self-hosted",
      version: options.version,
      "x-katapult-version": katapult.info["x-katapult-version"],
      description:
        "The operations this Trebuchet server serves: Katapult's definitions for Katapult's operations (Katapult Core API " +
        String(katapult.info["x-katapult-version"]) +
        "), and Trebuchet's own (tag Trebuchet). Paths name each object by a placeholder word (`organization`); send `_` there and the lookup as arguments (`organization[sub_domain]=acme`), as Katapult's clients do.",
    },
    servers: [{ url: "/core/v1", description: "this server" }],
    paths,
    components,
    security: katapult.security ?? [],
    tags,
    "x-tagGroups": tagGroups,
  };
}

function withIdempotencyKey(operation: OpenApiOperation): OpenApiOperation {
  return { ...operation, parameters: [...(operation.parameters ?? []), IDEMPOTENCY_KEY_PARAMETER] };
}

/**
 * The components the paths reach through `$ref`s, followed transitively; security
 * schemes are kept whole. Katapult's OAuth2 scheme names Katapult's identity service:
 * here the issuer is the operator's, so it is described instead.
 */
function reachableComponents(
  all: OpenApiDocument["components"],
  paths: OpenApiDocument["paths"],
): OpenApiDocument["components"] {
  const kept: OpenApiDocument["components"] = {};
  const pending: unknown[] = [paths];
  while (pending.length > 0) {
    const value = pending.pop();
    if (Array.isArray(value)) {
      pending.push(...value);
      continue;
    }
    if (typeof value !== "object" || value === null) continue;
    for (const [key, inner] of Object.entries(value)) {
      if (key === "$ref" && typeof inner === "string") {
        const match = /^#\/components\/([^/]+)\/(.+)$/.exec(inner);
        if (!match) continue;
        const [, section, name] = match as unknown as [string, string, string];
        const target = all[section]?.[name];
        if (target === undefined || kept[section]?.[name] !== undefined) continue;
        (kept[section] ??= {})[name] = target;
        pending.push(target);
      } else pending.push(inner);
    }
  }
  const sorted: OpenApiDocument["components"] = {};
  for (const section of Object.keys(kept).sort())
    sorted[section] = Object.fromEntries(
      Object.entries(kept[section]!).sort(([a], [b]) => a.localeCompare(b)),
    );
  sorted.securitySchemes = {
    ...all.securitySchemes,
    OAuth2: {
      type: "http",
      scheme: "bearer",
      bearerFormat: "JWT",
      description:
        "OAuth2 access tokens (JWTs) from the issuer the operator configures (oauth.issuer, oauth.audience); their scopes carry the prefix oauth.scope_prefix (api.katapult.io/core/v1/ by default).",
    },
  };
  return sorted;
}
