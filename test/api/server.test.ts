/** What only a real socket shows: headers on the wire, keep-alive, and draining on shutdown. */
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createApiToken, createOrganization } from "../../src/catalog/accounts.js";
import { createServer, type RunningServer } from "../../src/server.js";
import { openTestStore, type TestStore } from "../support/stores.js";

let store: TestStore | undefined;
let server: RunningServer | undefined;
/** The server's ends of the connections made to it. */
let accepted: Socket[] = [];

afterEach(async () => {
  await server?.stop();
  await store?.dispose();
  server = store = undefined;
  accepted = [];
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
  server.app.server.on("connection", (socket: Socket) => accepted.push(socket));
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

/** Resolves once the server has read everything written on this client connection. */
async function serverHasRead(client: Socket): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const end = accepted.find((socket) => socket.remotePort === client.localPort);
    if (end && end.bytesRead >= client.bytesWritten) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("the server did not read what the client wrote");
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
    // Katapult answers Access-Control-Allow-Origin: *; here CORS is off until origins are configured.
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    expect(response.headers.get("cache-control")).toBe("max-age=0, private, must-revalidate");
  });

  it("drains on shutdown: in-flight requests finish, new ones on open connections get 503, then it stops", async () => {
    const { token, url } = await start();
    const inFlight = connect(Number(url.port), url.hostname);
    const keptAlive = connect(Number(url.port), url.hostname);
    await Promise.all([
      new Promise((r) => inFlight.once("connect", r)),
      new Promise((r) => keptAlive.once("connect", r)),
    ]);
    // The second connection is kept alive by one finished request.
    const get = `GET /core/v1/data_centers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`;
    const first = await rawRequest(keptAlive, get);
    expect(first).toMatch(/^HTTP\/1.1 200/);

    const body = JSON.stringify({ organization: { sub_domain: "acme" }, xml: "<VirtualMachineSpec/>" });
    const halfway = Math.floor(body.length / 2);
    const response = rawRequest(
      inFlight,
      `POST /core/v1/organizations/_/virtual_machines/build_from_spec HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, halfway)}`,
    );
    // The kept-alive connection begins its second request before the drain: with a
    // request under way it is not idle, so the drain cannot close it, and the request,
    // finished once the drain has begun, is a new one.
    const split = get.indexOf("\r\n") + 2;
    keptAlive.write(get.slice(0, split));
    await serverHasRead(inFlight);
    await serverHasRead(keptAlive);
    let stopped = false;
    const stopping = server!.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(stopped).toBe(false);
    expect(keptAlive.destroyed).toBe(false);

    const refused = await rawRequest(keptAlive, get.slice(split));
    expect(refused).toMatch(/^HTTP\/1.1 503 /);
    expect(refused.toLowerCase()).toContain("connection: close");
    expect(JSON.parse(refused.split("\r\n\r\n")[1]!)).toEqual({
      error: {
        code: "service_unavailable",
        description: "The service is currently unavailable, please try again later",
        detail: { details: "the server is shutting down" },
      },
    });

    inFlight.write(body.slice(halfway));
    const finished = await response;
    expect(finished).toMatch(/^HTTP\/1.1 422/);
    expect(finished.toLowerCase()).toContain("connection: close");
    await stopping;
    expect(stopped).toBe(true);
    inFlight.destroy();
    keptAlive.destroy();
    server = undefined;
  });
});
