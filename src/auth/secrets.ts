import { hash, timingSafeEqual } from "node:crypto";
import { randomAlphanumeric } from "../store/index.js";

/** API token secrets: `trb_` and 40 random alphanumerics (~238 bits). Only the SHA-256 is stored. */
export const TOKEN_PREFIX = "trb_";

export function newTokenSecret(): string {
  return TOKEN_PREFIX + randomAlphanumeric(40);
}

/** One-shot `crypto.hash`: a third of `createHash(...).update(...).digest(...)`'s cost, paid by every request. */
export function hashSecret(secret: string): string {
  return hash("sha256", secret, "hex");
}

export function looksLikeApiToken(value: string): boolean {
  return (
    value.startsWith(TOKEN_PREFIX) &&
    value.length === TOKEN_PREFIX.length + 40 &&
    /^[A-Za-z0-9_]+$/.test(value)
  );
}

export function safeEqualHex(a: string, b: string): boolean {
  const left = Buffer.from(a, "hex");
  const right = Buffer.from(b, "hex");
  return left.length === right.length && timingSafeEqual(left, right);
}
