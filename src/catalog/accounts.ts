import type { Kysely } from "kysely";
import { hashSecret, newTokenSecret } from "../auth/secrets.js";
import { normaliseCidr } from "../auth/networks.js";
import { newId, type Database, type OrganizationState, type Role } from "../store/index.js";
import { isKnownCurrency } from "./reference-data.js";
import { addSshKeyRow } from "./ssh-keys.js";
import { allowedNetworksColumn, tokenScopesColumn } from "./columns.js";

/** Operator actions on organizations, users, SSH keys and API tokens (the admin CLI calls these). */

export class AccountError extends Error {}

const now = () => Math.floor(Date.now() / 1000);
const SUB_DOMAIN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function infrastructureDomain(subDomain: string, baseDomain: string): string {
  return `${subDomain}.${baseDomain}`;
}

export async function createOrganization(
  db: Kysely<Database>,
  input: {
    subDomain: string;
    name: string;
    state?: OrganizationState;
    currency?: string;
    country?: string | null;
    baseDomain: string;
  },
) {
  if (!SUB_DOMAIN.test(input.subDomain)) {
    throw new AccountError("a sub-domain is 1-63 lower-case letters, digits and inner hyphens");
  }
  const currency = input.currency ?? "GBP";
  if (!isKnownCurrency(currency)) throw new AccountError(`unknown currency ${currency}`);
  const existing = await db
    .selectFrom("organizations")
    .select("id")
    .where("sub_domain", "=", input.subDomain)
    .executeTakeFirst();
  if (existing) throw new AccountError(`an organization with sub-domain ${input.subDomain} exists already`);
  const state = input.state ?? "active";
  const t = now();
  const row = {
    id: newId("organization"),
    name: input.name,
    sub_domain: input.subDomain,
    infrastructure_domain: infrastructureDomain(input.subDomain, input.baseDomain),
    state,
    managed: 0 as const,
    currency_iso_code: currency,
    country_iso_code: input.country ?? null,
    created_at: t,
    activated_at: state === "not_activated" ? null : t,
    suspended_at: state === "suspended" ? t : null,
  };
  await db.insertInto("organizations").values(row).execute();
  return row;
}

export async function setOrganizationState(
  db: Kysely<Database>,
  subDomain: string,
  state: OrganizationState,
) {
  const t = now();
  const org = await db
    .selectFrom("organizations")
    .selectAll()
    .where("sub_domain", "=", subDomain)
    .executeTakeFirst();
  if (!org) throw new AccountError(`no organization with sub-domain ${subDomain}`);
  await db
    .updateTable("organizations")
    .set({
      state,
      suspended_at: state === "suspended" ? t : null,
      activated_at: state === "active" ? (org.activated_at ?? t) : org.activated_at,
    })
    .where("id", "=", org.id)
    .execute();
  return { ...org, state };
}

export async function organizationBySubDomain(db: Kysely<Database>, subDomain: string) {
  const org = await db
    .selectFrom("organizations")
    .selectAll()
    .where("sub_domain", "=", subDomain)
    .executeTakeFirst();
  if (!org) throw new AccountError(`no organization with sub-domain ${subDomain}`);
  return org;
}

export async function createUser(
  db: Kysely<Database>,
  input: {
    email: string;
    firstName?: string;
    lastName?: string;
    memberships: { subDomain: string; role: Role }[];
  },
) {
  if (!/^[^\s@]+@[^\s@]+$/.test(input.email))
    throw new AccountError(`${input.email} is not an email address`);
  const existing = await db
    .selectFrom("users")
    .selectAll()
    .where("email_address", "=", input.email)
    .executeTakeFirst();
  const user = existing ?? {
    id: newId("user"),
    email_address: input.email,
    first_name: input.firstName ?? null,
    last_name: input.lastName ?? null,
    created_at: now(),
  };
  await db.transaction().execute(async (trx) => {
    if (!existing) await trx.insertInto("users").values(user).execute();
    for (const membership of input.memberships) {
      const org = await organizationBySubDomain(trx, membership.subDomain);
      await trx
        .insertInto("memberships")
        .values({ organization_id: org.id, user_id: user.id, role: membership.role, created_at: now() })
        .onConflict((oc) => oc.columns(["organization_id", "user_id"]).doUpdateSet({ role: membership.role }))
        .execute();
    }
  });
  return user;
}

export async function addSshKey(
  db: Kysely<Database>,
  input: { subDomain: string; name: string; publicKey: string; userEmail?: string },
) {
  const org = await organizationBySubDomain(db, input.subDomain);
  let userId: string | null = null;
  if (input.userEmail) {
    const user = await db
      .selectFrom("users")
      .select("id")
      .where("email_address", "=", input.userEmail)
      .executeTakeFirst();
    if (!user) throw new AccountError(`no user ${input.userEmail}`);
    userId = user.id;
  }
  const result = await addSshKeyRow(db, {
    organizationId: org.id,
    userId,
    name: input.name,
    publicKey: input.publicKey,
  });
  if ("error" in result) throw new AccountError(result.error);
  return result.row;
}

export async function createApiToken(
  db: Kysely<Database>,
  input: {
    subDomain: string;
    name: string;
    role: Role;
    scopes: string[];
    allowedNetworks: string[];
    expiresInSeconds?: number;
    userEmail?: string;
  },
): Promise<{ id: string; token: string; organization_id: string }> {
  const org = await organizationBySubDomain(db, input.subDomain);
  const networks = input.allowedNetworks.map((cidr) => {
    const normal = normaliseCidr(
      cidr.includes("/") ? cidr : cidr.includes(":") ? `${cidr}/128` : `${cidr}/32`,
    );
    if (!normal) throw new AccountError(`${cidr} is not an IPv4 or IPv6 network (CIDR)`);
    return normal;
  });
  let userId: string | null = null;
  if (input.userEmail) {
    const user = await db
      .selectFrom("users")
      .select("id")
      .where("email_address", "=", input.userEmail)
      .executeTakeFirst();
    if (!user) throw new AccountError(`no user ${input.userEmail}`);
    userId = user.id;
  }
  const token = newTokenSecret();
  const id = newId("apiToken");
  const t = now();
  await db
    .insertInto("api_tokens")
    .values({
      id,
      name: input.name,
      organization_id: org.id,
      user_id: userId,
      role: input.role,
      secret_hash: hashSecret(token),
      scopes_json: tokenScopesColumn.encode(input.scopes.length > 0 ? input.scopes : "all"),
      allowed_networks_json: allowedNetworksColumn.encode(networks),
      created_at: t,
      expires_at: input.expiresInSeconds !== undefined ? t + input.expiresInSeconds : null,
      revoked_at: null,
      last_used_at: null,
      last_used_ip: null,
    })
    .execute();
  return { id, token, organization_id: org.id };
}

export async function revokeApiToken(db: Kysely<Database>, id: string): Promise<void> {
  const result = await db
    .updateTable("api_tokens")
    .set({ revoked_at: now() })
    .where("id", "=", id)
    .where("revoked_at", "is", null)
    .executeTakeFirst();
  if (Number(result.numUpdatedRows) === 0) throw new AccountError(`no active token ${id}`);
}

const MAINTENANCE = "maintenance";

export async function setMaintenance(db: Kysely<Database>, on: boolean): Promise<void> {
  await db
    .insertInto("settings")
    .values({ key: MAINTENANCE, value: on ? "on" : "off", updated_at: now() })
    .onConflict((oc) => oc.column("key").doUpdateSet({ value: on ? "on" : "off", updated_at: now() }))
    .execute();
}

export async function isInMaintenance(db: Kysely<Database>): Promise<boolean> {
  const row = await db
    .selectFrom("settings")
    .select("value")
    .where("key", "=", MAINTENANCE)
    .executeTakeFirst();
  return row?.value === "on";
}

/** Durations such as 90s, 30m, 12h, 7d. */
export function parseDuration(text: string): number {
  const match = /^([0-9]{1,9})([smhd])$/.exec(text.trim());
  if (!match) throw new AccountError(`a duration reads like 90s, 30m, 12h or 7d, got "${text}"`);
  return Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[match[2] as "s" | "m" | "h" | "d"];
}
