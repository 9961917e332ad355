/**
 * Credentials, rate limits and scopes are checked before a request's body is read: a
 * refused request costs no parsing, however large its body, and is answered before the
 * body has even arrived.
 */
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startTestApi, withTenants, type TestApi } from "../support/api.js";

const BUILD = "/core/v1/organizations/_/virtual_machines/build_from_spec";
/** A valid JSON body of about 500 KiB. */
const LARGE_BODY = JSON.stringify({ organization: { sub_domain: "acme" }, xml: "x".repeat(500 * 1024) });

describe("authentication before the body", () => {
  let api: TestApi;
  let token: string;

  beforeAll(async () => {
    api = await startTestApi("sqlite");
    token = (await withTenants(api)).acmeToken;
  });
  afterAll(() => api.dispose());

  /** Counts JSON.parse calls on the large body while `work` runs. */
  async function bodyParses(work: () => Promise<unknown>): Promise<number> {
    const parse = vi.spyOn(JSON, "parse");
    try {
      await work();
      return parse.mock.calls.filter(([text]) => typeof text === "string" && text.length >= 500 * 1024)
        .length;
    } finally {
      parse.mockRestore();
    }
  }

  it("an invalid token with a 500 KiB body is refused without parsing the body", async () => {
    let status = 0;
    let code = "";
    const parses = await bodyParses(async () => {
      const response = await api.call("POST", BUILD, { token: "trb_nonsense", rawBody: LARGE_BODY });
      status = response.statusCode;
      code = response.json().error.code;
    });
    expect({ status, code, parses }).toEqual({ status: 403, code: "invalid_api_token", parses: 0 });
  });

  it("a token without the operation's scope is refused without parsing the body", async () => {
    const narrow = await api.token("acme", { scopes: ["organizations:read"] });
    let code = "";
    const parses = await bodyParses(async () => {
      code = (await api.call("POST", BUILD, { token: narrow, rawBody: LARGE_BODY })).json().error.code;
    });
    expect({ code, parses }).toEqual({ code: "scope_not_granted", parses: 0 });
  });

  it("a good token's body is parsed (once), so the counting above would have seen it", async () => {
    const parses = await bodyParses(() => api.call("POST", BUILD, { token, rawBody: LARGE_BODY }));
    expect(parses).toBe(1);
  });

  it("over a socket, the refusal comes back before the body is sent", async () => {
    const address = await api.server.app.listen({ host: "127.0.0.1", port: 0 });
    const { hostname, port } = new URL(address);
    const socket = connect(Number(port), hostname);
    try {
      const answer = await new Promise<string>((resolve, reject) => {
        let text = "";
        socket.on("data", (chunk) => {
          text += chunk;
          if (text.includes("\r\n\r\n") && text.includes("}}")) resolve(text);
        });
        socket.on("error", reject);
        setTimeout(() => reject(new Error(`no answer before the body: ${text}`)), 3000);
        // Headers only: the 500 KiB body is announced and never sent.
        socket.write(
          `POST ${BUILD} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer trb_nonsense\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${LARGE_BODY.length}\r\n\r\n`,
        );
      });
      expect(answer).toMatch(/^HTTP\/1.1 403/);
      expect(answer).toContain('"code":"invalid_api_token"');
    } finally {
      socket.destroy();
      await api.server.app.close();
    }
  });
});
