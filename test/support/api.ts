/**
 * A real server (real database, real Fastify app, driven through inject()) with the
 * example catalog applied and two tenants, for contract tests.
 */
import { readFileSync } from "node:fs";
import type { LightMyRequestResponse } from "fastify";
import { applyCatalog } from "../../src/catalog/apply.js";
import { readCatalogFile, type CatalogFile } from "../../src/catalog/catalog-file.js";
import { addSshKey, createApiToken, createOrganization, createUser } from "../../src/catalog/accounts.js";
import { createServer, type RunningServer, type ServerConfig } from "../../src/server.js";
import type { DialectName, OrganizationState, Role } from "../../src/store/index.js";
import { openTestStore, type TestStore } from "./stores.js";

export const EXAMPLE_CATALOG = (() => {
  const read = readCatalogFile(readFileSync(new URL("../../examples/catalog.yaml", import.meta.url), "utf8"));
  if ("problems" in read) throw new Error(read.problems.join("\n"));
  return read.catalog;
})();

/**
 * The catalog with a network "scarce" in lab-1 whose only IPv4 range is
 * 203.0.113.<first>-<last>: for races for a pool's last addresses.
 */
export function withScarceNetwork(catalog: CatalogFile, first: number, last: number): CatalogFile {
  const copy = structuredClone(catalog);
  copy.networks.push({
    permalink: "scarce",
    name: "Scarce",
    data_center: "lab-1",
    default: false,
    dns_servers: [],
    subnets: [
      {
        cidr: "203.0.113.0/24",
        gateway: "203.0.113.1",
        range_start: `203.0.113.${first}`,
        range_end: `203.0.113.${last}`,
        version: 4,
      },
    ],
  });
  return copy;
}

export const ED25519_KEY =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM94jXUHIo4KYUcjcjfFY6Fl210zUyaWtYQFHevkhQ73 test@example.org";

export interface TestApi {
  server: RunningServer;
  store: TestStore;
  baseDomain: string;
  call(
    method: string,
    url: string,
    options?: { token?: string | null; body?: unknown; headers?: Record<string, string>; rawBody?: string },
  ): Promise<LightMyRequestResponse & { json: <T = Record<string, any>>() => T }>;
  token(
    subDomain: string,
    options?: { role?: Role; scopes?: string[]; allowedNetworks?: string[]; expiresInSeconds?: number },
  ): Promise<string>;
  organization(subDomain: string, state?: OrganizationState): Promise<string>;
  dispose(): Promise<void>;
}

export async function startTestApi(
  dialect: DialectName,
  options: { catalog?: CatalogFile; config?: Partial<ServerConfig> } = {},
): Promise<TestApi> {
  const store = await openTestStore(dialect);
  await store.close();
  const baseDomain = "trebuchet.test";
  const server = await createServer({ store: store.options, baseDomain, ...options.config });
  const db = server.store.db;
  await applyCatalog(db, options.catalog ?? EXAMPLE_CATALOG);
  const api: TestApi = {
    server,
    store,
    baseDomain,
    async call(method, url, { token = null, body, headers = {}, rawBody } = {}) {
      const response = await server.app.inject({
        method: method as "GET",
        url,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body !== undefined || rawBody !== undefined ? { "content-type": "application/json" } : {}),
          ...headers,
        },
        ...(rawBody !== undefined
          ? { payload: rawBody }
          : body !== undefined
            ? { payload: JSON.stringify(body) }
            : {}),
      });
      return response as never;
    },
    async token(subDomain, tokenOptions = {}) {
      const created = await createApiToken(db, {
        subDomain,
        name: "test",
        role: tokenOptions.role ?? "admin",
        scopes: tokenOptions.scopes ?? [],
        allowedNetworks: tokenOptions.allowedNetworks ?? [],
        ...(tokenOptions.expiresInSeconds !== undefined
          ? { expiresInSeconds: tokenOptions.expiresInSeconds }
          : {}),
      });
      return created.token;
    },
    async organization(subDomain, state = "active") {
      const org = await createOrganization(db, { subDomain, name: subDomain, state, baseDomain });
      return org.id;
    },
    async dispose() {
      await server.stop();
      await store.dispose();
    },
  };
  return api;
}

/** Two tenants, each with an admin token, a user and an SSH key. */
export async function withTenants(api: TestApi) {
  const acme = await api.organization("acme");
  const globex = await api.organization("globex");
  await createUser(api.server.store.db, {
    email: "ops@acme.test",
    memberships: [{ subDomain: "acme", role: "admin" }],
  });
  await addSshKey(api.server.store.db, {
    subDomain: "acme",
    name: "ops",
    publicKey: ED25519_KEY,
    userEmail: "ops@acme.test",
  });
  return { acme, globex, acmeToken: await api.token("acme"), globexToken: await api.token("globex") };
}
