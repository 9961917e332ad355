import type { IncomingMessage } from "node:http";
import { ApiError } from "../errors.js";
import { TIMEOUT_CHECK_INTERVAL_MS } from "./http-limits.js";

/**
 * A body must arrive within its time of the request's headers. Nearly every body has
 * arrived by the time its credential is checked (it comes with the headers); a slower
 * one is watched, by one timer for every slow body rather than one timer each, and its
 * read fails with 408 once its time is up.
 */
export class BodyDeadlines {
  private readonly waiting = new Map<IncomingMessage, number>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly bodyTimeoutMs: number) {}

  /** Called once the request's headers are in: a body still arriving gets its deadline. */
  watch(raw: IncomingMessage): void {
    if (raw.complete) return;
    const framed =
      raw.headers["transfer-encoding"] !== undefined || Number(raw.headers["content-length"]) > 0;
    if (!framed) return;
    this.waiting.set(raw, Date.now() + this.bodyTimeoutMs);
    const forget = () => this.forget(raw);
    raw.once("end", forget).once("close", forget);
    this.sweeper ??= setInterval(() => this.sweep(), TIMEOUT_CHECK_INTERVAL_MS).unref();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [raw, deadline] of this.waiting) {
      if (raw.complete) this.forget(raw);
      if (raw.complete || now < deadline) continue;
      this.forget(raw);
      // The body's reader (Fastify's) hears it as a failed read and answers 408, closing
      // the connection: the rest of the body will not be read. Nobody reading: just close.
      if (raw.listenerCount("error") > 0) {
        raw.emit(
          "error",
          new ApiError("request_timeout", {
            details: `the body did not arrive within ${this.bodyTimeoutMs} ms of the headers`,
          }),
        );
      } else raw.socket.destroy();
    }
  }

  private forget(raw: IncomingMessage): void {
    this.waiting.delete(raw);
    if (this.waiting.size === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }
}

/** Bodies are read as sent: a compressed one is refused rather than read as JSON. */
export function encodingRefusal(contentEncoding: string | undefined): ApiError | undefined {
  if (contentEncoding === undefined) return undefined;
  const codings = contentEncoding
    .split(",")
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== "" && coding !== "identity");
  if (codings.length === 0) return undefined;
  return new ApiError("unsupported_media_type", {
    details: `Content-Encoding ${codings.join(", ").slice(0, 100)} is not accepted: send the body uncompressed`,
  });
}
