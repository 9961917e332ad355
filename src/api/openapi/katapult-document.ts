import { readFileSync } from "node:fs";
import { projectPath } from "../../paths.js";

/** An OpenAPI 3.0 document, loosely typed: its operations and components are copied, not interpreted. */
export interface OpenApiDocument {
  openapi: string;
  info: Record<string, unknown>;
  servers?: { url: string; description?: string }[];
  paths: Record<string, Record<string, OpenApiOperation>>;
  components: Record<string, Record<string, unknown>>;
  security?: Record<string, string[]>[];
  tags?: { name: string; description?: string }[];
  "x-tagGroups"?: { name: string; tags: string[] }[];
  [extension: `x-${string}`]: unknown;
}

export interface OpenApiOperation {
  operationId?: string;
  summary?: string;
  description?: string;
  tags?: string[];
  security?: Record<string, string[]>[];
  parameters?: unknown[];
  requestBody?: unknown;
  responses: Record<string, unknown>;
  [other: string]: unknown;
}

export const KATAPULT_DOCUMENT_PATH = projectPath("reference", "katapult-core-openapi.json");

let katapult: OpenApiDocument | undefined;

/** The official Katapult Core API document (reference/README.md), read once. */
export function katapultDocument(): OpenApiDocument {
  katapult ??= JSON.parse(readFileSync(KATAPULT_DOCUMENT_PATH, "utf8")) as OpenApiDocument;
  return katapult;
}
