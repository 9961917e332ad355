import { describe, expect, it } from "vitest";
import { FreshnessCache } from "../../src/auth/freshness-cache.js";

describe("the freshness cache of credentials and organization states", () => {
  const loader = () => {
    let calls = 0;
    let value: string | undefined = "v1";
    return {
      load: async () => {
        calls++;
        return value;
      },
      set: (v: string | undefined) => (value = v),
      calls: () => calls,
    };
  };

  it("serves a found value until it is ttl old, then reads it again", async () => {
    const cache = new FreshnessCache<string>(1000);
    const source = loader();
    expect(await cache.get("k", source.load, 0)).toBe("v1");
    source.set("v2");
    expect(await cache.get("k", source.load, 999)).toBe("v1");
    expect(source.calls()).toBe(1);
    expect(await cache.get("k", source.load, 1000)).toBe("v2");
    expect(source.calls()).toBe(2);
  });

  it("never keeps a miss (guessed tokens cannot fill it), and keeps nothing with a ttl of 0", async () => {
    const cache = new FreshnessCache<string>(1000);
    const source = loader();
    source.set(undefined);
    expect(await cache.get("k", source.load, 0)).toBeUndefined();
    source.set("now here");
    expect(await cache.get("k", source.load, 1)).toBe("now here");

    const off = new FreshnessCache<string>(0);
    const other = loader();
    await off.get("k", other.load, 0);
    await off.get("k", other.load, 0);
    expect(other.calls()).toBe(2);
  });

  it("holds at most its size, dropping the oldest entry first", async () => {
    const cache = new FreshnessCache<string>(1000, 2);
    const source = loader();
    await cache.get("a", source.load, 0);
    await cache.get("b", source.load, 0);
    await cache.get("c", source.load, 0);
    expect(source.calls()).toBe(3);
    await cache.get("b", source.load, 1);
    await cache.get("c", source.load, 1);
    expect(source.calls()).toBe(3);
    await cache.get("a", source.load, 1);
    expect(source.calls()).toBe(4);
  });
});
