import { randomBytes } from "node:crypto";
import { errors as joseErrors, jwtVerify, SignJWT } from "jose";
import type { Kysely } from "kysely";
import { newId, type Database } from "../store/index.js";

/**
 * Capabilities tokens: short-lived JWTs (HS256) that grant a narrow set of operations
 * in one organization, for handing to a CI job or a script instead of an API token.
 * The signing key lives in the database so every API process verifies the same tokens.
 */
export const CAPABILITY_TYPE = "trebuchet-capability+jwt";
const KEY_SETTING = "capability_signing_key";

export interface CapabilityClaims {
  id: string;
  organizationId: string;
  scopes: string[];
  /** Operation names (e.g. `build_from_spec`); empty = whatever the scopes allow. */
  operations: string[];
  expiresAt: number;
}

async function signingKey(db: Kysely<Database>, create: boolean): Promise<Uint8Array | undefined> {
  const row = await db
    .selectFrom("settings")
    .select("value")
    .where("key", "=", KEY_SETTING)
    .executeTakeFirst();
  if (row) return Buffer.from(row.value, "base64");
  if (!create) return undefined;
  const value = randomBytes(32).toString("base64");
  await db
    .insertInto("settings")
    .values({ key: KEY_SETTING, value, updated_at: Math.floor(Date.now() / 1000) })
    .onConflict((oc) => oc.column("key").doNothing())
    .execute();
  return signingKey(db, false);
}

export async function mintCapability(
  db: Kysely<Database>,
  grant: { organizationId: string; scopes: string[]; operations: string[]; expiresInSeconds: number },
): Promise<{ token: string; claims: CapabilityClaims }> {
  const key = (await signingKey(db, true))!;
  const id = newId("capability");
  const now = Math.floor(Date.now() / 1000);
  const expiresAt = now + grant.expiresInSeconds;
  const token = await new SignJWT({ org: grant.organizationId, scopes: grant.scopes, ops: grant.operations })
    .setProtectedHeader({ alg: "HS256", typ: CAPABILITY_TYPE })
    .setJti(id)
    .setIssuedAt(now)
    .setExpirationTime(expiresAt)
    .sign(key);
  return {
    token,
    claims: {
      id,
      organizationId: grant.organizationId,
      scopes: grant.scopes,
      operations: grant.operations,
      expiresAt,
    },
  };
}

/** The claims of a valid token, or undefined for a bad signature, another key, expiry or a malformed token. */
export async function verifyCapability(
  db: Kysely<Database>,
  token: string,
): Promise<CapabilityClaims | undefined> {
  const key = await signingKey(db, false);
  if (!key) return undefined;
  try {
    const { payload } = await jwtVerify(token, key, {
      algorithms: ["HS256"],
      typ: CAPABILITY_TYPE,
      requiredClaims: ["exp", "jti"],
    });
    const { org, scopes, ops } = payload as { org?: unknown; scopes?: unknown; ops?: unknown };
    if (typeof org !== "string" || !isStringArray(scopes) || !isStringArray(ops)) return undefined;
    return { id: payload.jti!, organizationId: org, scopes, operations: ops, expiresAt: payload.exp! };
  } catch (error) {
    if (error instanceof joseErrors.JOSEError || error instanceof TypeError) return undefined;
    throw error;
  }
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === "string");
}
