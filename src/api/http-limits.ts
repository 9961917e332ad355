import type { Server } from "node:http";
import type { Socket } from "node:net";
import { addressInNetworks } from "../auth/networks.js";
import { ApiError } from "../errors.js";
import { answerAndClose } from "./raw-answers.js";

/**
 * What one client may hold of the HTTP server: time to send a request, connections,
 * requests per connection, URL and header sizes. Node's HTTP parser enforces the times
 * and sizes it knows of (headers, the whole request, header bytes); what it does not
 * (connections per address, a body's time after its headers, the URL's length) is here.
 */
export interface HttpLimits {
  /** From a request's first byte to the end of its headers. */
  headersTimeoutMs: number;
  /** From the end of a request's headers to the end of its body. */
  bodyTimeoutMs: number;
  /** How long an idle keep-alive connection is kept. */
  keepAliveTimeoutMs: number;
  /** Requests one connection may make before the server closes it (after answering). */
  maxRequestsPerConnection: number;
  /** Connections open at once, in all; beyond this they get 429 too_many_connections. */
  maxConnections: number;
  /** Connections open at once from one client address (trusted proxies are exempt). */
  maxConnectionsPerAddress: number;
  /** Bytes of the request target (path and query). */
  maxUrlBytes: number;
  /** Bytes of the request line and headers together (Node's parser: 431 beyond). */
  maxHeaderBytes: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  headersTimeoutMs: 10_000,
  bodyTimeoutMs: 10_000,
  keepAliveTimeoutMs: 10_000,
  maxRequestsPerConnection: 10_000,
  maxConnections: 1_024,
  maxConnectionsPerAddress: 128,
  maxUrlBytes: 8_192,
  maxHeaderBytes: 16_384,
};

/** How often Node's parser checks for requests past their time, and we for slow bodies. */
export const TIMEOUT_CHECK_INTERVAL_MS = 250;

/**
 * Counts open connections, in all and per client address, and marks those past a cap
 * as they are accepted. A marked connection is still read as HTTP, so its first request
 * gets a proper answer (429 in the envelope, then the connection is closed) rather than
 * a reset; beyond twice the total, Node drops new connections unanswered.
 */
export class ConnectionCaps {
  private readonly perAddress = new Map<string, number>();
  private readonly overCap = new WeakMap<Socket, ApiError>();
  private readonly trustedNetworks: string[];
  /** Connections that have not sent a byte yet, with when they must have. */
  private readonly silent = new Map<Socket, number>();
  private sweeper: NodeJS.Timeout | undefined;
  private open = 0;

  constructor(
    private readonly limits: HttpLimits,
    trustedProxies: readonly string[] = [],
  ) {
    // Proxies are given as addresses or CIDRs; a bare address is a network of one.
    this.trustedNetworks = trustedProxies.map((proxy) =>
      proxy.includes("/") ? proxy : `${proxy}/${proxy.includes(":") ? 128 : 32}`,
    );
  }

  attach(server: Server): void {
    server.maxConnections = this.limits.maxConnections * 2;
    server.prependListener("connection", (socket: Socket) => this.accepted(socket));
  }

  /** The refusal owed to a request arriving on this connection, if it is over a cap. */
  refusal(socket: Socket): ApiError | undefined {
    return this.overCap.get(socket);
  }

  private accepted(socket: Socket): void {
    const address = socket.remoteAddress ?? "";
    const counted = !this.isTrustedProxy(address);
    const fromAddress = counted ? (this.perAddress.get(address) ?? 0) + 1 : 0;
    if (counted) this.perAddress.set(address, fromAddress);
    this.open++;
    if (this.open > this.limits.maxConnections) {
      this.overCap.set(socket, tooMany("server", this.limits.maxConnections));
    } else if (fromAddress > this.limits.maxConnectionsPerAddress) {
      this.overCap.set(socket, tooMany("address", this.limits.maxConnectionsPerAddress));
    }
    // Node's parser times out headers only once they have begun: a connection that never
    // sends anything is closed here, after the same time.
    this.silent.set(socket, Date.now() + this.limits.headersTimeoutMs);
    this.sweeper ??= setInterval(() => this.sweepSilent(), TIMEOUT_CHECK_INTERVAL_MS).unref();
    socket.once("close", () => {
      this.silent.delete(socket);
      this.open--;
      if (!counted) return;
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left === 0) this.perAddress.delete(address);
      else this.perAddress.set(address, left);
    });
  }

  private sweepSilent(): void {
    const now = Date.now();
    for (const [socket, deadline] of this.silent) {
      if (socket.bytesRead > 0 || socket.destroyed) this.silent.delete(socket);
      else if (now >= deadline) {
        this.silent.delete(socket);
        answerAndClose(
          socket,
          new ApiError("request_timeout", {
            details: `nothing was sent within ${this.limits.headersTimeoutMs} ms of connecting`,
          }),
        );
      }
    }
    if (this.silent.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private isTrustedProxy(address: string): boolean {
    return this.trustedNetworks.length > 0 && addressInNetworks(address, this.trustedNetworks);
  }
}

function tooMany(scope: "server" | "address", limit: number): ApiError {
  return new ApiError(
    "too_many_connections",
    {
      details:
        scope === "server"
          ? `the server has more than ${limit} connections open`
          : `more than ${limit} connections are open from your address`,
      limit,
      per: scope,
    },
    undefined,
    { "retry-after": "1", connection: "close" },
  );
}
