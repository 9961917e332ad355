import { SETTINGS, type Setting, type ValueSchema } from "./settings.js";

const GROUPS: Record<string, string> = {
  cors: "Browsers' cross-origin requests (CORS), preflight included.",
  oauth: "OAuth2 access tokens (JWTs) accepted besides Trebuchet's own API tokens.",
  http: "Time, connection and size limits of the HTTP server.",
  load_shedding:
    "When the process is saturated, new requests get 503 service_unavailable (GET /healthz excepted).",
  agent: "The host agent: how long a guest may take to boot and to shut down.",
};

export interface ConfigSchema extends ValueSchema {
  $schema: string;
  $id: string;
  title: string;
  properties: Record<string, ValueSchema>;
}

/** The setting's schema as documented: its description, default and environment variable. */
function leafSchema(setting: Setting): ValueSchema & { "x-env": string } {
  return {
    ...setting.schema,
    description:
      setting.description +
      (setting.defaultNote ? ` Default: ${setting.defaultNote}.` : "") +
      ` Environment: ${setting.env}.`,
    ...(setting.default !== undefined ? { default: setting.default } : {}),
    "x-env": setting.env,
  };
}

/** The JSON Schema of /etc/trebuchet/trebuchet.yaml: unknown keys are errors, every key optional. */
export function configSchema(): ConfigSchema {
  const properties: Record<string, ValueSchema> = {};
  for (const setting of SETTINGS) {
    const [first, second] = setting.key.split(".") as [string, string | undefined];
    if (second === undefined) {
      properties[first] = leafSchema(setting);
      continue;
    }
    const group = (properties[first] ??= {
      type: "object",
      description: GROUPS[first] ?? first,
      properties: {},
      additionalProperties: false,
    });
    group.properties![second] = leafSchema(setting);
  }
  return {
    $schema: "http://json-schema.org/draft-07/schema#",
    $id: "https://trebuchet.invalid/schemas/trebuchet.yaml.json",
    title: "Trebuchet configuration (trebuchet.yaml)",
    description:
      "Settings of trebuchet serve and the admin commands. Each can be overridden by its environment variable (x-env); flags override both.",
    type: "object",
    properties,
    additionalProperties: false,
  };
}
