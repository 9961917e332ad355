/** Organization limits as numbers: what a request would pass, and how limits are written. */
import { describe, expect, it } from "vitest";
import {
  DEFAULT_ORGANIZATION_LIMITS,
  describeBreach,
  limitBreaches,
  NO_LIMITS,
  parseLimits,
} from "../../src/lifecycle/quota.js";

const USE = { virtual_machines: 3, virtual_machine_memory: 10, disk_space: 100, unallocated_ip_addresses: 0 };
const LIMITS = {
  virtual_machines: 4,
  virtual_machine_memory: 12,
  disk_space: 100,
  unallocated_ip_addresses: null,
};

describe("limitBreaches", () => {
  it("allows a request that ends exactly at a limit", () => {
    expect(limitBreaches(LIMITS, USE, { virtual_machines: 1, virtual_machine_memory: 2 })).toEqual([]);
  });

  it("names every limit a request would pass, with the limit, the use and the request", () => {
    expect(
      limitBreaches(LIMITS, USE, { virtual_machines: 2, virtual_machine_memory: 3, disk_space: 1 }),
    ).toEqual([
      { limit: "virtual_machines", maximum: 4, current: 3, requested: 2, unit: null },
      { limit: "virtual_machine_memory", maximum: 12, current: 10, requested: 3, unit: "GB" },
      { limit: "disk_space", maximum: 100, current: 100, requested: 1, unit: "GB" },
    ]);
  });

  it("never refuses what adds nothing, even over a limit lowered below the use", () => {
    const lowered = { ...LIMITS, disk_space: 50 };
    expect(limitBreaches(lowered, USE, { disk_space: 0, virtual_machine_memory: -4 })).toEqual([]);
  });

  it("does not limit what is unlimited", () => {
    expect(limitBreaches(NO_LIMITS, USE, { virtual_machines: 10_000 })).toEqual([]);
    expect(limitBreaches(LIMITS, USE, { unallocated_ip_addresses: 10_000 })).toEqual([]);
  });

  it("describes a breach in words", () => {
    const [breach] = limitBreaches(LIMITS, USE, { virtual_machine_memory: 8 });
    expect(describeBreach(breach!)).toBe(
      "virtual_machine_memory: 8 GB requested, 10 of 12 GB in use (limit of GB of virtual machine memory)",
    );
  });
});

describe("parseLimits", () => {
  it("reads name=value pairs over the defaults; unlimited is null", () => {
    expect(parseLimits("virtual_machines=5, disk_space=unlimited", DEFAULT_ORGANIZATION_LIMITS)).toEqual({
      ...DEFAULT_ORGANIZATION_LIMITS,
      virtual_machines: 5,
      disk_space: null,
    });
    expect(parseLimits("", DEFAULT_ORGANIZATION_LIMITS)).toEqual(DEFAULT_ORGANIZATION_LIMITS);
  });

  it.each([
    ["vms=5", "is not a limit: write name=value"],
    ["virtual_machines", "is not a limit: write name=value"],
    ["virtual_machines=5=6", "is not a limit: write name=value"],
    ["virtual_machines=-1", "give a whole number or unlimited"],
    ["virtual_machines=1.5", "give a whole number or unlimited"],
    ["virtual_machines=99999999999", "give a whole number or unlimited"],
  ])("refuses %s", (text, message) => {
    expect(() => parseLimits(text, DEFAULT_ORGANIZATION_LIMITS)).toThrow(message);
  });
});
