/** Validates response bodies against the official Katapult Core OpenAPI document (shared/reference). */
import { readFileSync } from "node:fs";
import { Ajv, type ValidateFunction } from "ajv";

export const OPENAPI_PATH = new URL("../../../shared/reference/katapult-core-openapi.json", import.meta.url)
  .pathname;
export const openapi = JSON.parse(readFileSync(OPENAPI_PATH, "utf8")) as {
  paths: Record<
    string,
    Record<string, { security?: Record<string, string[]>[]; responses: Record<string, unknown> }>
  >;
  components: {
    responses: Record<
      string,
      {
        description: string;
        content?: Record<string, { schema: { properties?: { code?: { $ref?: string } } } }>;
      }
    >;
    schemas: Record<string, { enum?: string[] }>;
  };
};

/** OpenAPI 3.0's `nullable` as JSON Schema: `type: [T, "null"]`, or `anyOf` with null when there is no type. */
function jsonSchemaOf(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(jsonSchemaOf);
  if (!node || typeof node !== "object") return node;
  const { nullable, ...rest } = node as Record<string, unknown>;
  const converted = Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, jsonSchemaOf(v)]));
  if (nullable !== true) return converted;
  if (typeof converted.type === "string") return { ...converted, type: [converted.type, "null"] };
  return { anyOf: [{ type: "null" }, converted] };
}

const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
ajv.addSchema(jsonSchemaOf(openapi) as object, "openapi");
const cache = new Map<string, ValidateFunction>();

const pointer = (...parts: string[]) =>
  parts.map((p) => p.replace(/~/g, "~0").replace(/\//g, "~1")).join("/");

/** Asserts `body` matches the schema's response for this operation and status; returns the errors, if any. */
export function schemaErrors(
  method: string,
  schemaPath: string,
  status: number,
  body: unknown,
): string[] | null {
  const operation = openapi.paths[schemaPath]?.[method.toLowerCase()];
  if (!operation) throw new Error(`the schema has no ${method} ${schemaPath}`);
  if (!operation.responses[String(status)])
    throw new Error(`the schema has no ${status} for ${method} ${schemaPath}`);
  const ref = `openapi#/${pointer("paths", schemaPath, method.toLowerCase(), "responses", String(status), "content", "application/json", "schema")}`;
  let validate = cache.get(ref);
  if (!validate) {
    validate = ajv.compile({ $ref: ref });
    cache.set(ref, validate);
  }
  return validate(body) ? null : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
}

/** Scopes the schema lists for an operation (API-token form). */
export function schemaScopes(method: string, schemaPath: string): string[] {
  const operation = openapi.paths[schemaPath]?.[method.toLowerCase()];
  if (!operation) throw new Error(`the schema has no ${method} ${schemaPath}`);
  return (operation.security ?? []).flatMap((s) => s.Authenticator ?? []);
}

/** Error code -> description, from every single-error response of the schema. */
export function schemaErrorDescriptions(): Map<string, string> {
  const out = new Map<string, string>();
  for (const response of Object.values(openapi.components.responses)) {
    const ref = response.content?.["application/json"]?.schema?.properties?.code?.$ref;
    if (!ref) continue;
    const values = openapi.components.schemas[ref.split("/").pop()!]?.enum;
    if (values?.length === 1) out.set(values[0]!, response.description);
  }
  return out;
}
