import { createHash } from "node:crypto";
import type { Kysely } from "kysely";
import { sshKeyProblem } from "../spec/index.js";
import { newId, type Database, type Row } from "../store/index.js";

/** OpenSSH's fingerprint: SHA256 of the key blob, unpadded base64. */
export function sshFingerprint(publicKey: string): string {
  const blob = Buffer.from(publicKey.trim().split(/\s+/)[1] ?? "", "base64");
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** Adds a public key to an organization, refusing malformed keys and duplicates. */
export async function addSshKeyRow(
  db: Kysely<Database>,
  input: { organizationId: string; userId: string | null; name: string; publicKey: string },
): Promise<{ row: Row<"ssh_keys"> } | { error: string }> {
  const problem = sshKeyProblem(input.publicKey);
  if (problem) return { error: problem };
  const fingerprint = sshFingerprint(input.publicKey);
  const duplicate = await db
    .selectFrom("ssh_keys")
    .select("id")
    .where("organization_id", "=", input.organizationId)
    .where("fingerprint", "=", fingerprint)
    .executeTakeFirst();
  if (duplicate) return { error: `Key has already been added to this organization (${duplicate.id})` };
  const row: Row<"ssh_keys"> = {
    id: newId("sshKey"),
    organization_id: input.organizationId,
    user_id: input.userId,
    name: input.name,
    public_key: input.publicKey.trim(),
    fingerprint,
    created_at: Math.floor(Date.now() / 1000),
  };
  await db.insertInto("ssh_keys").values(row).execute();
  return { row };
}

export async function deleteSshKey(db: Kysely<Database>, id: string): Promise<void> {
  await db.deleteFrom("ssh_keys").where("id", "=", id).execute();
}
