import type { IncomingMessage } from "node:http";
import { PassThrough, type Readable } from "node:stream";
import { ApiError } from "../errors.js";
import { TIMEOUT_CHECK_INTERVAL_MS } from "./http-limits.js";

/**
 * A body must arrive within its time of the request's headers. Bodies that have all
 * arrived by the time the route reads them (nearly all: they come with the headers) are
 * read as they are; a slower one is read through a stream that fails with 408 once its
 * time is up, checked by one timer for every slow body rather than one timer each.
 */
export class BodyDeadlines {
  private readonly waiting = new Map<PassThrough, number>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly bodyTimeoutMs: number) {}

  /** The stream to read the request's body from. */
  guard(raw: IncomingMessage): Readable {
    const framed =
      raw.headers["transfer-encoding"] !== undefined || Number(raw.headers["content-length"]) > 0;
    if (raw.complete || !framed) return raw;
    const guarded = new PassThrough();
    // Whoever reads the body hears of its failure; one that is never read must not throw.
    guarded.on("error", () => {});
    const forget = () => this.forget(guarded);
    // pipe() does not pass on a client's abort: the read must fail, not wait for its deadline.
    raw.once("aborted", () =>
      guarded.destroy(
        new ApiError("malformed_request", { details: "the connection closed before the body ended" }),
      ),
    );
    raw.pipe(guarded);
    guarded.once("end", forget).once("close", forget);
    this.waiting.set(guarded, Date.now() + this.bodyTimeoutMs);
    this.sweeper ??= setInterval(() => this.sweep(), TIMEOUT_CHECK_INTERVAL_MS).unref();
    return guarded;
  }

  private sweep(): void {
    const now = Date.now();
    for (const [guarded, deadline] of this.waiting) {
      if (now < deadline) continue;
      this.forget(guarded);
      // The answer says why and closes the connection: the rest of the body will not be read.
      guarded.destroy(
        new ApiError("request_timeout", {
          details: `the body did not arrive within ${this.bodyTimeoutMs} ms of the headers`,
        }),
      );
    }
  }

  private forget(guarded: PassThrough): void {
    this.waiting.delete(guarded);
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
