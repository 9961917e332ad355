/**
 * Secrets at rest and in logs, on SQLite and PostgreSQL, for every kind of credential:
 * API tokens (made by the admin CLI and by the accounts module), a capabilities token
 * (made by the admin CLI) and an OAuth2 access token (a JWT from a test issuer). Each is
 * used against the API, with the server's log captured at its most verbose; then every
 * column of every table and every log line are searched for each secret, in any case.
 */
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { sql, type Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database, DialectName } from "../../src/store/index.js";
import { startTestApi, withTenants, type TestApi } from "../support/api.js";
import { runCliAsync } from "../support/cli.js";
import { DIALECTS } from "../support/stores.js";

const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");
const BUILD = "/core/v1/organizations/_/virtual_machines/build_from_spec";
const VALIDATE = "/core/v1/organizations/_/virtual_machines/validate_spec";
const ISSUER = "https://identity.test";
const SCOPE_PREFIX = "api.katapult.io/core/v1/";

/** Every table of the database, read from the database's own catalog. */
async function tableNames(db: Kysely<Database>, dialect: DialectName): Promise<string[]> {
  const result =
    dialect === "sqlite"
      ? await sql<{ name: string }>`select name from sqlite_master where type = 'table'`.execute(db)
      : await sql<{
          name: string;
        }>`select table_name as name from information_schema.tables where table_schema = current_schema() and table_type = 'BASE TABLE'`.execute(
          db,
        );
  return result.rows.map((r) => r.name);
}

/** A value as text, in every form it could hide a secret in: bytes also as UTF-8, hex and base64. */
function texts(value: unknown): string[] {
  if (value === null || value === undefined) return [];
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
    const bytes = Buffer.from(value);
    return [bytes.toString("utf8"), bytes.toString("hex"), bytes.toString("base64")];
  }
  if (value instanceof Date) return [value.toISOString()];
  if (typeof value === "object") return [JSON.stringify(value)];
  return [String(value)];
}

/** Every column of every row of every table: `table.column: value`, one a line. */
async function dumpDatabase(db: Kysely<Database>, dialect: DialectName) {
  const lines: string[] = [];
  const tables = await tableNames(db, dialect);
  for (const table of tables) {
    const { rows } = await sql<Record<string, unknown>>`select * from ${sql.table(table)}`.execute(db);
    for (const row of rows)
      for (const [column, value] of Object.entries(row))
        for (const text of texts(value)) lines.push(`${table}.${column}: ${text}`);
  }
  return { tables, lines };
}

/** The forms of a secret that would give it away: itself, and itself base64- or hex-encoded. */
function forms(secret: string): string[] {
  const bytes = Buffer.from(secret, "utf8");
  return [secret, bytes.toString("base64"), bytes.toString("base64url"), bytes.toString("hex")];
}

interface Secret {
  what: string;
  /** Texts none of which may appear anywhere (compared case-insensitively). */
  needles: string[];
}

/**
 * An API token: `trb_` and 40 random characters. Its random part is the secret; a long
 * piece of it also finds a forged copy (one character changed near its end).
 */
function apiTokenSecret(what: string, token: string): Secret {
  expect(token).toMatch(/^trb_[A-Za-z0-9]{40}$/);
  const random = token.slice("trb_".length);
  return { what, needles: [...forms(token), ...forms(random), random.slice(0, 30)] };
}

function jwtSecret(what: string, token: string): Secret {
  const [header, payload, signature] = token.split(".");
  expect(header && payload && signature, token).toBeTruthy();
  // The token, and its signature: what makes it a credential (a long piece of it also
  // finds a forged copy). Its header and claims are not secret: the capability's ID, for
  // one, is its identity in the rate limit counters.
  return { what, needles: [...forms(token), ...forms(signature!), signature!.slice(0, 30)] };
}

/** Where (table.column or log line) any secret appears, in any case; empty when none does. */
function findSecrets(haystack: string[], secrets: Secret[]): string[] {
  const found: string[] = [];
  for (const line of haystack) {
    const lower = line.toLowerCase();
    for (const secret of secrets)
      for (const needle of secret.needles)
        if (lower.includes(needle.toLowerCase())) found.push(`${secret.what} in ${line.slice(0, 200)}`);
  }
  return found;
}

describe.each(DIALECTS)("secrets at rest and in logs on %s", (dialect) => {
  let api: TestApi;
  let dir: string;
  const logLines: string[] = [];
  const secrets: Secret[] = [];
  let cliOutput = "";
  let requests = 0;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "trebuchet-secrets-"));
    const { privateKey, publicKey } = await generateKeyPair("ES256");
    const jwk = { ...(await exportJWK(publicKey)), kid: "test", alg: "ES256" };
    writeFileSync(join(dir, "jwks.json"), JSON.stringify({ keys: [jwk] }));
    const sink = new Writable({
      write(chunk, _encoding, done) {
        logLines.push(...String(chunk).split("\n").filter(Boolean));
        done();
      },
    });
    api = await startTestApi(dialect, {
      config: {
        logger: { level: "trace", stream: sink },
        oauth: {
          issuer: ISSUER,
          audience: "trebuchet",
          jwksFile: join(dir, "jwks.json"),
          scopePrefix: SCOPE_PREFIX,
        },
      },
    });
    // acme and globex, each with an API token from the accounts module; ops@acme.test, an admin of acme.
    const tenants = await withTenants(api);

    // The admin CLI, as an operator runs it, against this same database.
    const options = api.store.options;
    const admin = async (...args: string[]) => {
      const result = await runCliAsync(
        ["admin", ...args, "--json", ...(options.dataDir ? ["--data", options.dataDir] : [])],
        { env: { DATABASE_URL: options.databaseUrl ?? "" }, timeoutMs: 60_000 },
      );
      expect(result.status, result.stderr).toBe(0);
      cliOutput += result.stdout + result.stderr;
      return JSON.parse(result.stdout) as { token: string };
    };
    const cliToken = (await admin("token", "create", "--org", "acme", "--name", "cli")).token;
    const capability = (
      await admin(
        "capability",
        "create",
        "--org",
        "acme",
        "--scope",
        "virtual_machines",
        "--operation",
        "build_from_spec",
        "--operation",
        "validate_spec",
        "--expires-in",
        "10m",
      )
    ).token;
    const oauth = await new SignJWT({
      scope: `${SCOPE_PREFIX}organizations:read ${SCOPE_PREFIX}virtual_machines`,
      email: "ops@acme.test",
    })
      .setProtectedHeader({ alg: "ES256", kid: "test" })
      .setIssuer(ISSUER)
      .setAudience("trebuchet")
      .setSubject("ops@acme.test")
      .setExpirationTime("5m")
      .sign(privateKey);
    secrets.push(
      apiTokenSecret("the CLI's API token", cliToken),
      apiTokenSecret("acme's API token", tenants.acmeToken),
      apiTokenSecret("globex's API token", tenants.globexToken),
      jwtSecret("the capabilities token", capability),
      jwtSecret("the OAuth2 access token", oauth),
    );

    const acme = { organization: { sub_domain: "acme" } };
    const call = async (...args: Parameters<TestApi["call"]>) => {
      requests++;
      return api.call(...args);
    };
    const expectStatus = async (status: number, response: ReturnType<TestApi["call"]>) => {
      const answer = await response;
      expect(answer.statusCode, answer.body).toBe(status);
    };
    for (const [n, token] of [cliToken, tenants.acmeToken, capability, oauth].entries()) {
      // Accepted: a read where the scopes allow one, a dry run and a build (with an
      // idempotency key: its stored response is a table the secret could end up in).
      if (token !== capability)
        await expectStatus(
          200,
          call("GET", "/core/v1/organizations/_?organization[sub_domain]=acme", { token }),
        );
      await expectStatus(200, call("POST", VALIDATE, { token, body: { ...acme, xml: WEB_XML } }));
      await expectStatus(
        201,
        call("POST", BUILD, {
          token,
          headers: { "idempotency-key": `secrets-${n}` },
          body: { ...acme, xml: WEB_XML.replace("web-01", `secrets-${n}`) },
        }),
      );
      // Refused: another tenant's organization (or out of its scopes or operations), a
      // body that does not parse and holds the token, and a forged token (one character
      // changed near its end) under a lower-case scheme.
      const foreign = await call("GET", "/core/v1/organizations/_?organization[sub_domain]=globex", {
        token,
      });
      expect(foreign.statusCode, `${n} ${foreign.body}`).toBeGreaterThanOrEqual(400);
      await expectStatus(400, call("POST", BUILD, { token, rawBody: `{"xml": "${token}` }));
      const at = token.length - 5;
      const forged = token.slice(0, at) + (token[at] === "A" ? "B" : "A") + token.slice(at + 1);
      const refused = await call("GET", "/core/v1/organizations", {
        headers: { authorization: `bearer ${forged}` },
      });
      expect(refused.statusCode, `${n} ${refused.body}`).toBeGreaterThanOrEqual(400);
    }
  }, 120_000);
  afterAll(async () => {
    await api?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the log was captured, at trace level, for every request", () => {
    expect(secrets).toHaveLength(5);
    const incoming = logLines.filter((line) => line.includes("incoming request"));
    expect(incoming.length).toBeGreaterThanOrEqual(requests);
  });

  it("no column of any table holds a secret, nor its base64 or hex", async () => {
    const { tables, lines } = await dumpDatabase(api.server.store.db, dialect);
    expect(tables).toEqual(
      expect.arrayContaining(["api_tokens", "idempotency_keys", "rate_limit_counters", "builds"]),
    );
    // The stored tokens are there, as hashes: the dump is of the rows that hold them.
    expect(lines.filter((line) => line.startsWith("api_tokens.secret_hash: ")).length).toBeGreaterThanOrEqual(
      3,
    );
    expect(findSecrets(lines, secrets)).toEqual([]);
  });

  it("no log line holds a secret, nor its base64 or hex", () => {
    expect(findSecrets(logLines, secrets)).toEqual([]);
  });

  it("no log line holds the Authorization header", () => {
    expect(logLines.filter((line) => /authorization|bearer/i.test(line))).toEqual([]);
  });

  it("the admin CLI prints each secret it makes, once", () => {
    for (const secret of secrets.filter((s) => /CLI|capabilities/.test(s.what)))
      expect(cliOutput.split(secret.needles[0]!).length - 1, secret.what).toBe(1);
  });
});
