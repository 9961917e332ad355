import { describe, expect, it } from "vitest";
import { hasPrefix, ID_PREFIXES, newId, randomAlphanumeric } from "../../src/store/ids.js";

describe("object IDs", () => {
  it("are a type prefix, an underscore and 16 alphanumerics", () => {
    expect(newId("virtualMachine")).toMatch(/^vm_[A-Za-z0-9]{16}$/);
    expect(newId("build")).toMatch(/^vmbuild_[A-Za-z0-9]{16}$/);
    expect(newId("task")).toMatch(/^task_[A-Za-z0-9]{16}$/);
    expect(hasPrefix(newId("dataCenter"), "dataCenter")).toBe(true);
    expect(hasPrefix(newId("virtualMachine"), "build")).toBe(false);
  });

  it("use distinct prefixes for distinct kinds", () => {
    const prefixes = Object.values(ID_PREFIXES);
    expect(new Set(prefixes).size).toBe(prefixes.length);
  });

  it("do not repeat, and use the whole alphabet evenly", () => {
    const ids = new Set(Array.from({ length: 20_000 }, () => newId("task")));
    expect(ids.size).toBe(20_000);
    const counts = new Map<string, number>();
    for (const c of randomAlphanumeric(62_000)) counts.set(c, (counts.get(c) ?? 0) + 1);
    expect(counts.size).toBe(62);
    // Each of 62 characters is expected ~1000 times; a biased generator would drift far outside this band.
    for (const n of counts.values()) {
      expect(n).toBeGreaterThan(800);
      expect(n).toBeLessThan(1200);
    }
  });
});
