import type { OpenApiOperation } from "./katapult-document.js";

/**
 * The definitions of what Trebuchet serves beyond Katapult's document: its own
 * operations, by operation name, and the Idempotency-Key header of the build endpoints.
 * Error answers use Katapult's shared responses.
 */

const ref = (name: string) => ({ $ref: `#/components/responses/${name}` });
const schemaRef = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: unknown) => ({ content: { "application/json": { schema } } });
const security = (scopes: string[]): Record<string, string[]>[] => [
  { OAuth2: scopes.map((scope) => `api.katapult.io/core/v1/${scope}`) },
  { Authenticator: scopes },
];
const COMMON_ERRORS = {
  "400": ref("APIAuthenticator400Response"),
  "403": ref("APIAuthenticator403Response"),
  "429": ref("APIAuthenticator429Response"),
  "503": ref("APIAuthenticator503Response"),
};
const TREBUCHET_TAG = "Trebuchet";

const problem = {
  type: "object",
  properties: {
    line: { type: "integer", description: "1-based line of the spec document" },
    column: { type: "integer", description: "1-based column" },
    path: {
      type: "string",
      description: "element path, e.g. /VirtualMachineSpec/NetworkInterfaces/NetworkInterface[2]",
    },
    code: { type: "string" },
    message: { type: "string" },
  },
  required: ["line", "column", "path", "code", "message"],
};

const vmLookupParameters = [
  { in: "query", name: "virtual_machine[id]", schema: { type: "string" } },
  { in: "query", name: "virtual_machine[fqdn]", schema: { type: "string" } },
];

export const OWN_OPERATIONS: Readonly<Record<string, OpenApiOperation>> = {
  validate_spec: {
    operationId: "post:organization_virtual_machines_validate_spec",
    summary: "Check a virtual machine spec (Trebuchet)",
    description:
      "Takes the body of build_from_spec and answers what a build would do now, writing nothing: the spec's errors and warnings with their line, column and element path, and the plan (data center, zone, resources, template version and options, disks, and each interface with the exact addresses a build would get).\n## Scopes\n- `virtual_machines`\n",
    tags: [TREBUCHET_TAG],
    security: security(["virtual_machines"]),
    requestBody: json({
      properties: { organization: schemaRef("OrganizationLookup"), xml: { type: "string" } },
      required: ["organization", "xml"],
    }),
    responses: {
      "200": {
        description: "The spec's errors and warnings, and the plan when it has no errors",
        ...json({
          type: "object",
          properties: {
            valid: { type: "boolean" },
            errors: { type: "array", items: problem },
            warnings: { type: "array", items: problem },
            plan: {
              type: "object",
              nullable: true,
              description: "what a build would make; null when invalid",
            },
          },
          required: ["valid", "errors", "warnings", "plan"],
        }),
      },
      ...COMMON_ERRORS,
      "404": ref("OrganizationNotFoundResponse"),
    },
  },
  get_virtual_machine_build_events: {
    operationId: "get:virtual_machines_builds_virtual_machine_build_events",
    summary: "Follow a build (Trebuchet)",
    description:
      "Server-Sent Events: `progress` (data: the build's state and failure reason, its task, and the virtual machine once placed) whenever one changes, then `end` (data: the outcome and the failure reason) when the build has finished. The stream closes after `end`.\n## Scopes\n- `virtual_machines`\n- `virtual_machines:read`\n",
    tags: [TREBUCHET_TAG],
    security: security(["virtual_machines", "virtual_machines:read"]),
    parameters: [{ in: "query", name: "virtual_machine_build[id]", schema: { type: "string" } }],
    responses: {
      "200": {
        description: "An event stream",
        content: { "text/event-stream": { schema: { type: "string" } } },
      },
      ...COMMON_ERRORS,
      "404": ref("VirtualMachineBuildNotFoundResponse"),
    },
  },
  get_virtual_machine_console: {
    operationId: "get:virtual_machines_virtual_machine_console",
    summary: "Read a virtual machine's serial console (Trebuchet)",
    description:
      "The serial console's output so far (its last 256 KiB). Answered by an API process that runs the VM's host agent; another answers 406 task_queueing_error.\n## Scopes\n- `virtual_machines`\n- `virtual_machines:console`\n",
    tags: [TREBUCHET_TAG],
    security: security(["virtual_machines", "virtual_machines:console"]),
    parameters: vmLookupParameters,
    responses: {
      "200": {
        description: "The console's text",
        ...json({
          type: "object",
          properties: {
            virtual_machine: { type: "object", properties: { id: { type: "string" } }, required: ["id"] },
            console: { type: "string" },
          },
          required: ["virtual_machine", "console"],
        }),
      },
      ...COMMON_ERRORS,
      "404": ref("VirtualMachineNotFoundResponse"),
      "406": ref("TaskQueueingErrorResponse"),
    },
  },
};

/** Operations that honour an Idempotency-Key header. */
export const IDEMPOTENT_OPERATIONS: ReadonlySet<string> = new Set(["build_from_spec", "build"]);

export const IDEMPOTENCY_KEY_PARAMETER = {
  in: "header",
  name: "Idempotency-Key",
  required: false,
  schema: { type: "string", minLength: 1, maxLength: 255 },
  description:
    "Trebuchet: 1 to 255 printable ASCII characters. A request repeated with the same key (by the same identity, within 24 hours) makes no second build: it gets the first one's answer again, with `Idempotent-Replayed: true`; with another body, 422 idempotency_key_reused.",
};

/** Trebuchet's endpoints outside /core/v1: health, and this document itself. */
export const SERVICE_PATHS: Readonly<Record<string, { servers: { url: string }[]; get: OpenApiOperation }>> =
  {
    "/healthz": {
      servers: [{ url: "/" }],
      get: {
        operationId: "get:healthz",
        summary: "Is the process alive (Trebuchet)",
        description: "Without credentials. 200 while the process serves, also while it drains.",
        tags: [TREBUCHET_TAG],
        security: [],
        responses: {
          "200": {
            description: "alive",
            ...json({ type: "object", properties: { status: { type: "string", enum: ["alive"] } } }),
          },
        },
      },
    },
    "/readyz": {
      servers: [{ url: "/" }],
      get: {
        operationId: "get:readyz",
        summary: "Is the process ready for traffic (Trebuchet)",
        description:
          "Without credentials. 200 when the database answers within 2 s, every migration is applied, the process is not draining and its host agent (if it runs one) reconciled its host recently; else 503 service_unavailable naming the failing checks.",
        tags: [TREBUCHET_TAG],
        security: [],
        responses: {
          "200": {
            description: "ready",
            ...json({
              type: "object",
              properties: {
                status: { type: "string", enum: ["ready"] },
                checks: {
                  type: "array",
                  items: {
                    type: "object",
                    properties: {
                      name: { type: "string" },
                      ok: { type: "boolean" },
                      detail: { type: "string" },
                    },
                  },
                },
              },
            }),
          },
          "503": ref("APIAuthenticator503Response"),
        },
      },
    },
    "/core/v1/openapi.json": {
      servers: [{ url: "/" }],
      get: {
        operationId: "get:openapi_document",
        summary: "This document (Trebuchet)",
        description:
          "Without credentials. The OpenAPI document of exactly the operations this server serves.",
        tags: [TREBUCHET_TAG],
        security: [],
        responses: { "200": { description: "the document", ...json({ type: "object" }) } },
      },
    },
  };

export const TREBUCHET_TAG_NAME = TREBUCHET_TAG;
