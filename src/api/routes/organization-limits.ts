import { currency } from "../../catalog/reference-data.js";
import { limitsOf, LIMIT_NAMES, LIMIT_UNITS, organizationUsage } from "../../lifecycle/index.js";
import type { Operation, OperationContext } from "../operation.js";
import { resolveOrganization } from "../resolve.js";

/** An organization's limits, whether they are its own or the defaults, and what it holds. */
async function policyOf(context: OperationContext) {
  const org = await resolveOrganization(context);
  const check = { organizationId: org.id, defaults: context.services.organizationLimits };
  const [{ limits, overridden }, usage] = await Promise.all([
    limitsOf(context.services.db, check),
    organizationUsage(context.services.db, org.id),
  ]);
  return { org, limits, overridden, usage };
}

async function countOf(
  context: OperationContext,
  table: "virtual_networks" | "isos",
  organizationId: string,
) {
  const row = await context.services.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll().as("count"))
    .where("organization_id", "=", organizationId)
    .executeTakeFirstOrThrow();
  return Number(row.count);
}

/** Katapult's resources Trebuchet does not have: an organization can hold none of them. */
const NOT_SERVED = [
  "managed_organizations",
  "security_groups",
  "load_balancers",
  "dns_zones",
  "certificates",
  "file_storage_volumes",
] as const;

/** Katapult's `IntegerOrUnlimited`. */
const integerOrUnlimited = (value: number | null) => ({ value, unlimited: value === null });

/** What Trebuchet serves of Katapult's organization features (the others are not there at all). */
const FEATURES = {
  disk_bus_configuration: { permitted: false },
  zone_selection: { permitted: true },
  restricted_traffic_types: { permitted: false },
  suspension: { permitted: false },
  flexible_virtual_machine_resources: { permitted: true },
};

export const organizationLimitOperations: Operation[] = [
  {
    name: "get_organization_policy_limits",
    method: "GET",
    path: "/organizations/organization/policy_limits",
    scopes: ["organizations:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const org = await resolveOrganization(context);
      const check = { organizationId: org.id, defaults: context.services.organizationLimits };
      const { limits } = await limitsOf(context.services.db, check);
      return {
        body: {
          policy_limits: {
            maximum_virtual_machines: integerOrUnlimited(limits.virtual_machines),
            maximum_virtual_machine_memory: integerOrUnlimited(limits.virtual_machine_memory),
            maximum_disk_space: integerOrUnlimited(limits.disk_space),
            maximum_unallocated_ip_addresses: integerOrUnlimited(limits.unallocated_ip_addresses),
            // No billing: nothing is invoiced. Virtual networks and ISOs are the operator's catalog.
            maximum_uninvoiced_balance: { value: null, unlimited: true },
            maximum_virtual_networks: integerOrUnlimited(null),
            maximum_isos: integerOrUnlimited(null),
            ...Object.fromEntries(NOT_SERVED.map((name) => [`maximum_${name}`, integerOrUnlimited(0)])),
            // One disk may be as large as a disk resize allows.
            maximum_disk_size: integerOrUnlimited(16_384),
            minimum_disk_size: { value: 1 },
            flexible_virtual_machine_resources: FEATURES.flexible_virtual_machine_resources.permitted,
            allow_suspension: FEATURES.suspension.permitted,
            allow_restricted_traffic_types: FEATURES.restricted_traffic_types.permitted,
          },
        },
      };
    },
  },
  {
    name: "get_organization_policy",
    method: "GET",
    path: "/organizations/organization/policy",
    scopes: ["organizations:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const { org, limits, overridden, usage } = await policyOf(context);
      const [virtualNetworks, isos] = await Promise.all([
        countOf(context, "virtual_networks", org.id),
        countOf(context, "isos", org.id),
      ]);
      // Katapult's PolicyLimit has an integer limit: an unlimited one reads -1.
      const policyLimits = Object.fromEntries(
        LIMIT_NAMES.map((name) => [
          name,
          { limit: limits[name] ?? -1, current: usage[name], unit: LIMIT_UNITS[name] },
        ]),
      );
      return {
        body: {
          policy_type: overridden.length > 0 ? "override" : "auto",
          policy_name: overridden.length > 0 ? "Set for this organization" : "Default limits",
          limits: {
            ...policyLimits,
            uninvoiced_balance: { limit: -1, current: 0, currency: currency(org.currency_iso_code) },
            virtual_networks: { limit: -1, current: virtualNetworks, unit: null },
            isos: { limit: -1, current: isos, unit: null },
            ...Object.fromEntries(NOT_SERVED.map((name) => [name, { limit: 0, current: 0, unit: null }])),
            disk_iops: { limit: -1, unit: "IOPS" },
            network_speed: { limit: -1, unit: "Mbit/s" },
          },
          features: FEATURES,
          reasons_for_disallowing_resource_creation: [],
        },
      };
    },
  },
];
