import type { Operation } from "./operation.js";
import { backupPolicyOperations } from "./routes/backup-policies.js";
import { buildEventsOperation, buildOperations } from "./routes/builds.js";
import { catalogOperations } from "./routes/catalog.js";
import { diskOperations } from "./routes/disks.js";
import { groupAndTagOperations } from "./routes/groups-and-tags.js";
import { ipAddressOperations } from "./routes/ip-addresses.js";
import { networkInterfaceOperations } from "./routes/network-interfaces.js";
import { organizationLimitOperations } from "./routes/organization-limits.js";
import { resourceOperations } from "./routes/resources.js";
import { trashOperations } from "./routes/trash.js";
import { virtualMachineOperations } from "./routes/virtual-machines.js";

/** Every operation the API serves. */
export const OPERATIONS: readonly Operation[] = [
  ...catalogOperations,
  ...organizationLimitOperations,
  ...resourceOperations,
  ...ipAddressOperations,
  ...virtualMachineOperations,
  ...networkInterfaceOperations,
  ...trashOperations,
  ...diskOperations,
  ...backupPolicyOperations,
  ...groupAndTagOperations,
  ...buildOperations,
  buildEventsOperation,
];
