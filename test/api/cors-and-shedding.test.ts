/** CORS (none by default, configured origins with preflight) and load shedding under a real saturated event loop. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../support/api.js";

const PREFLIGHT = {
  origin: "https://console.example.com",
  "access-control-request-method": "POST",
  "access-control-request-headers": "authorization, content-type, idempotency-key",
};

describe("CORS with no origins configured (the default)", () => {
  let api: TestApi;
  let token: string;
  beforeAll(async () => {
    api = await startTestApi("sqlite");
    await api.organization("acme");
    token = await api.token("acme");
  });
  afterAll(() => api.dispose());

  it("adds nothing to answers, and refuses a browser's preflight in the envelope", async () => {
    const answer = await api.call("GET", "/core/v1/data_centers", {
      token,
      headers: { origin: "https://console.example.com" },
    });
    expect(answer.statusCode).toBe(200);
    expect(answer.headers["access-control-allow-origin"]).toBeUndefined();
    const preflight = await api.call(
      "OPTIONS",
      "/core/v1/organizations/_/virtual_machines/_/build_from_spec",
      {
        headers: PREFLIGHT,
      },
    );
    expect(preflight.statusCode).toBe(403);
    expect(preflight.headers["access-control-allow-origin"]).toBeUndefined();
    expect(preflight.json().error).toMatchObject({
      code: "cors_origin_not_allowed",
      detail: { origin: "https://console.example.com" },
    });
    // An OPTIONS that is no preflight is an unknown route, as before.
    expect((await api.call("OPTIONS", "/core/v1/data_centers")).json().error.code).toBe("route_not_found");
  });
});

describe("CORS with configured origins", () => {
  let api: TestApi;
  let token: string;
  beforeAll(async () => {
    api = await startTestApi("sqlite", { config: { cors: { origins: ["https://console.example.com"] } } });
    await api.organization("acme");
    token = await api.token("acme");
  });
  afterAll(() => api.dispose());

  it("answers a listed origin's preflight with what it may send, and its requests with what it may read", async () => {
    const preflight = await api.call(
      "OPTIONS",
      "/core/v1/organizations/_/virtual_machines/_/build_from_spec",
      {
        headers: PREFLIGHT,
      },
    );
    expect(preflight.statusCode).toBe(204);
    expect(preflight.headers["access-control-allow-origin"]).toBe("https://console.example.com");
    expect(String(preflight.headers["access-control-allow-methods"])).toContain("POST");
    expect(String(preflight.headers["access-control-allow-headers"]).toLowerCase()).toContain(
      "idempotency-key",
    );
    expect(preflight.headers["access-control-max-age"]).toBe("600");
    expect(preflight.headers.vary).toContain("Origin");

    const answer = await api.call("GET", "/core/v1/data_centers", {
      token,
      headers: { origin: "https://console.example.com" },
    });
    expect(answer.statusCode).toBe(200);
    expect(answer.headers["access-control-allow-origin"]).toBe("https://console.example.com");
    expect(String(answer.headers["access-control-expose-headers"])).toContain("X-Request-Id");
  });

  it("refuses an unlisted origin's preflight and gives its requests no CORS headers", async () => {
    const preflight = await api.call("OPTIONS", "/core/v1/data_centers", {
      headers: { ...PREFLIGHT, origin: "https://evil.example" },
    });
    expect(preflight.statusCode).toBe(403);
    expect(preflight.json().error.code).toBe("cors_origin_not_allowed");
    expect(preflight.headers["access-control-allow-origin"]).toBeUndefined();
    const answer = await api.call("GET", "/core/v1/data_centers", {
      token,
      headers: { origin: "https://evil.example" },
    });
    expect(answer.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it('"*" allows any origin, as Katapult does', async () => {
    const any = await startTestApi("sqlite", { config: { cors: { origins: ["*"] } } });
    try {
      const preflight = await any.call("OPTIONS", "/core/v1/data_centers", {
        headers: { ...PREFLIGHT, origin: "https://anyone.example" },
      });
      expect(preflight.statusCode).toBe(204);
      expect(preflight.headers["access-control-allow-origin"]).toBe("*");
    } finally {
      await any.dispose();
    }
  });
});

/** Keeps the event loop busy for `ms`, as a CPU-bound request would. */
function block(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe("load shedding", () => {
  it("refuses requests with 503 while the event loop is saturated, keeps /healthz, and recovers", async () => {
    const api = await startTestApi("sqlite", {
      config: {
        loadShedding: {
          maxEventLoopDelayMs: 50,
          maxHeapUsedBytes: null,
          maxRssBytes: null,
          sampleIntervalMs: 100,
        },
      },
    });
    try {
      await api.organization("acme");
      const token = await api.token("acme");
      expect((await api.call("GET", "/core/v1/data_centers", { token })).statusCode).toBe(200);
      let shed: Awaited<ReturnType<TestApi["call"]>> | undefined;
      for (let round = 0; round < 20 && !shed; round++) {
        // Saturated: the loop is blocked most of each sample.
        for (let i = 0; i < 3; i++) {
          block(150);
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        const answer = await api.call("GET", "/core/v1/data_centers", { token });
        if (answer.statusCode === 503) shed = answer;
      }
      expect(shed?.json().error).toMatchObject({
        code: "service_unavailable",
        detail: {
          details: expect.stringMatching(
            /^the server is overloaded: (event loop delay \d+ ms is above 50 ms|the event loop was blocked for a whole sample \(limit 50 ms\))$/,
          ),
        },
      });
      expect(shed?.headers["retry-after"]).toBe("5");
      expect(shed?.headers["x-request-id"]).toBeDefined();
      expect((await api.call("GET", "/healthz")).statusCode).toBe(200);
      expect((await api.call("GET", "/readyz")).statusCode).toBe(503);

      // Idle again: after a few samples requests are served.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect((await api.call("GET", "/core/v1/data_centers", { token })).statusCode).toBe(200);
    } finally {
      await api.dispose();
    }
  });

  it("refuses requests while the heap in use is above its limit", async () => {
    const api = await startTestApi("sqlite", {
      config: {
        loadShedding: {
          maxEventLoopDelayMs: null,
          maxHeapUsedBytes: 1024,
          maxRssBytes: null,
          sampleIntervalMs: 50,
        },
      },
    });
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const answer = await api.call("GET", "/core/v1/data_centers");
      expect(answer.statusCode).toBe(503);
      expect(answer.json().error.detail.details).toMatch(
        /^the server is overloaded: heap in use [0-9.]+ MiB is above 0\.0 MiB$/,
      );
      expect((await api.call("GET", "/healthz")).statusCode).toBe(200);
    } finally {
      await api.dispose();
    }
  });
});
