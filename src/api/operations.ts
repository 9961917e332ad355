import type { Operation } from "./operation.js";
import { buildEventsOperation, buildOperations } from "./routes/builds.js";
import { catalogOperations } from "./routes/catalog.js";
import { resourceOperations } from "./routes/resources.js";
import { virtualMachineOperations } from "./routes/virtual-machines.js";

/** Every operation the API serves. */
export const OPERATIONS: readonly Operation[] = [
  ...catalogOperations,
  ...resourceOperations,
  ...virtualMachineOperations,
  ...buildOperations,
  buildEventsOperation,
];
