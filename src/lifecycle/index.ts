/**
 * The lifecycle layer: the only code that changes the state of builds, tasks, VMs and
 * what they hold. The API accepts and queues through it; workers claim and report
 * through it; the state machines it obeys are pure (states.ts).
 */
export * from "./accept.js";
export * from "./address-changes.js";
export { AddressesExhausted, allocateToOrganization, isUniqueViolation } from "./addresses.js";
export * from "./backup-policies.js";
export * from "./builds.js";
export * from "./disks.js";
export * from "./groups-and-tags.js";
export * from "./idempotency.js";
export * from "./network-interfaces.js";
export * from "./organization-limits.js";
export * from "./quota.js";
export * from "./leases.js";
export * from "./states.js";
export * from "./stored-plan.js";
export * from "./tasks.js";
export * from "./trash.js";
export * from "./vm-changes.js";
export { recordObservedState } from "./vms.js";
