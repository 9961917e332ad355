import type { Role } from "../store/index.js";

/** Who is calling, once a credential has been verified. */
export interface Identity {
  kind: "api_token" | "oauth" | "capability";
  /** Stable ID for rate limits and idempotency keys (token ID, `oauth:<user>`, capability ID). */
  id: string;
  /** Scopes without the OAuth2 prefix; "all" for a credential created without a scope list. */
  scopes: ReadonlySet<string> | "all";
  /** The user behind the credential, when there is one. */
  userId: string | null;
  /**
   * Which organizations the identity reaches, and with which role:
   * an API token or capability reaches one organization; an OAuth2 user, every
   * organization they are a member of.
   */
  access:
    { kind: "organization"; organizationId: string; role: Role } | { kind: "memberships"; userId: string };
  /** Networks the credential may be used from (CIDRs); empty = anywhere. */
  allowedNetworks: readonly string[];
  /** Operations a capabilities token is limited to; undefined = any its scopes allow. */
  operations?: ReadonlySet<string>;
}

/** What a role may do in its organization. */
export const ROLE_ABILITIES: Record<Role, { read: boolean; write: boolean }> = {
  owner: { read: true, write: true },
  admin: { read: true, write: true },
  member: { read: true, write: true },
  viewer: { read: true, write: false },
};
