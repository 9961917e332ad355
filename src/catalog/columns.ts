import { isObject, isStringArray, jsonColumn } from "../store/index.js";
import type { TemplateOptionField } from "./catalog-file.js";

/** `api_tokens.scopes_json`: the scopes a token grants, or all of them. */
export const tokenScopesColumn = jsonColumn<string[] | "all">(
  "api_tokens.scopes_json",
  (value): value is string[] | "all" => value === "all" || isStringArray(value),
);

/** `api_tokens.allowed_networks_json`: CIDRs a token may be used from (none: anywhere). */
export const allowedNetworksColumn = jsonColumn<string[]>("api_tokens.allowed_networks_json", isStringArray);

/** `networks.dns_servers_json`: resolvers handed to the network's guests. */
export const dnsServersColumn = jsonColumn<string[]>("networks.dns_servers_json", isStringArray);

/** `disk_template_versions.options_json`: the fields a spec's `<Option>` may set. */
export const templateOptionsColumn = jsonColumn<TemplateOptionField[]>(
  "disk_template_versions.options_json",
  (value): value is TemplateOptionField[] =>
    Array.isArray(value) && value.every((field) => isObject(field) && typeof field.name === "string"),
);
