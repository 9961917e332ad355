import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { ListenAddress } from "../api/listen.js";
import { ApiError, routeNotFound } from "../errors.js";
import type { Metrics } from "./metrics.js";

export interface MetricsListener {
  /** `http://host:port/metrics` as bound (the port chosen when 0 was asked for). */
  url: string;
  close(): Promise<void>;
}

function sendError(response: ServerResponse, error: ApiError): void {
  response.writeHead(error.status, { "content-type": "application/json; charset=utf-8" });
  response.end(JSON.stringify(error.toBody()));
}

/**
 * Serves GET /metrics on its own address, apart from the API, so tenants never reach
 * it: the operator puts it on a private interface or behind the scraper's firewall.
 */
export async function listenMetrics(metrics: Metrics, address: ListenAddress): Promise<MetricsListener> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? "/").split("?")[0];
    if (path !== "/metrics") return sendError(response, routeNotFound(request.method ?? "GET", path ?? "/"));
    if (request.method !== "GET" && request.method !== "HEAD")
      return sendError(response, routeNotFound(request.method ?? "", path));
    metrics.text().then(
      (text) => {
        response.writeHead(200, { "content-type": metrics.contentType, "cache-control": "no-store" });
        response.end(request.method === "HEAD" ? undefined : text);
      },
      (error: Error) =>
        sendError(response, new ApiError("unhandled_exception", { details: `metrics: ${error.message}` })),
    );
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(address.port, address.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  const host = bound.family === "IPv6" ? `[${bound.address}]` : bound.address;
  return {
    url: `http://${host}:${bound.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
