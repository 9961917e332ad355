import { decodeProtectedHeader } from "jose";
import type { Kysely } from "kysely";
import { ApiError } from "../errors.js";
import { prepare, type Database, type Role } from "../store/index.js";
import { CAPABILITY_TYPE, verifyCapability } from "./capabilities.js";
import { DEFAULT_AUTH_CACHE_MS, FreshnessCache } from "./freshness-cache.js";
import type { Identity } from "./identity.js";
import { addressInNetworks } from "./networks.js";
import type { OAuthVerifier } from "./oauth.js";
import { hashSecret, looksLikeApiToken } from "./secrets.js";
import { allowedNetworksColumn, tokenScopesColumn } from "../catalog/columns.js";

/** How often `last_used_at` is written for a busy token, at most (seconds). */
const LAST_USED_RESOLUTION = 60;

function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match?.[1];
}

function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

/** What authentication reads of a token, by the hash of its secret. */
const tokenByHash = (db: Kysely<Database>) =>
  prepare(
    db,
    (d, hash: string) =>
      d
        .selectFrom("api_tokens")
        .select([
          "id",
          "organization_id",
          "user_id",
          "role",
          "scopes_json",
          "allowed_networks_json",
          "expires_at",
          "revoked_at",
          "last_used_at",
        ])
        .where("secret_hash", "=", hash),
    1,
  );
type TokenRow = Awaited<ReturnType<ReturnType<typeof tokenByHash>>>[number];

/** What a token row grants; cached with the row, so a request does not parse its JSON again. */
function tokenIdentity(row: TokenRow): Identity {
  const scopes = tokenScopesColumn.decode(row.scopes_json);
  return {
    kind: "api_token",
    id: row.id,
    scopes: scopes === "all" ? "all" : new Set(scopes),
    userId: row.user_id,
    access: { kind: "organization", organizationId: row.organization_id, role: row.role },
    allowedNetworks: allowedNetworksColumn.decode(row.allowed_networks_json),
  };
}

const invalidToken = (details: string | null = null) => new ApiError("invalid_api_token", { details });

/**
 * Turns the `Authorization` header into an identity: an API token (`trb_...`), a
 * capabilities token (a JWT of type `trebuchet-capability+jwt`) or an OAuth2 access
 * token (any other JWT, when OAuth2 is configured). Every failure is the documented error.
 */
export class Authenticator {
  private readonly tokenByHash;
  private readonly tokens: FreshnessCache<{ row: TokenRow; identity: Identity }>;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly oauth?: OAuthVerifier,
    cacheMs = DEFAULT_AUTH_CACHE_MS,
  ) {
    this.tokens = new FreshnessCache(cacheMs);
    this.tokenByHash = tokenByHash(db);
  }

  async authenticate(authorization: string | undefined, callerIp: string): Promise<Identity> {
    const token = bearerToken(authorization);
    if (!token) throw new ApiError("missing_api_token");
    if (token.length > 8192) throw invalidToken();
    if (looksLikeJwt(token)) return this.jwt(token);
    if (!looksLikeApiToken(token)) throw invalidToken();
    return this.apiToken(token, callerIp);
  }

  private async apiToken(secret: string, callerIp: string): Promise<Identity> {
    const hash = hashSecret(secret);
    const token = await this.tokens.get(hash, async () => {
      const row = (await this.tokenByHash(hash))[0];
      return row && { row, identity: tokenIdentity(row) };
    });
    const now = Math.floor(Date.now() / 1000);
    if (!token) throw invalidToken();
    const { row, identity } = token;
    if (row.revoked_at !== null) throw invalidToken("The API token has been revoked");
    if (row.expires_at !== null && row.expires_at <= now) throw invalidToken("The API token has expired");
    const allowedNetworks = identity.allowedNetworks;
    if (allowedNetworks.length > 0 && !addressInNetworks(callerIp, allowedNetworks)) {
      throw new ApiError("unauthorized_network_for_api_token", { ip_address: callerIp });
    }
    if (row.last_used_at === null || now - row.last_used_at >= LAST_USED_RESOLUTION) {
      row.last_used_at = now;
      await this.db
        .updateTable("api_tokens")
        .set({ last_used_at: now, last_used_ip: callerIp })
        .where("id", "=", row.id)
        .execute();
    }
    return identity;
  }

  private async jwt(token: string): Promise<Identity> {
    let type: string | undefined;
    try {
      type = decodeProtectedHeader(token).typ;
    } catch {
      throw invalidToken();
    }
    if (type === CAPABILITY_TYPE) {
      const claims = await verifyCapability(this.db, token);
      if (!claims) throw new ApiError("invalid_capabilities_token");
      return {
        kind: "capability",
        id: claims.id,
        scopes: new Set(claims.scopes),
        userId: null,
        access: { kind: "organization", organizationId: claims.organizationId, role: "member" },
        allowedNetworks: [],
        ...(claims.operations.length > 0 ? { operations: new Set(claims.operations) } : {}),
      };
    }
    if (!this.oauth) throw invalidToken("OAuth2 access tokens are not enabled on this server");
    const subject = await this.oauth.verify(token);
    if (!subject) throw invalidToken("The OAuth2 access token did not verify");
    const user = await this.db
      .selectFrom("users")
      .select("id")
      .where((eb) =>
        eb.or([eb("id", "=", subject.subject), eb("email_address", "=", subject.email ?? subject.subject)]),
      )
      .executeTakeFirst();
    if (!user) throw invalidToken("The OAuth2 subject is not a user of this server");
    return {
      kind: "oauth",
      id: `oauth:${user.id}`,
      scopes: new Set(subject.scopes),
      userId: user.id,
      access: { kind: "memberships", userId: user.id },
      allowedNetworks: [],
    };
  }
}

/** The role an identity holds in an organization, or undefined when it has no access. */
export async function roleIn(
  db: Kysely<Database>,
  identity: Identity,
  organizationId: string,
): Promise<Role | undefined> {
  if (identity.access.kind === "organization") {
    return identity.access.organizationId === organizationId ? identity.access.role : undefined;
  }
  const membership = await db
    .selectFrom("memberships")
    .select("role")
    .where("organization_id", "=", organizationId)
    .where("user_id", "=", identity.access.userId)
    .executeTakeFirst();
  return membership?.role;
}
