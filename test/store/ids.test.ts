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

  it("sort in the order they were made, bytewise, from one millisecond to the next", () => {
    const times = [0, 1, 61, 62, 1_700_000_000_000, 1_700_000_000_001, Date.now(), 62 ** 7 - 1];
    const ids = times.map((ms) => newId("build", ms));
    const bytewise = [...ids].sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : 1));
    expect(bytewise).toEqual(ids);
    expect(new Set(ids.map((id) => id.slice("vmbuild_".length, "vmbuild_".length + 7))).size).toBe(
      times.length,
    );
  });

  it("made in the same millisecond differ in their random part", () => {
    const ids = Array.from({ length: 10_000 }, () => newId("task", 1_700_000_000_000));
    expect(new Set(ids).size).toBe(10_000);
    expect(new Set(ids.map((id) => id.slice(0, -9))).size).toBe(1);
  });
});
