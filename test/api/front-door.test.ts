/**
 * The HTTP server below the routes, over real sockets: what Node's parser refuses, slow
 * and unfinished requests, connection caps, pipelining after an error, encodings and
 * GET bodies. Every answer is in the envelope with a request ID.
 */
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HttpLimits } from "../../src/api/http-limits.js";
import { createApiToken, createOrganization } from "../../src/catalog/accounts.js";
import { ERRORS, type ErrorCode } from "../../src/errors.js";
import { createServer, type RunningServer } from "../../src/server.js";
import { exchange, request, type RawResponse } from "../support/raw-http.js";
import { openTestStore, type TestStore } from "../support/stores.js";

const LIMITS: Partial<HttpLimits> = {
  headersTimeoutMs: 1_000,
  bodyTimeoutMs: 1_000,
  keepAliveTimeoutMs: 2_000,
  maxConnectionsPerAddress: 40,
  maxConnections: 60,
  maxRequestsPerConnection: 3,
  maxUrlBytes: 4_096,
};

let store: TestStore;
let server: RunningServer;
let port: number;
let auth: { authorization: string };

beforeAll(async () => {
  store = await openTestStore("sqlite");
  server = await createServer({ store: store.options, baseDomain: "t.test", httpLimits: LIMITS });
  await createOrganization(server.store.db, { subDomain: "acme", name: "Acme", baseDomain: "t.test" });
  const { token } = await createApiToken(server.store.db, {
    subDomain: "acme",
    name: "t",
    role: "admin",
    scopes: [],
    allowedNetworks: [],
  });
  auth = { authorization: `Bearer ${token}` };
  port = Number(new URL(await server.app.listen({ host: "127.0.0.1", port: 0 })).port);
});

afterAll(async () => {
  await server.stop();
  await store.dispose();
});

/** The envelope, the documented status of its code, and a request ID. */
function expectEnvelope(response: RawResponse | undefined, code: ErrorCode) {
  expect(response, code).toBeDefined();
  const body = JSON.parse(response!.body) as { error: { code: string; description: string; detail: object } };
  expect(body.error.code).toBe(code);
  expect(response!.status).toBe(ERRORS[code].status);
  // route_not_found names the method and path, as every unknown route's answer does.
  if (code === "route_not_found")
    expect(body.error.description).toMatch(/^No route matches '.+' for [A-Z]+$/);
  else expect(body.error.description).toBe(ERRORS[code].description);
  expect(typeof body.error.detail).toBe("object");
  expect(response!.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
  expect(response!.headers["content-type"]).toBe("application/json; charset=utf-8");
  return body.error;
}

const ORG = "/core/v1/organizations/_?organization[sub_domain]=acme";

describe("requests Node's parser cannot read", () => {
  const cases: [string, string, ErrorCode][] = [
    [
      "Content-Length that is not a number",
      "POST /core/v1/ssh_keys/_ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
      "malformed_request",
    ],
    [
      "Content-Length and Transfer-Encoding",
      "POST /core/v1/ssh_keys/_ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "malformed_request",
    ],
    [
      "a chunk size that is not hex",
      "POST /core/v1/ssh_keys/_ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
      "malformed_request",
    ],
    ["an unknown method", "BREW /core/v1/users/current HTTP/1.1\r\nHost: x\r\n\r\n", "malformed_request"],
    ["HTTP/1.2", "GET /core/v1/users/current HTTP/1.2\r\nHost: x\r\n\r\n", "malformed_request"],
    // Node gives CONNECT to a listener, and destroys the socket silently without one.
    [
      "CONNECT (a proxy's method)",
      "CONNECT 203.0.113.1:443 HTTP/1.1\r\nHost: 203.0.113.1:443\r\n\r\n",
      "route_not_found",
    ],
    ["no request line", "\x00\x01\x02\r\n\r\n", "malformed_request"],
    [
      "headers over 16 KB",
      `GET /core/v1/users/current HTTP/1.1\r\nHost: x\r\nX-Pad: ${"a".repeat(17_000)}\r\n\r\n`,
      "request_header_fields_too_large",
    ],
    [
      "a URL over 16 KB",
      `GET /core/v1/users/current?${"a=1&".repeat(5_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
      "request_header_fields_too_large",
    ],
  ];
  it.each(cases)("%s: answered in the envelope, then the connection closes", async (_name, bytes, code) => {
    const result = await exchange(port, bytes);
    expect(result.responses).toHaveLength(1);
    expectEnvelope(result.responses[0], code);
    expect(result.responses[0]!.headers.connection).toBe("close");
    expect(result.closed).toBe(true);
  });
});

describe("requests the router and the server refuse, on a connection that stays usable", () => {
  it("a bad percent-escape in the path is 400 malformed_request, and the next pipelined request is answered", async () => {
    const result = await exchange(
      port,
      request("GET", "/core/v1/virtual_machines/%zz", auth) + request("GET", ORG, auth),
      { responses: 2 },
    );
    expectEnvelope(result.responses[0], "malformed_request");
    expect(result.responses[1]?.status).toBe(200);
  });

  it("a long ID in the path reads as it does in the query string", async () => {
    const id = `vm_${"a".repeat(600)}`;
    const inPath = await exchange(port, request("GET", `/core/v1/virtual_machines/${id}`, auth), {
      responses: 1,
    });
    const inQuery = await exchange(
      port,
      request("GET", `/core/v1/virtual_machines/_?virtual_machine[id]=${id}`, auth),
      { responses: 1 },
    );
    expectEnvelope(inPath.responses[0], "virtual_machine_not_found");
    expectEnvelope(inQuery.responses[0], "virtual_machine_not_found");
  });

  it("a URL past the limit is 414 uri_too_long", async () => {
    const result = await exchange(
      port,
      request("GET", `/core/v1/virtual_machines/${"a".repeat(5_000)}`, auth),
      {
        responses: 1,
      },
    );
    expect(expectEnvelope(result.responses[0], "uri_too_long").detail).toEqual({ limit_in_bytes: 4_096 });
  });

  it("an HTTP/1.1 request without Host is 400 malformed_request; an odd Expect is 417 expectation_failed", async () => {
    const noHost = await exchange(port, request("GET", ORG, { ...auth, host: null }), { responses: 1 });
    expectEnvelope(noHost.responses[0], "malformed_request");
    const expect417 = await exchange(
      port,
      request(
        "POST",
        "/core/v1/organizations/_/ssh_keys",
        { ...auth, expect: "200-ok", "content-type": "application/json" },
        "{}",
      ) + request("GET", ORG, auth),
      { responses: 2 },
    );
    expectEnvelope(expect417.responses[0], "expectation_failed");
    expect(expect417.responses[1]?.status).toBe(200);
  });

  it("an unparsable JSON body, a body past the shape limits or not JSON: answered, and the pipelined request after it too", async () => {
    for (const [body, type, code] of [
      ["{nope", "application/json", "invalid_json_body"],
      ["[".repeat(40) + "]".repeat(40), "application/json", "invalid_json_body"],
      ["a=1", "application/x-www-form-urlencoded", "unsupported_media_type"],
    ] as const) {
      const result = await exchange(
        port,
        request("POST", "/core/v1/organizations/_/ssh_keys", { ...auth, "content-type": type }, body) +
          request("GET", ORG, auth),
        { responses: 2 },
      );
      expectEnvelope(result.responses[0], code);
      expect(result.responses[0]!.headers.connection, body).not.toBe("close");
      expect(result.responses[1]?.status, body).toBe(200);
    }
  });

  it("a compressed body is 415 unsupported_media_type; identity is read as usual", async () => {
    const gzip = await exchange(
      port,
      request(
        "GET",
        "/core/v1/organizations/_",
        { ...auth, "content-type": "application/json", "content-encoding": "gzip" },
        '{"organization":{"sub_domain":"acme"}}',
      ),
      { responses: 1 },
    );
    expect(expectEnvelope(gzip.responses[0], "unsupported_media_type").detail).toMatchObject({
      details: expect.stringMatching(/gzip/),
    });
    const identity = await exchange(
      port,
      request(
        "GET",
        "/core/v1/organizations/_",
        { ...auth, "content-type": "application/json", "content-encoding": "identity" },
        '{"organization":{"sub_domain":"acme"}}',
      ),
      { responses: 1 },
    );
    expect(identity.responses[0]?.status).toBe(200);
  });

  it("GET arguments in a JSON body are read, as the README says", async () => {
    const withBody = await exchange(
      port,
      request(
        "GET",
        "/core/v1/organizations/_",
        { ...auth, "content-type": "application/json" },
        '{"organization":{"sub_domain":"acme"}}',
      ),
      { responses: 1 },
    );
    expect(withBody.responses[0]?.status).toBe(200);
    expect(JSON.parse(withBody.responses[0]!.body).organization.sub_domain).toBe("acme");
    const without = await exchange(port, request("GET", "/core/v1/organizations/_", auth), { responses: 1 });
    expectEnvelope(without.responses[0], "organization_not_found");
  });

  it("keep-alive: a connection serves its allowance of requests, the last answer says close", async () => {
    const result = await exchange(
      port,
      [ORG, ORG, ORG].map((target) => request("GET", target, auth)).join(""),
      {
        responses: 3,
      },
    );
    expect(result.responses.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(result.responses[2]!.headers.connection).toBe("close");
  });
});

describe("slow and unfinished requests", () => {
  it("a body that stops short of its Content-Length is 408 request_timeout within the body time", async () => {
    const result = await exchange(
      port,
      request(
        "POST",
        "/core/v1/organizations/_/ssh_keys",
        { ...auth, "content-type": "application/json", "content-length": "100" },
        '{"a":',
      ),
      { waitMs: 5_000 },
    );
    expectEnvelope(result.responses[0], "request_timeout");
    expect(result.closed).toBe(true);
    expect(result.elapsedMs).toBeLessThan(2_500);
  });

  it("a body trickled a byte at a time is cut at the body time too", async () => {
    const head = request("POST", "/core/v1/organizations/_/ssh_keys", {
      ...auth,
      "content-type": "application/json",
      "content-length": "50",
    });
    const result = await exchange(port, [head, ...'{"name":"trickle","public_key":"ssh-ed25519 A"}'], {
      gapMs: 100,
      waitMs: 5_000,
    });
    expectEnvelope(result.responses[0], "request_timeout");
    expect(result.elapsedMs).toBeLessThan(2_500);
  });

  it("headers that never end are 408 within the headers time", async () => {
    const result = await exchange(
      port,
      ["GET /core/v1/users/current HTTP/1.1\r\n", "Host: x\r\n", "X-A: 1\r\n"],
      {
        gapMs: 200,
        waitMs: 5_000,
      },
    );
    expectEnvelope(result.responses[0], "request_timeout");
    expect(result.elapsedMs).toBeLessThan(2_000);
  });

  it("a refused request whose body never comes gets one answer, then its connection is closed", async () => {
    const result = await exchange(
      port,
      request(
        "POST",
        "/core/v1/organizations/_/ssh_keys",
        { "content-type": "application/json", "content-length": "100" },
        "{",
      ),
      { waitMs: 5_000 },
    );
    expect(result.responses).toHaveLength(1);
    expectEnvelope(result.responses[0], "missing_api_token");
    expect(result.closed).toBe(true);
    expect(result.elapsedMs).toBeLessThan(3_000);
  });

  it("a connection that sends nothing is answered 408 and closed after the headers time", async () => {
    const result = await exchange(port, [], { waitMs: 5_000 });
    expectEnvelope(result.responses[0], "request_timeout");
    expect(result.closed).toBe(true);
    expect(result.elapsedMs).toBeLessThan(2_000);
  });
});

describe("connection caps", () => {
  async function hold(count: number, from = "127.0.0.1"): Promise<Socket[]> {
    const sockets = Array.from({ length: count }, () =>
      connect({ port, host: "127.0.0.1", localAddress: from }),
    );
    await Promise.all(sockets.map((s) => new Promise((resolve) => s.once("connect", resolve))));
    sockets.forEach((s) => s.on("error", () => {}).resume());
    return sockets;
  }

  it("past the per-address cap a connection's request is 429 too_many_connections; closing one makes room", async () => {
    const held = await hold(40);
    try {
      const refused = await exchange(port, request("GET", ORG, auth), { responses: 1 });
      const error = expectEnvelope(refused.responses[0], "too_many_connections");
      expect(error.detail).toMatchObject({ limit: 40, per: "address" });
      expect(refused.responses[0]!.headers["retry-after"]).toBe("1");
      held.pop()!.destroy();
      await new Promise((resolve) => setTimeout(resolve, 100));
      const served = await exchange(port, request("GET", ORG, auth), { responses: 1 });
      expect(served.responses[0]?.status).toBe(200);
    } finally {
      held.forEach((s) => s.destroy());
    }
  });

  it("past the total cap, a connection from any address is refused the same way", async () => {
    const held = [...(await hold(40, "127.0.0.2")), ...(await hold(20, "127.0.0.3"))];
    try {
      const refused = await exchange(port, request("GET", ORG, auth), { responses: 1, from: "127.0.0.4" });
      expect(expectEnvelope(refused.responses[0], "too_many_connections").detail).toMatchObject({
        limit: 60,
        per: "server",
      });
    } finally {
      held.forEach((s) => s.destroy());
    }
  });

  it("held connections that send nothing are closed by the headers time, so the cap frees itself", async () => {
    const held = await hold(40);
    const closed = held.map(
      (s) => new Promise<number>((resolve) => s.once("close", () => resolve(Date.now()))),
    );
    const started = Date.now();
    const times = await Promise.all(closed);
    expect(Math.max(...times) - started).toBeLessThan(2_500);
    await new Promise((resolve) => setTimeout(resolve, 100)); // the server's ends close a moment later
    const served = await exchange(port, request("GET", ORG, auth), { responses: 1 });
    expect(served.responses[0]?.status).toBe(200);
  });
});
