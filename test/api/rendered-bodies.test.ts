import { describe, expect, it } from "vitest";
import { RenderedBodies } from "../../src/api/rendered-bodies.js";

describe("RenderedBodies", () => {
  it("renders once per fingerprint and again when the fingerprint changes", async () => {
    const cache = new RenderedBodies();
    let renders = 0;
    const render = (state: string) => async () => ({ state, n: ++renders });
    const first = await cache.get("build:1", "pending", render("pending"));
    expect(JSON.parse(first.toString())).toEqual({ state: "pending", n: 1 });
    expect(await cache.get("build:1", "pending", render("pending"))).toBe(first);
    const changed = await cache.get("build:1", "failed", render("failed"));
    expect(JSON.parse(changed.toString())).toEqual({ state: "failed", n: 2 });
    expect(renders).toBe(2);
  });

  it("holds no more than its byte budget, dropping the oldest first, and never keeps an oversized body", async () => {
    const cache = new RenderedBodies(100);
    const body = (size: number) => async () => "x".repeat(size - 2); // JSON adds the two quotes
    await cache.get("a", "1", body(40));
    await cache.get("b", "1", body(40));
    expect(cache.bytes).toBe(80);
    await cache.get("c", "1", body(40));
    expect(cache.bytes).toBe(80);
    let rendered = false;
    await cache.get("a", "1", async () => ((rendered = true), "y"));
    expect(rendered).toBe(true);
    const huge = await cache.get("d", "1", body(500));
    expect(huge.length).toBe(500);
    expect(cache.bytes).toBeLessThanOrEqual(100);
  });
});
