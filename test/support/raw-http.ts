/** HTTP/1.1 spoken by hand over a socket: for what a well-behaved client never sends. */
import { connect, type Socket } from "node:net";

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface Exchange {
  /** Every complete response read, in order. */
  responses: RawResponse[];
  /** The server closed the connection (rather than the wait running out). */
  closed: boolean;
  /** From the first byte written to the close, or to the end of the wait. */
  elapsedMs: number;
  /** Bytes after the last complete response. */
  rest: string;
}

/** Splits a byte stream into responses (every answer of ours carries Content-Length). */
export function parseResponses(data: string): { responses: RawResponse[]; rest: string } {
  const responses: RawResponse[] = [];
  let rest = data;
  for (;;) {
    const end = rest.indexOf("\r\n\r\n");
    if (end < 0) break;
    const [statusLine, ...lines] = rest.slice(0, end).split("\r\n");
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "")?.[1] ?? 0);
    if (status >= 100 && status < 200) {
      // An interim answer (100 Continue): the final one follows.
      rest = rest.slice(end + 4);
      continue;
    }
    const length = Number(headers["content-length"] ?? 0);
    const bodyBytes = Buffer.from(rest.slice(end + 4), "latin1");
    if (bodyBytes.length < length) break;
    responses.push({
      status,
      headers,
      body: bodyBytes.subarray(0, length).toString("utf8"),
    });
    rest = bodyBytes.subarray(length).toString("latin1");
  }
  return { responses, rest };
}

export interface ExchangeOptions {
  /** How long to wait for the server to close, after the last write (ms). */
  waitMs?: number;
  /** Stop waiting once this many responses have arrived. */
  responses?: number;
  /** Pieces written one after another, `gapMs` apart. */
  gapMs?: number;
  /** The client's address (any of 127.0.0.0/8 on Linux), to be another client. */
  from?: string;
}

/** Writes `pieces` to a new connection and reads what comes back. */
export function exchange(
  port: number,
  pieces: string | Buffer | (string | Buffer)[],
  options: ExchangeOptions = {},
): Promise<Exchange> {
  const parts = Array.isArray(pieces) ? pieces : [pieces];
  const waitMs = options.waitMs ?? 3_000;
  return new Promise((resolve) => {
    const socket: Socket = connect({
      port,
      host: "127.0.0.1",
      ...(options.from ? { localAddress: options.from } : {}),
    });
    const chunks: Buffer[] = [];
    const started = Date.now();
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const { responses, rest } = parseResponses(Buffer.concat(chunks).toString("latin1"));
      resolve({ responses, closed, elapsedMs: Date.now() - started, rest });
    };
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      if (options.responses !== undefined) {
        const { responses } = parseResponses(Buffer.concat(chunks).toString("latin1"));
        if (responses.length >= options.responses) finish(false);
      }
    });
    socket.on("close", () => finish(true));
    socket.on("error", () => finish(true));
    let next = 0;
    const write = () => {
      if (settled || socket.destroyed) return;
      if (next < parts.length) {
        socket.write(parts[next++]!);
        if (next < parts.length) return void setTimeout(write, options.gapMs ?? 0);
      }
      timer = setTimeout(() => finish(false), waitMs);
    };
    socket.once("connect", write);
  });
}

/** A request's bytes: method, target, headers (Host added unless given as null), body. */
export function request(
  method: string,
  target: string,
  headers: Record<string, string | null> = {},
  body = "",
): string {
  const all: Record<string, string | null> = { host: "trebuchet.test", ...headers };
  if (body !== "" && !Object.keys(all).some((name) => /^(content-length|transfer-encoding)$/i.test(name)))
    all["content-length"] = String(Buffer.byteLength(body));
  const lines = Object.entries(all)
    .filter((entry): entry is [string, string] => entry[1] !== null)
    .map(([name, value]) => `${name}: ${value}`);
  return `${method} ${target} HTTP/1.1\r\n${lines.join("\r\n")}\r\n\r\n${body}`;
}
