/** Every documented error, through the real app, on SQLite and PostgreSQL. */
import { generateKeyPair, exportJWK, SignJWT } from "jose";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintCapability } from "../../src/auth/capabilities.js";
import { createApiToken, createUser, revokeApiToken, setMaintenance } from "../../src/catalog/accounts.js";
import { ERRORS, type ErrorCode } from "../../src/errors.js";
import { DEFAULT_AUTH_CACHE_MS } from "../../src/auth/freshness-cache.js";
import { startTestApi, withTenants, type TestApi } from "../support/api.js";
import { eventually } from "../support/eventually.js";
import { takeDatabaseAway } from "../support/outages.js";
import { DIALECTS } from "../support/stores.js";

const WEB_XML = readFileSync(new URL("../../examples/web.xml", import.meta.url), "utf8");
const BUILD = "/core/v1/organizations/_/virtual_machines/build_from_spec";

function expectError(
  response: { statusCode: number; headers: Record<string, unknown>; json: () => any },
  code: ErrorCode,
) {
  const body = response.json();
  expect(body.error?.code, JSON.stringify(body)).toBe(code);
  expect(response.statusCode).toBe(ERRORS[code].status);
  expect(response.headers["x-api-schema"]).toBe("json-error");
  expect(response.headers["content-type"]).toMatch(/^application\/json/);
  expect(typeof body.error.description).toBe("string");
  expect(body.error.detail).toBeTypeOf("object");
  expect(Object.keys(body)).toEqual(["error"]);
  return body.error;
}

describe.each(DIALECTS)("documented errors on %s", (dialect) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<typeof withTenants>>;
  let oauthKey: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];
  const issuer = "https://identity.test";

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "trebuchet-oauth-"));
    const { privateKey, publicKey } = await generateKeyPair("ES256");
    oauthKey = privateKey;
    const jwk = { ...(await exportJWK(publicKey)), kid: "test", alg: "ES256" };
    writeFileSync(join(dir, "jwks.json"), JSON.stringify({ keys: [jwk] }));
    api = await startTestApi(dialect, {
      config: {
        oauth: {
          issuer,
          audience: "trebuchet",
          jwksFile: join(dir, "jwks.json"),
          scopePrefix: "api.katapult.io/core/v1/",
        },
        rateLimits: { read: 1000, write: 1000, build: 1000 },
      },
    });
    acme = await withTenants(api);
    await api.organization("frozen", "suspended");
    await api.organization("fresh", "not_activated");
  });
  afterAll(async () => api?.dispose());

  const oauthToken = (claims: Record<string, unknown>, options: { issuer?: string; expires?: string } = {}) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: "ES256", kid: "test" })
      .setIssuer(options.issuer ?? issuer)
      .setAudience("trebuchet")
      .setSubject("ops@acme.test")
      .setExpirationTime(options.expires ?? "5m")
      .sign(oauthKey);

  describe("authentication", () => {
    it("400 missing_api_token without a bearer token", async () => {
      expectError(await api.call("GET", "/core/v1/data_centers"), "missing_api_token");
      expectError(
        await api.call("GET", "/core/v1/data_centers", { headers: { authorization: "Basic abc" } }),
        "missing_api_token",
      );
    });

    it("403 invalid_api_token for unknown, malformed, revoked and expired tokens", async () => {
      expectError(
        await api.call("GET", "/core/v1/data_centers", { token: "trb_" + "x".repeat(40) }),
        "invalid_api_token",
      );
      expectError(await api.call("GET", "/core/v1/data_centers", { token: "nonsense" }), "invalid_api_token");
      const expired = await api.token("acme", { expiresInSeconds: -1 });
      expect(
        expectError(await api.call("GET", "/core/v1/data_centers", { token: expired }), "invalid_api_token")
          .detail,
      ).toEqual({ details: "The API token has expired" });
      const revoked = await createApiToken(api.server.store.db, {
        subDomain: "acme",
        name: "r",
        role: "admin",
        scopes: [],
        allowedNetworks: [],
      });
      const revokedToken = revoked.token;
      expect((await api.call("GET", "/core/v1/data_centers", { token: revokedToken })).statusCode).toBe(200);
      await revokeApiToken(api.server.store.db, revoked.id);
      // Processes trust a token they have just checked for up to the credential cache time.
      const refused = await eventually(async () => {
        const response = await api.call("GET", "/core/v1/data_centers", { token: revokedToken });
        return response.statusCode === 200 ? undefined : response;
      }, 5000);
      expectError(refused.value, "invalid_api_token");
      expect(refused.afterMs).toBeLessThanOrEqual(DEFAULT_AUTH_CACHE_MS + 250);
    });

    it("with the credential cache off, a revoked token is refused at once", async () => {
      const uncached = await startTestApi(dialect, { config: { authCacheMs: 0 } });
      try {
        await uncached.organization("acme");
        const created = await createApiToken(uncached.server.store.db, {
          subDomain: "acme",
          name: "r",
          role: "admin",
          scopes: [],
          allowedNetworks: [],
        });
        expect(
          (await uncached.call("GET", "/core/v1/data_centers", { token: created.token })).statusCode,
        ).toBe(200);
        await revokeApiToken(uncached.server.store.db, created.id);
        expectError(
          await uncached.call("GET", "/core/v1/data_centers", { token: created.token }),
          "invalid_api_token",
        );
      } finally {
        await uncached.dispose();
      }
    });

    it("403 unauthorized_network_for_api_token with the caller's address", async () => {
      const restricted = await api.token("acme", { allowedNetworks: ["192.0.2.0/24", "2001:db8::/32"] });
      const error = expectError(
        await api.call("GET", "/core/v1/data_centers", { token: restricted }),
        "unauthorized_network_for_api_token",
      );
      expect(error.detail).toEqual({ ip_address: "127.0.0.1" });
      const local = await api.token("acme", { allowedNetworks: ["127.0.0.0/8"] });
      expect((await api.call("GET", "/core/v1/data_centers", { token: local })).statusCode).toBe(200);
    });

    it("403 scope_not_granted naming the operation's scopes", async () => {
      const narrow = await api.token("acme", { scopes: ["virtual_machines:read"] });
      const error = expectError(
        await api.call("POST", BUILD, {
          token: narrow,
          body: { organization: { sub_domain: "acme" }, xml: WEB_XML },
        }),
        "scope_not_granted",
      );
      expect(error.detail).toEqual({ scopes: ["virtual_machines"] });
      expect(
        (
          await api.call("GET", "/core/v1/organizations/_/virtual_machines?organization[sub_domain]=acme", {
            token: narrow,
          })
        ).statusCode,
      ).toBe(200);
    });

    it("accepts OAuth2 access tokens with prefixed scopes and the user's memberships", async () => {
      const token = await oauthToken({
        scope: "api.katapult.io/core/v1/organizations:read api.katapult.io/core/v1/virtual_machines",
      });
      const orgs = await api.call("GET", "/core/v1/organizations", { token });
      expect(orgs.statusCode, orgs.body).toBe(200);
      expect(orgs.json().organizations.map((o: any) => o.sub_domain)).toEqual(["acme"]);
      const unprefixed = await oauthToken({ scope: "organizations:read" });
      expectError(
        await api.call("GET", "/core/v1/organizations", { token: unprefixed }),
        "scope_not_granted",
      );
      expectError(
        await api.call("GET", "/core/v1/organizations", {
          token: await oauthToken({ scope: "x" }, { issuer: "https://evil.test" }),
        }),
        "invalid_api_token",
      );
      expectError(
        await api.call("GET", "/core/v1/organizations", {
          token: await oauthToken({ scope: "x" }, { expires: "-1m" }),
        }),
        "invalid_api_token",
      );
      const other = await oauthToken({ scope: "api.katapult.io/core/v1/organizations:read" });
      expectError(
        await api.call("GET", "/core/v1/organizations/_?organization[sub_domain]=globex", { token: other }),
        "organization_not_found",
      );
    });

    it("accepts capabilities tokens for their operations only; bad signature, other key or expiry -> invalid_capabilities_token", async () => {
      const db = api.server.store.db;
      const { token } = await mintCapability(db, {
        organizationId: acme.acme,
        scopes: ["virtual_machines"],
        operations: ["build_from_spec"],
        expiresInSeconds: 600,
      });
      const ok = await api.call("POST", BUILD, {
        token,
        body: { organization: { sub_domain: "acme" }, xml: WEB_XML.replace("web-01", "cap-01") },
      });
      expect(ok.statusCode, ok.body).toBe(201);
      expectError(
        await api.call("GET", `/core/v1/organizations/_/virtual_machines?organization[sub_domain]=acme`, {
          token,
        }),
        "scope_not_granted",
      );
      const tampered = token.slice(0, -4) + (token.endsWith("AAAA") ? "BBBB" : "AAAA");
      expectError(await api.call("POST", BUILD, { token: tampered, body: {} }), "invalid_capabilities_token");
      const { token: expired } = await mintCapability(db, {
        organizationId: acme.acme,
        scopes: ["virtual_machines"],
        operations: [],
        expiresInSeconds: -10,
      });
      expectError(await api.call("POST", BUILD, { token: expired, body: {} }), "invalid_capabilities_token");
      const foreign = await new SignJWT({ org: acme.acme, scopes: ["virtual_machines"], ops: [] })
        .setProtectedHeader({ alg: "HS256", typ: "trebuchet-capability+jwt" })
        .setJti("cap_x")
        .setExpirationTime("5m")
        .sign(new TextEncoder().encode("another key entirely, 32 bytes+"));
      expectError(await api.call("POST", BUILD, { token: foreign, body: {} }), "invalid_capabilities_token");
      const elsewhere = await api.call("POST", BUILD, {
        token,
        body: { organization: { sub_domain: "globex" }, xml: WEB_XML },
      });
      expectError(elsewhere, "organization_not_found");
    });
  });

  describe("organizations and permissions", () => {
    it("403 organization_suspended and organization_not_activated, 404 organization_not_found", async () => {
      const frozen = await api.token("frozen");
      const fresh = await api.token("fresh");
      expectError(
        await api.call("GET", "/core/v1/organizations/_?organization[sub_domain]=frozen", { token: frozen }),
        "organization_suspended",
      );
      expectError(
        await api.call("GET", "/core/v1/organizations/_?organization[sub_domain]=fresh", { token: fresh }),
        "organization_not_activated",
      );
      expectError(
        await api.call("GET", "/core/v1/organizations/_?organization[sub_domain]=nobody", {
          token: acme.acmeToken,
        }),
        "organization_not_found",
      );
      // Another tenant's organization, existing or suspended, reads exactly like a missing one.
      const foreign = await api.call("GET", "/core/v1/organizations/_?organization[sub_domain]=globex", {
        token: acme.acmeToken,
      });
      const missing = await api.call("GET", "/core/v1/organizations/_?organization[sub_domain]=nobody", {
        token: acme.acmeToken,
      });
      const suspendedForeign = await api.call(
        "GET",
        "/core/v1/organizations/_?organization[sub_domain]=frozen",
        { token: acme.acmeToken },
      );
      expect(foreign.body).toBe(missing.body);
      expect(suspendedForeign.body).toBe(missing.body);
      // `_` with no lookup names an organization whose ID is `_`.
      expectError(
        await api.call("GET", "/core/v1/organizations/_", { token: acme.acmeToken }),
        "organization_not_found",
      );
    });

    it("403 permission_denied with details for a role that may only read", async () => {
      const viewer = await api.token("acme", { role: "viewer" });
      const error = expectError(
        await api.call("POST", BUILD, {
          token: viewer,
          body: { organization: { sub_domain: "acme" }, xml: WEB_XML },
        }),
        "permission_denied",
      );
      expect(error.detail.details).toMatch(/viewer/);
      expect(
        (
          await api.call("GET", "/core/v1/organizations/_/virtual_machines?organization[sub_domain]=acme", {
            token: viewer,
          })
        ).statusCode,
      ).toBe(200);
    });
  });

  describe("framework errors", () => {
    it("404 route_not_found for unknown paths and methods", async () => {
      const error = expectError(
        await api.call("GET", "/core/v1/rockets", { token: acme.acmeToken }),
        "route_not_found",
      );
      expect(error.description).toBe("No route matches 'rockets' for GET");
      expectError(
        await api.call("PATCH", "/core/v1/data_centers", { token: acme.acmeToken }),
        "route_not_found",
      );
      expectError(await api.call("GET", "/nothing/here"), "route_not_found");
    });

    it("400 invalid_json_body, 415 for other content types, 413 over the body cap", async () => {
      expect(
        expectError(
          await api.call("POST", BUILD, { token: acme.acmeToken, rawBody: '{"organization": ' }),
          "invalid_json_body",
        ).detail.details,
      ).toBeTypeOf("string");
      expectError(
        await api.call("POST", BUILD, {
          token: acme.acmeToken,
          rawBody: "x",
          headers: { "content-type": "text/xml" },
        }),
        "unsupported_media_type",
      );
      const huge = JSON.stringify({ organization: { sub_domain: "acme" }, xml: "x".repeat(600 * 1024) });
      expectError(
        await api.call("POST", BUILD, { token: acme.acmeToken, rawBody: huge }),
        "request_too_large",
      );
    });

    it("400 invalid_argument for a NUL character in the path, the query or the body (PostgreSQL cannot store one)", async () => {
      const token = acme.acmeToken;
      for (const [method, url, body] of [
        ["GET", "/core/v1/organizations/%00/virtual_networks", undefined],
        ["GET", "/core/v1/organizations/_?organization[sub_domain]=ac%00me", undefined],
        [
          "POST",
          "/core/v1/organizations/_/ip_addresses",
          { organization: { sub_domain: "acme" }, label: "a\u0000b" },
        ],
      ] as const) {
        const error = expectError(
          await api.call(method, url, { token, ...(body ? { body } : {}) }),
          "invalid_argument",
        );
        expect(error.detail.issue).toBe("parse_error");
        expect(error.detail.errors).toEqual(["NUL characters are not allowed in arguments"]);
      }
    });

    it("400 invalid_json_body for bodies past the shape limits, before anything recurses into them (Idempotency-Key too)", async () => {
      const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
      for (const [name, body, said] of [
        [
          "3,000 deep",
          `{"organization":{"sub_domain":"acme"},"xml":"x","a":${nested(3000)}}`,
          /deeper than 32/,
        ],
        ["33 deep", `{"organization":{"sub_domain":"acme"},"a":${nested(33)}}`, /deeper than 32/],
        [
          "a long array",
          JSON.stringify({ a: Array.from({ length: 10_001 }, () => 0) }),
          /more than 10000 elements/,
        ],
        [
          "a wide object",
          JSON.stringify({ a: Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`k${i}`, 0])) }),
          /more than 1000 keys/,
        ],
      ] as const) {
        for (const idempotency of [{}, { "idempotency-key": `limits-${name}` }] as Record<string, string>[]) {
          const error = expectError(
            await api.call("POST", BUILD, { token: acme.acmeToken, rawBody: body, headers: idempotency }),
            "invalid_json_body",
          );
          expect(error.detail.details, name).toMatch(said);
        }
      }
      // 32 deep is within the limit: the request goes on to be read (and refused for its missing spec).
      const within = await api.call("POST", BUILD, {
        token: acme.acmeToken,
        rawBody: `{"organization":{"sub_domain":"acme"},"a":${nested(31)}}`,
      });
      expect(within.json().error?.code).not.toBe("invalid_json_body");
    });

    it("400 invalid_argument for ambiguous, empty and mistyped lookups and scalars", async () => {
      const ambiguous = expectError(
        await api.call(
          "GET",
          `/core/v1/organizations/_?organization[id]=${acme.acme}&organization[sub_domain]=acme`,
          { token: acme.acmeToken },
        ),
        "invalid_argument",
      );
      expect(ambiguous.detail).toMatchObject({ path: ["organization"], issue: "ambiguous_lookup_values" });
      expect(ambiguous.description).toBe("The 'organization' argument is invalid");
      expect(
        expectError(
          await api.call("POST", BUILD, { token: acme.acmeToken, body: { organization: {}, xml: "" } }),
          "invalid_argument",
        ).detail.issue,
      ).toBe("missing_lookup_value");
      expect(
        expectError(
          await api.call("POST", BUILD, { token: acme.acmeToken, body: { organization: "acme", xml: "" } }),
          "invalid_argument",
        ).detail.issue,
      ).toBe("object_expected");
      expect(
        expectError(
          await api.call(
            "GET",
            "/core/v1/organizations/_/virtual_machines?organization[sub_domain]=acme&page=abc",
            { token: acme.acmeToken },
          ),
          "invalid_argument",
        ).detail.issue,
      ).toBe("parse_error");
      expectError(
        await api.call(
          "GET",
          "/core/v1/organizations/_/virtual_machines?organization[sub_domain]=acme&per_page=0",
          { token: acme.acmeToken },
        ),
        "invalid_argument",
      );
      expectError(
        await api.call("POST", BUILD, {
          token: acme.acmeToken,
          body: { organization: { sub_domain: "acme" }, xml: 42 },
        }),
        "invalid_argument",
      );
      expectError(
        await api.call("POST", BUILD, {
          token: acme.acmeToken,
          body: { organization: { sub_domain: "acme" }, xml: WEB_XML, annotations: "x" },
        }),
        "invalid_argument",
      );
    });

    it("400 missing_required_argument", async () => {
      const error = expectError(
        await api.call("POST", BUILD, {
          token: acme.acmeToken,
          body: { organization: { sub_domain: "acme" } },
        }),
        "missing_required_argument",
      );
      expect(error.description).toBe("The 'xml' argument is required but has not been provided");
    });
  });

  describe("build_from_spec", () => {
    it("400 invalid_spec_xml with line:column errors", async () => {
      const error = expectError(
        await api.call("POST", BUILD, {
          token: acme.acmeToken,
          body: { organization: { sub_domain: "acme" }, xml: "<VirtualMachineSpec><Name>x</Nam>" },
        }),
        "invalid_spec_xml",
      );
      expect(error.detail.errors).toMatch(/^1:\d+: FATAL: /);
      const doctype = expectError(
        await api.call("POST", BUILD, {
          token: acme.acmeToken,
          body: {
            organization: { sub_domain: "acme" },
            xml: '<!DOCTYPE x [<!ENTITY a "b">]><VirtualMachineSpec/>',
          },
        }),
        "invalid_spec_xml",
      );
      expect(doctype.detail.errors).toMatch(/DOCTYPE/);
    });

    it("422 validation_error listing every problem with its element path", async () => {
      const xml = WEB_XML.replace("small-1", "huge-99")
        .replace("lab-1-private", "nowhere")
        .replace("<Name>Data</Name>", '<Name>Data</Name><IOProfile by="permalink">warp</IOProfile>');
      const error = expectError(
        await api.call("POST", BUILD, {
          token: acme.acmeToken,
          body: { organization: { sub_domain: "acme" }, xml },
        }),
        "validation_error",
      );
      expect(error.detail.errors).toEqual([
        '/VirtualMachineSpec/Resources/Package: no package permalink "huge-99"',
        '/VirtualMachineSpec/SystemDisks/Disk[2]/IOProfile: no disk IO profile permalink "warp"',
        '/VirtualMachineSpec/NetworkInterfaces/NetworkInterface[2]/Network: no network permalink "nowhere"',
      ]);
      expect(error.detail.problems[0]).toMatchObject({
        line: expect.any(Number),
        column: expect.any(Number),
        code: "not_found",
      });
    });

    it("422 validation_error for structural rules, and for options the template does not declare", async () => {
      const structural = expectError(
        await api.call("POST", BUILD, {
          token: acme.acmeToken,
          body: { organization: { sub_domain: "acme" }, xml: "<VirtualMachineSpec/>" },
        }),
        "validation_error",
      );
      expect(structural.detail.errors).toHaveLength(3);
      const option = expectError(
        await api.call("POST", BUILD, {
          token: acme.acmeToken,
          body: { organization: { sub_domain: "acme" }, xml: WEB_XML.replace('key="motd"', 'key="rocket"') },
        }),
        "validation_error",
      );
      expect(option.detail.errors[0]).toMatch(
        /has no option "rocket" \(options: motd, fail_boot, install_agent\)/,
      );
      const boolean = expectError(
        await api.call("POST", BUILD, {
          token: acme.acmeToken,
          body: {
            organization: { sub_domain: "acme" },
            xml: WEB_XML.replace(
              '<Option key="motd">Built by Trebuchet</Option>',
              '<Option key="fail_boot">maybe</Option>',
            ),
          },
        }),
        "validation_error",
      );
      expect(boolean.detail.errors[0]).toMatch(/Boolean/);
    });

    it("422 when the hostname is taken in the organization", async () => {
      const body = { organization: { sub_domain: "acme" }, xml: WEB_XML.replace("web-01", "twin") };
      expect((await api.call("POST", BUILD, { token: acme.acmeToken, body })).statusCode).toBe(201);
      const error = expectError(
        await api.call("POST", BUILD, { token: acme.acmeToken, body }),
        "validation_error",
      );
      expect(error.detail.errors[0]).toMatch(/hostname twin is already used/);
    });

    it("generates a friendly hostname when none is given", async () => {
      const response = await api.call("POST", BUILD, {
        token: acme.acmeToken,
        body: {
          organization: { sub_domain: "acme" },
          xml: WEB_XML.replace(/<Hostname>[\s\S]*?<\/Hostname>\s*<\/Hostname>/, ""),
        },
      });
      expect(response.statusCode, response.body).toBe(201);
      expect(response.json().hostname).toMatch(/^[a-z]+-[a-z]+-[a-z]+$/);
    });

    it("accepts the JSON and YAML forms of the spec too", async () => {
      const { writeSpec, checkSpec } = await import("../../src/spec/index.js");
      const spec = checkSpec(WEB_XML).spec!;
      for (const [format, hostname] of [
        ["json", "json-form"],
        ["yaml", "yaml-form"],
      ] as const) {
        const text = writeSpec({ ...spec, hostname }, format);
        const response = await api.call("POST", BUILD, {
          token: acme.acmeToken,
          body: { organization: { sub_domain: "acme" }, xml: text },
        });
        expect(response.statusCode, response.body).toBe(201);
        const build = await api.call(
          "GET",
          `/core/v1/virtual_machines/builds/${response.json().virtual_machine_build.id}`,
          { token: acme.acmeToken },
        );
        expect(build.json().virtual_machine_build.spec_xml).toContain(`<Hostname>${hostname}</Hostname>`);
      }
    });
  });

  describe("the JSON build endpoint", () => {
    const JSON_BUILD = "/core/v1/organizations/_/virtual_machines/build";
    const base = {
      organization: { sub_domain: "acme" },
      data_center: { permalink: "lab-1" },
      package: { permalink: "small-1" },
      disk_template: { permalink: "templates/trebuchet-demo" },
    };

    it("builds through the same planner", async () => {
      const response = await api.call("POST", JSON_BUILD, {
        token: acme.acmeToken,
        body: {
          ...base,
          hostname: "json-build",
          disks: [{ size_in_gb: 3, system: true }],
          annotations: [{ key: "k", value: "v" }],
        },
      });
      expect(response.statusCode, response.body).toBe(201);
      expect(response.json()).toMatchObject({
        hostname: "json-build",
        annotations: [{ key: "k", value: "v" }],
      });
    });

    it("answers location_required, one_system_disk_required and the documented 404s", async () => {
      expectError(
        await api.call("POST", JSON_BUILD, {
          token: acme.acmeToken,
          body: { ...base, data_center: undefined },
        }),
        "location_required",
      );
      expectError(
        await api.call("POST", JSON_BUILD, {
          token: acme.acmeToken,
          body: { ...base, disks: [{ size_in_gb: 3 }] },
        }),
        "one_system_disk_required",
      );
      expectError(
        await api.call("POST", JSON_BUILD, {
          token: acme.acmeToken,
          body: { ...base, package: { permalink: "nope" } },
        }),
        "package_not_found",
      );
      expectError(
        await api.call("POST", JSON_BUILD, {
          token: acme.acmeToken,
          body: { ...base, data_center: { permalink: "nope" } },
        }),
        "data_center_not_found",
      );
      expectError(
        await api.call("POST", JSON_BUILD, {
          token: acme.acmeToken,
          body: { ...base, zone: { permalink: "nope" }, data_center: undefined },
        }),
        "zone_not_found",
      );
      expectError(
        await api.call("POST", JSON_BUILD, {
          token: acme.acmeToken,
          body: { ...base, disk_template: { permalink: "nope" } },
        }),
        "disk_template_not_found",
      );
      expectError(
        await api.call("POST", JSON_BUILD, {
          token: acme.acmeToken,
          body: { ...base, network: { permalink: "nope" } },
        }),
        "network_not_found",
      );
      expectError(
        await api.call("POST", JSON_BUILD, { token: acme.acmeToken, body: { ...base, package: undefined } }),
        "missing_required_argument",
      );
    });
  });

  describe("lookups of missing objects", () => {
    it.each([
      ["/core/v1/virtual_machines/builds/vmbuild_missing", "build_not_found"],
      ["/core/v1/tasks/task_missing", "task_not_found"],
      ["/core/v1/virtual_machines/_?virtual_machine[id]=vm_missing", "virtual_machine_not_found"],
      ["/core/v1/virtual_machines/_", "virtual_machine_not_found"],
      ["/core/v1/zones/_?zone[permalink]=nope", "zone_not_found"],
      ["/core/v1/data_centers/_?data_center[permalink]=nope", "data_center_not_found"],
      ["/core/v1/virtual_machine_packages/_?virtual_machine_package[permalink]=nope", "package_not_found"],
      ["/core/v1/disk_templates/_?disk_template[permalink]=nope", "disk_template_not_found"],
      ["/core/v1/disk_template_versions/dtv_missing", "disk_template_version_not_found"],
      ["/core/v1/networks/_?network[permalink]=nope", "network_not_found"],
      ["/core/v1/ip_addresses/_?ip_address[address]=203.0.113.9", "ip_address_not_found"],
    ] as const)("GET %s -> %s", async (url, code) => {
      expectError(await api.call("GET", url, { token: acme.acmeToken }), code);
    });
  });

  describe("idempotency", () => {
    it("replays the original 201 for the same key and body, and refuses the key with another body", async () => {
      const body = { organization: { sub_domain: "acme" }, xml: WEB_XML.replace("web-01", "idem-01") };
      const headers = { "idempotency-key": "build-idem-01" };
      const first = await api.call("POST", BUILD, { token: acme.acmeToken, body, headers });
      const second = await api.call("POST", BUILD, { token: acme.acmeToken, body, headers });
      expect(first.statusCode).toBe(201);
      expect(second.statusCode).toBe(201);
      expect(second.json()).toEqual(first.json());
      expect(second.headers["idempotent-replayed"]).toBe("true");
      const vms = await api.server.store.db
        .selectFrom("virtual_machines")
        .select("id")
        .where("hostname", "=", "idem-01")
        .execute();
      expect(vms).toHaveLength(1);
      const other = await api.call("POST", BUILD, {
        token: acme.acmeToken,
        body: { ...body, xml: WEB_XML.replace("web-01", "idem-02") },
        headers,
      });
      expectError(other, "idempotency_key_reused");
      // After 24 hours the key is free for a new request.
      await api.server.store.db
        .updateTable("idempotency_keys")
        .set({ expires_at: Math.floor(Date.now() / 1000) - 1 })
        .where("key", "=", "build-idem-01")
        .execute();
      const later = await api.call("POST", BUILD, {
        token: acme.acmeToken,
        body: { ...body, xml: WEB_XML.replace("web-01", "idem-03") },
        headers,
      });
      expect(later.statusCode, later.body).toBe(201);
      expect(later.headers["idempotent-replayed"]).toBeUndefined();
    });
  });

  describe("rate limits and availability", () => {
    it("429 rate_limit_reached with total_permitted and Retry-After, counted per identity in the database", async () => {
      const limited = await startTestApi(dialect, {
        config: { rateLimits: { read: 3, write: 3, build: 3 } },
      });
      try {
        await limited.organization("acme");
        const token = await limited.token("acme");
        const seen: number[] = [];
        for (let i = 0; i < 3; i++) {
          const r = await limited.call("GET", "/core/v1/data_centers", { token });
          expect(r.statusCode).toBe(200);
          seen.push(Number(r.headers["x-ratelimit-remaining"]));
          expect(r.headers["x-ratelimit-permitted"]).toBe("3");
        }
        expect(seen).toEqual([2, 1, 0]);
        const over = await limited.call("GET", "/core/v1/data_centers", { token });
        expect(expectError(over, "rate_limit_reached").detail).toEqual({ total_permitted: 3 });
        expect(Number(over.headers["retry-after"])).toBeGreaterThan(0);
        // Another identity has its own allowance.
        expect(
          (await limited.call("GET", "/core/v1/data_centers", { token: await limited.token("acme") }))
            .statusCode,
        ).toBe(200);
      } finally {
        await limited.dispose();
      }
    });

    it("503 service_unavailable in maintenance mode", async () => {
      const isolated = await startTestApi(dialect, { config: {} });
      try {
        await isolated.organization("acme");
        const token = await isolated.token("acme");
        await setMaintenance(isolated.server.store.db, true);
        await new Promise((r) => setTimeout(r, 1100));
        expectError(await isolated.call("GET", "/core/v1/data_centers", { token }), "service_unavailable");
        await setMaintenance(isolated.server.store.db, false);
        await new Promise((r) => setTimeout(r, 1100));
        expect((await isolated.call("GET", "/core/v1/data_centers", { token })).statusCode).toBe(200);
      } finally {
        await isolated.dispose();
      }
    });

    it("503 service_unavailable within 1 s while the database is away, then service again", async () => {
      const isolated = await startTestApi(dialect);
      try {
        await isolated.organization("acme");
        const token = await isolated.token("acme");
        const build = () =>
          isolated.call("POST", BUILD, {
            token,
            body: {
              organization: { sub_domain: "acme" },
              xml: WEB_XML.replace("web-01", `away-${Date.now()}`),
            },
          });
        expect((await build()).statusCode).toBe(201);
        // Past the credential cache, so the outage is met by the token's lookup too.
        await new Promise((resolve) => setTimeout(resolve, DEFAULT_AUTH_CACHE_MS + 100));
        const outage = await takeDatabaseAway(isolated.store);
        try {
          for (let i = 0; i < 3; i++) {
            const started = Date.now();
            // SQLite's readers are not blocked by another process's write lock (WAL): a build is a write.
            expectError(await build(), "service_unavailable");
            expect(Date.now() - started).toBeLessThan(1500);
          }
        } finally {
          await outage.end();
        }
        await eventually(
          async () => ((await build()).statusCode === 201 ? true : undefined),
          5000,
          "a build accepted again",
        );
      } finally {
        await isolated.dispose();
      }
    });

    it("every response carries X-Request-Id and the rate-limit headers", async () => {
      for (const r of [
        await api.call("GET", "/core/v1/data_centers", { token: acme.acmeToken }),
        await api.call("GET", "/core/v1/nope"),
        await api.call("GET", "/core/v1/data_centers"),
      ]) {
        expect(r.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
        expect(r.headers["x-ratelimit-permitted"]).toBeDefined();
        expect(r.headers["x-ratelimit-remaining"]).toBeDefined();
      }
    });
  });

  it("a user with access through OAuth2 can be created by the operator", async () => {
    await createUser(api.server.store.db, {
      email: "viewer@acme.test",
      memberships: [{ subDomain: "acme", role: "viewer" }],
    });
    const token = await new SignJWT({
      scope: "api.katapult.io/core/v1/virtual_machines",
      email: "viewer@acme.test",
    })
      .setProtectedHeader({ alg: "ES256", kid: "test" })
      .setIssuer(issuer)
      .setAudience("trebuchet")
      .setSubject("someone-external")
      .setExpirationTime("5m")
      .sign(oauthKey);
    expectError(
      await api.call("POST", BUILD, { token, body: { organization: { sub_domain: "acme" }, xml: WEB_XML } }),
      "permission_denied",
    );
  });
});
