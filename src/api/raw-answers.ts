import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { ApiError, routeNotFound } from "../errors.js";
import type { HttpLimits } from "./http-limits.js";

/**
 * Answers for what never reaches a route: requests Node's HTTP parser cannot read
 * (`clientError`) and `Expect` headers it would answer itself. They are in the same
 * envelope, with a request ID, as every other answer.
 */

const ERROR_HEADERS = {
  "content-type": "application/json; charset=utf-8",
  "x-api-schema": "json-error",
  "cache-control": "max-age=0, private, must-revalidate",
};

/** How long a connection whose request could not be read is kept to deliver its answer. */
const LINGER_MS = 1_000;

/** What a parser error means for its client. */
export function clientErrorAnswer(code: string | undefined, limits: HttpLimits): ApiError {
  switch (code) {
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return new ApiError("request_timeout", {
        details: `the request must arrive within ${limits.headersTimeoutMs} ms for its headers and ${limits.bodyTimeoutMs} ms more for its body`,
      });
    case "HPE_HEADER_OVERFLOW":
      return new ApiError("request_header_fields_too_large", { limit_in_bytes: limits.maxHeaderBytes });
    case "HPE_INVALID_METHOD":
      return new ApiError("malformed_request", { details: "the method is not an HTTP method" });
    case "HPE_INVALID_VERSION":
      return new ApiError("malformed_request", { details: "only HTTP/1.0 and HTTP/1.1 are served" });
    case "HPE_UNEXPECTED_CONTENT_LENGTH":
    case "HPE_INVALID_TRANSFER_ENCODING":
      return new ApiError("malformed_request", {
        details: "Transfer-Encoding must end with chunked, and not come with Content-Length",
      });
    case "HPE_INVALID_CONTENT_LENGTH":
      return new ApiError("malformed_request", { details: "the Content-Length header is not a length" });
    case "HPE_INVALID_CHUNK_SIZE":
      return new ApiError("malformed_request", { details: "a chunk of the body has no valid size" });
    default:
      return new ApiError("malformed_request", {
        details: `the request could not be parsed (${code ?? "unknown error"})`,
      });
  }
}

/**
 * Node's `clientError`: the request could not be read, so its framing is unknown and the
 * connection cannot be reused. Answer (unless an answer to it has begun), then close.
 */
export function onClientError(limits: HttpLimits) {
  return (error: Error & { code?: string }, socket: Socket): void => {
    if (error.code === "ECONNRESET" || socket.destroyed) return;
    // Node's own internals say whether the request being read has been answered: a
    // response in flight, or one sent while the rest of its body was still arriving
    // (Node then reads that body only to discard it). A second answer would be read by
    // the client as the answer to its next request.
    const internals = socket as Socket & {
      _httpMessage?: { headersSent?: boolean } | null;
      parser?: { incoming?: { _dumped?: boolean } | null } | null;
    };
    const answered =
      internals._httpMessage?.headersSent === true || internals.parser?.incoming?._dumped === true;
    if (!socket.writable || socket.writableEnded || answered) {
      socket.destroy();
      return;
    }
    answerAndClose(socket, clientErrorAnswer(error.code, limits));
  };
}

/** Writes an error on a connection outside any request, then closes it. */
export function answerAndClose(socket: Socket, answer: ApiError): void {
  {
    const body = JSON.stringify(answer.toBody());
    const head = [
      `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? "Error"}`,
      ...Object.entries({ ...ERROR_HEADERS, "x-request-id": randomUUID(), connection: "close" }).map(
        ([name, value]) => `${name}: ${value}`,
      ),
      `content-length: ${Buffer.byteLength(body)}`,
    ];
    socket.end(`${head.join("\r\n")}\r\n\r\n${body}`);
    // Whatever else the client sends is not read: close the socket once it has had time
    // to take the answer, so a client that never reads cannot hold it.
    socket.once("end", () => socket.destroy());
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  }
}

/**
 * An `Expect` other than `100-continue` (which Node answers by going on): 417 in the
 * envelope. The request's framing is known, so the connection stays usable.
 */
export function onUnmetExpectation(request: IncomingMessage, response: ServerResponse): void {
  const error = new ApiError("expectation_failed", {
    details: `Expect: ${String(request.headers.expect).slice(0, 100)} is not supported; only 100-continue is`,
  });
  const body = JSON.stringify(error.toBody());
  response.writeHead(error.status, {
    ...ERROR_HEADERS,
    "x-request-id": randomUUID(),
    "content-length": Buffer.byteLength(body),
  });
  response.end(body);
}

/**
 * `CONNECT` (a proxy's method): Node hands the socket to a `connect` listener and, with
 * none, destroys it without a word. No route takes it: 404 in the envelope, then closed,
 * since what follows a CONNECT is not HTTP.
 */
export function onConnectMethod(request: IncomingMessage, socket: Socket): void {
  answerAndClose(socket, routeNotFound("CONNECT", String(request.url).slice(0, 200)));
}
