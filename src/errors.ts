/**
 * Every error the API answers with, in one table: code, HTTP status and the fixed
 * description of the Katapult schema (its `*Enum` error schemas, in the OpenAPI document
 * copied to reference/katapult-core-openapi.json). Handlers,
 * tests and the README all read this table.
 */
export const ERRORS = {
  missing_api_token: {
    status: 400,
    description:
      "No API token was provided in the Authorization header. Ensure a token is provided prefixed with Bearer",
  },
  invalid_spec_xml: { status: 400, description: "The spec XML provided is invalid" },
  invalid_json_body: { status: 400, description: "The JSON body provided with this request is invalid" },
  unauthorized_network_for_api_token: {
    status: 403,
    description: "Network is not allowed to access the API with this API token",
  },
  invalid_api_token: {
    status: 403,
    description: "The API token provided was not valid (it may not exist or have expired)",
  },
  invalid_capabilities_token: {
    status: 403,
    description:
      "The capabilities token provided was not valid (either not valid, expired or not signed by the correct key)",
  },
  scope_not_granted: {
    status: 403,
    description: "The scope required for this endpoint has not been granted to the authenticating identity",
  },
  organization_suspended: {
    status: 403,
    description: "An organization was found from the arguments provided but it was suspended",
  },
  organization_not_activated: {
    status: 403,
    description: "An organization was found from the arguments provided but it wasn't activated yet",
  },
  permission_denied: {
    status: 403,
    description: "The authenticated identity is not permitted to perform this action",
  },
  organization_not_found: {
    status: 404,
    description: "No organization was found matching any of the criteria provided in the arguments",
  },
  build_not_found: {
    status: 404,
    description: "No build was found matching any of the criteria provided in the arguments",
  },
  task_not_found: {
    status: 404,
    description: "No task was found matching any of the criteria provided in the arguments",
  },
  virtual_machine_not_found: {
    status: 404,
    description: "No virtual machine was found matching any of the criteria provided in the arguments",
  },
  zone_not_found: {
    status: 404,
    description: "No zone was found matching any of the criteria provided in the arguments",
  },
  data_center_not_found: {
    status: 404,
    description: "No data center was found matching any of the criteria provided in the arguments",
  },
  package_not_found: {
    status: 404,
    description: "No package was found matching any of the criteria provided in the arguments",
  },
  disk_template_not_found: {
    status: 404,
    description: "No disk template was found matching any of the criteria provided in the arguments",
  },
  disk_template_version_not_found: {
    status: 404,
    description: "No disk template version was found matching any of the criteria provided in the arguments",
  },
  network_not_found: {
    status: 404,
    description: "No network was found matching any of the criteria provided in the arguments",
  },
  virtual_network_not_found: {
    status: 404,
    description: "No virtual network was found matching any of the criteria provided in the arguments",
  },
  operating_system_not_found: {
    status: 404,
    description: "No operating system was found matching any of the criteria provided in the arguments",
  },
  ip_address_not_found: {
    status: 404,
    description: "No IP addresses were found matching any of the criteria provided in the arguments",
  },
  ssh_key_not_found: {
    status: 404,
    description: "No SSH key was found matching any of the criteria provided in the arguments",
  },
  disk_not_found: {
    status: 404,
    description: "No disk was found matching any of the criteria provided in the arguments",
  },
  route_not_found: { status: 404, description: "No route matches the request" },
  object_in_trash: {
    status: 406,
    description:
      "The object found is in the trash and therefore cannot be manipulated through the API. It should be restored in order to run this operation.",
  },
  task_queueing_error: {
    status: 406,
    description:
      "This error means that a background task that was needed to complete your request could not be queued",
  },
  request_too_large: { status: 413, description: "The request body is larger than this server accepts" },
  unsupported_media_type: {
    status: 415,
    description: "Request bodies must be JSON, sent with Content-Type: application/json",
  },
  trash_object_not_found: {
    status: 404,
    description: "No trash object was found matching any of the criteria provided in the arguments",
  },
  virtual_machine_network_interface_not_found: {
    status: 404,
    description: "No network interface was found matching any of the criteria provided in the arguments",
  },
  virtual_machine_group_not_found: {
    status: 404,
    description: "No virtual machine group was found matching any of the criteria provided in the arguments",
  },
  disk_backup_policy_not_found: {
    status: 404,
    description: "No disk backup policy was found matching any of the criteria provided in the arguments",
  },
  disk_io_profile_not_found: {
    status: 404,
    description: "No disk IO profile was found matching any of the criteria provided in the arguments",
  },
  tag_not_found: {
    status: 404,
    description: "No tag was found matching any of the criteria provided in the arguments",
  },
  interface_not_found: {
    status: 404,
    description: "An interface could not be found for the specified network",
  },
  network_speed_profile_not_found: {
    status: 404,
    description: "No network speed profile was found matching any of the criteria provided in the arguments",
  },
  resource_does_not_support_unallocation: {
    status: 409,
    description: "The resource this IP address belongs to does not allow you to unallocate it.",
  },
  deletion_restricted: { status: 409, description: "Object cannot be deleted" },
  no_allocation: {
    status: 422,
    description: "This IP address is not currently allocated to any object, and cannot be unallocated.",
  },
  invalid_ip: { status: 422, description: "This IP address is not valid for this network interface." },
  no_interface_available: {
    status: 422,
    description:
      "This virtual machine does not have a network interface that is compatible with the provided IP address",
  },
  speed_profile_already_assigned: {
    status: 422,
    description: "This network speed profile is already assigned to this virtual machine network interface.",
  },
  virtual_machine_network_interface_already_attached: {
    status: 422,
    description: "The virtual machine network interface is already attached to the virtual machine",
  },
  virtual_machine_network_interface_already_detached: {
    status: 422,
    description: "The virtual machine network interface is already detached from the virtual machine",
  },
  unassigned_disk: { status: 422, description: "Disk is not assigned to a virtual machine." },
  unable_to_assign: { status: 422, description: "The disk can not be assigned to the virtual machine." },
  unable_to_unassign: {
    status: 422,
    description: "The disk can not be unassigned from the virtual machine.",
  },
  validation_error: {
    status: 422,
    description: "A validation error occurred with the object that was being created/updated/deleted",
  },
  location_required: { status: 422, description: "A zone or a data_center argument must be provided" },
  one_system_disk_required: {
    status: 422,
    description: "Exactly one disk must be marked as the system disk",
  },
  no_available_addresses: {
    status: 422,
    description:
      "Our pool of addresses for that version seems to have run dry. If this issue continues, please contact support.",
  },
  ip_already_allocated: {
    status: 422,
    description: "This IP address has already been allocated to another resource",
  },
  idempotency_key_reused: {
    status: 422,
    description:
      "This Idempotency-Key was already used with a different request; use a new key for a new request",
  },
  rate_limit_reached: {
    status: 429,
    description: "You have reached the rate limit for this type of request",
  },
  unhandled_exception: { status: 500, description: "An internal error occurred" },
  service_unavailable: {
    status: 503,
    description: "The service is currently unavailable, please try again later",
  },
  resource_creation_restricted: {
    status: 403,
    description: "The organization chosen is not permitted to create resources",
  },
  // Trebuchet's own, for what happens below the API: HTTP framing, connections, time.
  malformed_request: {
    status: 400,
    description: "The request could not be read as HTTP/1.1 (its framing, method, version, path or headers)",
  },
  request_timeout: {
    status: 408,
    description: "The request did not arrive in time: its headers or its body were too slow",
  },
  idempotency_key_in_use: {
    status: 409,
    description:
      "Another request with this Idempotency-Key is still running; retry after it has finished to get its outcome",
  },
  uri_too_long: { status: 414, description: "The request's URL is longer than this server accepts" },
  expectation_failed: {
    status: 417,
    description: "The request's Expect header asks for something this server does not do",
  },
  too_many_connections: {
    status: 429,
    description: "Too many connections are open to this server; close some or retry later",
  },
  request_header_fields_too_large: {
    status: 431,
    description: "The request's headers (with its URL) are larger than this server accepts",
  },
  cors_origin_not_allowed: {
    status: 403,
    description:
      "Browser pages from this origin may not call this API (see cors.origins in the configuration)",
  },
  invalid_argument: { status: 400, description: "An argument is invalid" },
  missing_required_argument: { status: 400, description: "A required argument has not been provided" },
} as const;

export type ErrorCode = keyof typeof ERRORS;

/** A client-visible error: the handler throws it, the error handler writes the envelope. */
export class ApiError extends Error {
  readonly status: number;
  readonly description: string;

  constructor(
    readonly code: ErrorCode,
    readonly detail: Record<string, unknown> = {},
    description?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(description ?? ERRORS[code].description);
    this.status = ERRORS[code].status;
    this.description = description ?? ERRORS[code].description;
  }

  toBody(): { error: { code: string; description: string; detail: Record<string, unknown> } } {
    return { error: { code: this.code, description: this.description, detail: this.detail } };
  }
}

export const ISSUE_DESCRIPTIONS = {
  invalid_scalar:
    "The value provided was not of an appropriate type for the scalar that was requested. For example, you may have passed a string where an integer was required etc...",
  parse_error:
    "The value provided could not be parsed into an appropriate value by the server. For example, if a date was expected and the value could not be interpretted as such.",
  invalid_enum_value: "The value provided was not one of the options suitable for the enum.",
  missing_lookup_value:
    "A value for a lookup argument set has not been provided but at least one value is required.",
  ambiguous_lookup_values:
    "More than one value has been provided for a lookup argument set. Only one option may be provided.",
  object_expected: "An object was expected for this argument.",
  array_expected: "An array was expected for this argument.",
  validation_errors: "The value provided did not pass the argument's validation rules.",
} as const;

export type ArgumentIssue = keyof typeof ISSUE_DESCRIPTIONS;

/** `400 invalid_argument` in Apia's shape: `The 'a.b' argument is invalid` with the issue in detail. */
export function invalidArgument(
  path: string[],
  issue: ArgumentIssue,
  errors: string[] = [],
  index: number | null = null,
): ApiError {
  const name = path[path.length - 1] ?? "";
  return new ApiError(
    "invalid_argument",
    {
      path,
      index,
      issue,
      issue_description: ISSUE_DESCRIPTIONS[issue],
      errors,
      argument: { id: path.join("."), name, description: null },
    },
    `The '${path.join(".")}' argument is invalid`,
  );
}

export function missingArgument(path: string[]): ApiError {
  return new ApiError(
    "missing_required_argument",
    { path, argument: { name: path[path.length - 1] ?? "", description: null } },
    `The '${path.join(".")}' argument is required but has not been provided`,
  );
}

export function routeNotFound(method: string, path: string): ApiError {
  return new ApiError("route_not_found", {}, `No route matches '${path}' for ${method}`);
}
