/** What only a real socket shows: headers on the wire, keep-alive, and draining on shutdown. */
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createApiToken, createOrganization } from "../../src/catalog/accounts.js";
import { createServer, type RunningServer } from "../../src/server.js";
import { openTestStore, type TestStore } from "../support/stores.js";

let store: TestStore | undefined;
let server: RunningServer | undefined;

afterEach(async () => {
  await server?.stop();
  await store?.dispose();
  server = store = undefined;
});

async function start() {
  store = await openTestStore("sqlite");
  server = await createServer({ store: store.options, baseDomain: "t.test" });
  await createOrganization(server.store.db, { subDomain: "acme", name: "Acme", baseDomain: "t.test" });
  const { token } = await createApiToken(server.store.db, {
    subDomain: "acme",
    name: "t",
    role: "admin",
    scopes: [],
    allowedNetworks: [],
  });
  const address = await server.app.listen({ host: "127.0.0.1", port: 0 });
  return { token, url: new URL(address) };
}

function rawRequest(socket: Socket, text: string): Promise<string> {
  return new Promise((resolve) => {
    let data = "";
    socket.once("close", () => resolve(data || "closed"));
    const onData = (chunk: Buffer) => {
      data += chunk.toString();
      const [head, body] = data.split("\r\n\r\n");
      const length = Number(/content-length: (\d+)/i.exec(head ?? "")?.[1] ?? -1);
      if (body !== undefined && length >= 0 && Buffer.byteLength(body) >= length) {
        socket.off("data", onData);
        resolve(data);
      }
    };
    socket.on("data", onData);
    socket.write(text);
  });
}

describe("the server on a real socket", () => {
  it("answers with the observed headers", async () => {
    const { token, url } = await start();
    const response = await fetch(new URL("/core/v1/data_centers", url), {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(response.headers.get("x-ratelimit-permitted")).toBe("1000");
    expect(response.headers.get("access-control-allow-origin")).toBe("*");
    expect(response.headers.get("cache-control")).toBe("max-age=0, private, must-revalidate");
  });

  it("drains on shutdown: in-flight requests finish, new ones on open connections get 503, then it stops", async () => {
    const { token, url } = await start();
    const inFlight = connect(Number(url.port), url.hostname);
    const idle = connect(Number(url.port), url.hostname);
    await Promise.all([
      new Promise((r) => inFlight.once("connect", r)),
      new Promise((r) => idle.once("connect", r)),
    ]);
    // The idle connection is kept alive by one finished request.
    const first = await rawRequest(
      idle,
      `GET /core/v1/data_centers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`,
    );
    expect(first).toMatch(/^HTTP\/1.1 200/);

    const body = JSON.stringify({ organization: { sub_domain: "acme" }, xml: "<VirtualMachineSpec/>" });
    const halfway = Math.floor(body.length / 2);
    const response = rawRequest(
      inFlight,
      `POST /core/v1/organizations/_/virtual_machines/build_from_spec HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, halfway)}`,
    );
    await new Promise((r) => setTimeout(r, 100));
    let stopped = false;
    const stopping = server!.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(stopped).toBe(false);

    // An idle keep-alive connection is either closed by the drain or answered 503, never served.
    const refused = idle.destroyed
      ? "closed"
      : await rawRequest(
          idle,
          `GET /core/v1/data_centers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`,
        );
    if (refused !== "closed") {
      expect(refused).toMatch(/^HTTP\/1.1 503/);
      expect(refused).toContain('"code":"service_unavailable"');
    }

    inFlight.write(body.slice(halfway));
    const finished = await response;
    expect(finished).toMatch(/^HTTP\/1.1 422/);
    expect(finished.toLowerCase()).toContain("connection: close");
    await stopping;
    expect(stopped).toBe(true);
    inFlight.destroy();
    idle.destroy();
    server = undefined;
  });
});
