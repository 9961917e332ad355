export * from "./database.js";
export * from "./dialect.js";
export * from "./unavailable.js";
export * from "./ids.js";
export * from "./migrate.js";
export type * from "./schema.js";
export {
  BUILD_STATES,
  ORGANIZATION_STATES,
  ROLES,
  TASK_ACTIONS,
  TASK_STATUSES,
  VIRTUAL_MACHINE_STATES,
} from "./schema.js";
export * from "./prepared.js";
export * from "./housekeeping.js";
export * from "./group-commit.js";
export * from "./statements.js";
export * from "./json-columns.js";
export * from "./installation.js";
