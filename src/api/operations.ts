import type { Operation } from "./operation.js";
import { buildOperations } from "./routes/builds.js";
import { catalogOperations } from "./routes/catalog.js";
import { resourceOperations } from "./routes/resources.js";

/** Every operation the API serves. */
export const OPERATIONS: readonly Operation[] = [
  ...catalogOperations,
  ...resourceOperations,
  ...buildOperations,
];
