import { readFileSync } from "node:fs";
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet } from "jose";

/** OAuth2 access tokens: JWTs from a configured issuer, verified against a JWKS. */
export interface OAuthConfig {
  issuer: string;
  audience: string;
  /** A JSON Web Key Set file with the issuer's public keys. */
  jwksFile: string;
  /** Prefix of scopes in tokens (Katapult: `api.katapult.io/core/v1/`). */
  scopePrefix: string;
}

export const DEFAULT_SCOPE_PREFIX = "api.katapult.io/core/v1/";

export interface OAuthSubject {
  /** `sub`: a Trebuchet user ID or an email address. */
  subject: string;
  email: string | undefined;
  scopes: string[];
}

export class OAuthVerifier {
  private readonly keys: ReturnType<typeof createLocalJWKSet>;

  constructor(private readonly config: OAuthConfig) {
    const jwks = JSON.parse(readFileSync(config.jwksFile, "utf8")) as JSONWebKeySet;
    this.keys = createLocalJWKSet(jwks);
  }

  /** The token's subject and (unprefixed) scopes, or undefined when it does not verify. */
  async verify(token: string): Promise<OAuthSubject | undefined> {
    try {
      const { payload } = await jwtVerify(token, this.keys, {
        issuer: this.config.issuer,
        audience: this.config.audience,
        requiredClaims: ["sub", "exp"],
      });
      const raw =
        typeof payload.scope === "string"
          ? payload.scope.split(" ")
          : Array.isArray(payload.scp)
            ? payload.scp
            : [];
      const scopes = raw
        .filter((s): s is string => typeof s === "string" && s.startsWith(this.config.scopePrefix))
        .map((s) => s.slice(this.config.scopePrefix.length));
      const email = typeof payload.email === "string" ? payload.email : undefined;
      return { subject: payload.sub!, email, scopes };
    } catch (error) {
      if (error instanceof joseErrors.JOSEError || error instanceof TypeError) return undefined;
      throw error;
    }
  }
}
