import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { build, buildFingerprint } from "../../src/api/presenters.js";
import { BUILD_STATES, VIRTUAL_MACHINE_STATES, type Row } from "../../src/store/index.js";

const text = fc.string({ unit: "binary", maxLength: 6 });
const presentedBuild = fc.record({
  id: fc.constant("vmbuild_VcFp68tM2S2S1ybZ"),
  state: fc.constantFrom(...BUILD_STATES),
  created_at: fc.constant(1764318000),
  failure_reason: fc.option(text),
});
const vm = fc.option(
  fc.record({
    id: fc.constantFrom("vm_a", "vm_b"),
    name: text,
    hostname: text,
    fqdn: text,
    state: fc.constantFrom(...VIRTUAL_MACHINE_STATES),
  }),
  { nil: undefined },
);
type BuildSample = Parameters<typeof build>[0];
const asVm = (v: Partial<Row<"virtual_machines">> | undefined) => v as Row<"virtual_machines"> | undefined;

describe("buildFingerprint", () => {
  it("changes exactly when what a build read shows, but for its spec XML, changes", () => {
    // The second sample takes each field from the first or from another draw, so pairs
    // often differ in one field only.
    const mixed = <T extends object>(a: T, b: T, mask: boolean[]): T =>
      Object.fromEntries(Object.keys(a).map((k, i) => [k, mask[i] ? b[k as keyof T] : a[k as keyof T]])) as T;
    const mask = fc.array(fc.boolean(), { minLength: 5, maxLength: 5 });
    fc.assert(
      fc.property(presentedBuild, vm, presentedBuild, vm, mask, mask, (b1, v1, b, v, buildMask, vmMask) => {
        const b2 = mixed(b1, b, buildMask);
        const v2 = v1 && v ? mixed(v1, v, vmMask) : v;
        const shown = (b: BuildSample, v: Partial<Row<"virtual_machines">> | undefined) =>
          JSON.stringify(build(b, "", asVm(v)));
        const sameOutput = shown(b1, v1) === shown(b2, v2);
        const sameFingerprint = buildFingerprint(b1, asVm(v1)) === buildFingerprint(b2, asVm(v2));
        expect(sameFingerprint).toBe(sameOutput);
      }),
      { numRuns: 5000 },
    );
  });

  it("tells apart values that only differ in where a separator falls", () => {
    const failed = { id: "b", state: "failed" as const, created_at: 0 };
    expect(buildFingerprint({ ...failed, failure_reason: "a b" }, undefined)).not.toBe(
      buildFingerprint(
        { ...failed, failure_reason: "a" },
        asVm({ id: "b", hostname: "", fqdn: "", state: "started", name: "" }),
      ),
    );
    expect(buildFingerprint({ ...failed, failure_reason: null }, undefined)).not.toBe(
      buildFingerprint({ ...failed, failure_reason: "-" }, undefined),
    );
  });
});
