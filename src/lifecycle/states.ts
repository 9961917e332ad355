/**
 * The state machines of builds, tasks and virtual machines: pure functions over typed
 * states, no I/O. The lifecycle's claims, completions, failures and cancellations take
 * their next state from these and are conditional on the state they start from; the
 * steps a worker reports in between (progress, the VM's passing states) are guarded by
 * the worker's lease instead (leases.ts).
 */
import type { PowerState } from "../hosts/driver.js";
import type { BuildState, TaskAction, TaskStatus, VirtualMachineState } from "../store/index.js";

// ---- builds ----

export type BuildEvent =
  /** A worker takes the build (or takes it over after its worker's lease ran out). */
  "claim" | "complete" | "fail";

const BUILD_TRANSITIONS: Record<BuildState, Partial<Record<BuildEvent, BuildState>>> = {
  draft: {},
  pending: { claim: "building", fail: "failed" },
  building: { claim: "building", complete: "complete", fail: "failed" },
  complete: {},
  failed: {},
};

/** The build's next state, or undefined when the event is not allowed in `state`. */
export function nextBuildState(state: BuildState, event: BuildEvent): BuildState | undefined {
  return BUILD_TRANSITIONS[state][event];
}

/** The states a build may be in for `event` to apply (what a conditional update names). */
export function buildStatesAllowing(event: BuildEvent): BuildState[] {
  return (Object.keys(BUILD_TRANSITIONS) as BuildState[]).filter((s) => BUILD_TRANSITIONS[s][event]);
}

// ---- tasks ----

export type TaskEvent =
  | "claim"
  | "complete"
  | "fail"
  /** A queued action dropped before it ran (its VM was deleted). */
  | "cancel";

const TASK_TRANSITIONS: Record<TaskStatus, Partial<Record<TaskEvent, TaskStatus>>> = {
  pending: { claim: "running", cancel: "failed", fail: "failed" },
  running: { claim: "running", complete: "completed", fail: "failed" },
  completed: {},
  failed: {},
};

export function nextTaskStatus(status: TaskStatus, event: TaskEvent): TaskStatus | undefined {
  return TASK_TRANSITIONS[status][event];
}

export function taskStatusesAllowing(event: TaskEvent): TaskStatus[] {
  return (Object.keys(TASK_TRANSITIONS) as TaskStatus[]).filter((s) => TASK_TRANSITIONS[s][event]);
}

// ---- virtual machines: which actions a state accepts ----

/**
 * May this action be queued for a VM in this state? Actions queue behind the one that
 * runs (as Katapult's tasks do), so every state a running action passes through accepts
 * them; a failed VM, and one still being built, accept none.
 */
export function acceptsActions(state: VirtualMachineState): boolean {
  switch (state) {
    case "stopped":
    case "started":
    case "starting":
    case "stopping":
    case "shutting_down":
    case "resetting":
      return true;
    case "failed":
    case "allocating":
    case "allocated":
    case "migrating":
    case "transferring":
    case "orphaned":
      return false;
  }
}

// ---- virtual machines: what an action does when its turn comes ----

export type ActionDecision =
  /** Nothing to do (stop a VM that is already stopped): the task completes at once. */
  | { run: false; state: VirtualMachineState }
  /** Drive the host: the VM shows `during` meanwhile and `after` once it is done. */
  | { run: true; during: VirtualMachineState; after: VirtualMachineState };

/**
 * Decided from the VM's real power state on its host when the action's turn comes, not
 * from the state recorded when it was queued: a VM may have stopped by itself meanwhile.
 * `missing` (the host has no trace of it) is treated as stopped; only `purge` and
 * `reconfigure` act on it.
 */
/** What a VM's own queue runs (a standalone disk's build and resize are the disk's). */
export const DISK_TASK_ACTIONS = ["build_disk", "resize_disk", "shrink_disk", "disk_io_profile"] as const;
export type DiskTaskAction = (typeof DISK_TASK_ACTIONS)[number];

export function isDiskTaskAction(action: TaskAction): action is DiskTaskAction {
  return (DISK_TASK_ACTIONS as readonly string[]).includes(action);
}
export type VmTaskAction = Exclude<TaskAction, DiskTaskAction>;

export function decideAction(action: VmTaskAction, power: PowerState): ActionDecision {
  const running = power === "running";
  switch (action) {
    case "start":
      return running ? { run: false, state: "started" } : { run: true, during: "starting", after: "started" };
    case "stop":
      return running ? { run: true, during: "stopping", after: "stopped" } : { run: false, state: "stopped" };
    case "shutdown":
      return running
        ? { run: true, during: "shutting_down", after: "stopped" }
        : { run: false, state: "stopped" };
    case "reset":
      return running
        ? { run: true, during: "resetting", after: "started" }
        : { run: false, state: "stopped" };
    case "delete":
      // To the trash: powered off, its disks and addresses kept.
      return running ? { run: true, during: "stopping", after: "stopped" } : { run: false, state: "stopped" };
    case "purge":
      // Destroyed on its host, whatever is left there.
      return { run: true, during: "stopping", after: "stopped" };
    case "reconfigure":
      return { run: true, during: stateOfPower(power), after: stateOfPower(power) };
  }
}

/**
 * The resting state that matches a VM's power on its host: what it is recorded as after
 * an action failed half way, or when reconciliation finds the record wrong.
 */
export function stateOfPower(power: PowerState): VirtualMachineState {
  return power === "running" ? "started" : "stopped";
}
