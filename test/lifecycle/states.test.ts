/** The lifecycle's state machines, every state against every event (pure). */
import { describe, expect, it } from "vitest";
import type { PowerState } from "../../src/hosts/driver.js";
import {
  acceptsActions,
  buildStatesAllowing,
  decideAction,
  isDiskTaskAction,
  nextBuildState,
  nextTaskStatus,
  stateOfPower,
  taskStatusesAllowing,
  type BuildEvent,
  type TaskEvent,
  type VmTaskAction,
} from "../../src/lifecycle/index.js";
import {
  BUILD_STATES,
  TASK_ACTIONS,
  TASK_STATUSES,
  VIRTUAL_MACHINE_STATES,
  type VirtualMachineState,
} from "../../src/store/index.js";

const BUILD_EVENTS: BuildEvent[] = ["claim", "complete", "fail"];
const TASK_EVENTS: TaskEvent[] = ["claim", "complete", "fail", "cancel"];
const ACTIONS: VmTaskAction[] = TASK_ACTIONS.filter((a): a is VmTaskAction => !isDiskTaskAction(a));
const POWER: PowerState[] = ["running", "stopped", "missing"];

/** Every (state, event) pair and where it leads; `-` where the machine refuses it. */
function table<S extends string, E extends string>(
  states: readonly S[],
  events: readonly E[],
  next: (s: S, e: E) => S | undefined,
) {
  return Object.fromEntries(states.map((s) => [s, events.map((e) => `${e}:${next(s, e) ?? "-"}`).join(" ")]));
}

describe("builds", () => {
  it("move pending -> building -> complete | failed, and nowhere else", () => {
    expect(table(BUILD_STATES, BUILD_EVENTS, nextBuildState)).toEqual({
      draft: "claim:- complete:- fail:-",
      // A pending build may fail unclaimed: no host of its data center can take it.
      pending: "claim:building complete:- fail:failed",
      // A building build is claimed again when its worker's lease runs out.
      building: "claim:building complete:complete fail:failed",
      complete: "claim:- complete:- fail:-",
      failed: "claim:- complete:- fail:-",
    });
  });

  it("name the states an event may follow, for conditional updates", () => {
    for (const event of BUILD_EVENTS)
      expect(buildStatesAllowing(event)).toEqual(BUILD_STATES.filter((s) => nextBuildState(s, event)));
    expect(buildStatesAllowing("complete")).toEqual(["building"]);
  });
});

describe("tasks", () => {
  it("move pending -> running -> completed | failed; only a pending one is cancelled", () => {
    expect(table(TASK_STATUSES, TASK_EVENTS, nextTaskStatus)).toEqual({
      pending: "claim:running complete:- fail:failed cancel:failed",
      running: "claim:running complete:completed fail:failed cancel:-",
      completed: "claim:- complete:- fail:- cancel:-",
      failed: "claim:- complete:- fail:- cancel:-",
    });
    expect(taskStatusesAllowing("cancel")).toEqual(["pending"]);
  });
});

describe("virtual machines", () => {
  it("accept actions in every state an action passes through, and none while built, failed or elsewhere", () => {
    const accepting = VIRTUAL_MACHINE_STATES.filter(acceptsActions);
    expect(accepting).toEqual(["stopped", "started", "starting", "resetting", "stopping", "shutting_down"]);
  });

  it("decide each action from the VM's real power state: run it, or complete at once", () => {
    const decisions = Object.fromEntries(
      ACTIONS.flatMap((action) =>
        POWER.map((power) => {
          const d = decideAction(action, power);
          return [`${action} ${power}`, d.run ? `run ${d.during} -> ${d.after}` : `nothing, ${d.state}`];
        }),
      ),
    );
    expect(decisions).toEqual({
      "start running": "nothing, started",
      "start stopped": "run starting -> started",
      "start missing": "run starting -> started",
      "stop running": "run stopping -> stopped",
      "stop stopped": "nothing, stopped",
      "stop missing": "nothing, stopped",
      "shutdown running": "run shutting_down -> stopped",
      "shutdown stopped": "nothing, stopped",
      "shutdown missing": "nothing, stopped",
      "reset running": "run resetting -> started",
      "reset stopped": "nothing, stopped",
      "reset missing": "nothing, stopped",
      "delete running": "run stopping -> stopped",
      "delete stopped": "nothing, stopped",
      "delete missing": "nothing, stopped",
      "purge running": "run stopping -> stopped",
      "purge stopped": "run stopping -> stopped",
      "purge missing": "run stopping -> stopped",
      "reconfigure running": "run started -> started",
      "reconfigure stopped": "run stopped -> stopped",
      "reconfigure missing": "run stopped -> stopped",
    });
  });

  it("every decision ends in a resting state that agrees with the power it leaves", () => {
    const resting: VirtualMachineState[] = ["started", "stopped"];
    for (const action of ACTIONS)
      for (const power of POWER) {
        const d = decideAction(action, power);
        const end = d.run ? d.after : d.state;
        expect(resting).toContain(end);
        if (!d.run) expect(end).toBe(stateOfPower(power));
        if (d.run) expect(acceptsActions(d.during)).toBe(true);
      }
    expect(POWER.map(stateOfPower)).toEqual(["started", "stopped", "stopped"]);
  });
});
