/**
 * GET /core/v1/openapi.json: made from the route table, so every route is in it and
 * everything in it is served; Katapult's definitions unchanged, ours complete, every
 * reference resolvable.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPERATIONS } from "../../src/api/operations.js";
import { openApiDocument, UndocumentedOperation } from "../../src/api/openapi/document.js";
import { katapultDocument, type OpenApiDocument } from "../../src/api/openapi/katapult-document.js";
import { startTestApi, type TestApi } from "../support/api.js";
import { OPENAPI_PATH } from "../support/openapi.js";

const katapult = JSON.parse(readFileSync(OPENAPI_PATH, "utf8")) as OpenApiDocument;
const METHODS = ["get", "post", "put", "patch", "delete"];

let api: TestApi;
let served: OpenApiDocument;

beforeAll(async () => {
  api = await startTestApi("sqlite");
  const response = await api.call("GET", "/core/v1/openapi.json");
  expect(response.statusCode).toBe(200);
  expect(response.headers["content-type"]).toBe("application/json; charset=utf-8");
  served = response.json() as unknown as OpenApiDocument;
});
afterAll(() => api.dispose());

/** Every (method, path) the document describes under /core/v1. */
const documented = () =>
  Object.entries(served.paths).flatMap(([path, item]) =>
    "servers" in item
      ? []
      : Object.keys(item)
          .filter((m) => METHODS.includes(m))
          .map((m) => `${m.toUpperCase()} ${path}`),
  );

describe("the served OpenAPI document", () => {
  it("describes exactly the operations of the route table, without credentials", () => {
    expect(documented().sort()).toEqual(OPERATIONS.map((op) => `${op.method} ${op.path}`).sort());
    expect(served.openapi).toBe("3.0.0");
    expect(served.servers).toEqual([{ url: "/core/v1", description: "this server" }]);
    expect(served.info.version).toBe(JSON.parse(readFileSync("package.json", "utf8")).version);
  });

  it("serves every operation it documents (each answers, none is route_not_found)", async () => {
    for (const entry of documented()) {
      const [method, path] = entry.split(" ") as [string, string];
      const response = await api.call(method, `/core/v1${path}`);
      expect({ entry, code: response.json().error?.code }).toEqual({ entry, code: "missing_api_token" });
    }
    for (const [path, item] of Object.entries(served.paths).filter(([, i]) => "servers" in i)) {
      expect(Object.keys(item).filter((m) => METHODS.includes(m))).toEqual(["get"]);
      expect({ path, status: (await api.call("GET", path)).statusCode }).toEqual({ path, status: 200 });
    }
  });

  it("keeps Katapult's definition of each of Katapult's operations, with Idempotency-Key where it is honoured", () => {
    for (const operation of OPERATIONS) {
      const theirs = katapult.paths[operation.path]?.[operation.method.toLowerCase()];
      const ours = served.paths[operation.path]![operation.method.toLowerCase()]!;
      if (!theirs) {
        expect(ours.tags, operation.name).toEqual(["Trebuchet"]);
        continue;
      }
      if (operation.name === "build_from_spec" || operation.name === "build") {
        expect(ours.parameters!.at(-1)).toMatchObject({ in: "header", name: "Idempotency-Key" });
        expect({ ...ours, parameters: ours.parameters!.slice(0, -1) }).toEqual({
          ...theirs,
          parameters: theirs.parameters ?? [],
        });
      } else expect(ours, operation.name).toEqual(theirs);
    }
  });

  it("describes Trebuchet's own operations: validate_spec, build events, the console", () => {
    const own = OPERATIONS.filter((op) => !katapult.paths[op.path]?.[op.method.toLowerCase()]).map(
      (op) => op.name,
    );
    expect(own.sort()).toEqual([
      "get_virtual_machine_build_events",
      "get_virtual_machine_console",
      "validate_spec",
    ]);
    const events = served.paths["/virtual_machines/builds/virtual_machine_build/events"]!.get!;
    expect(Object.keys((events.responses["200"] as { content: object }).content)).toEqual([
      "text/event-stream",
    ]);
    expect(served.tags!.at(-1)!.name).toBe("Trebuchet");
  });

  it("resolves every reference within itself, and carries no component nothing reaches", () => {
    const refs = new Set<string>();
    const walk = (value: unknown): void => {
      if (Array.isArray(value)) value.forEach(walk);
      else if (value && typeof value === "object")
        for (const [key, inner] of Object.entries(value)) {
          if (key === "$ref") refs.add(inner as string);
          else walk(inner);
        }
    };
    walk(served.paths);
    walk(served.components);
    const defined = Object.entries(served.components).flatMap(([section, entries]) =>
      section === "securitySchemes"
        ? []
        : Object.keys(entries).map((name) => `#/components/${section}/${name}`),
    );
    expect([...refs].filter((ref) => !defined.includes(ref))).toEqual([]);
    expect(defined.filter((ref) => !refs.has(ref))).toEqual([]);
    // Far smaller than Katapult's whole document: only what the served operations reach.
    expect(Object.keys(served.components.schemas!).length).toBeLessThan(
      Object.keys(katapult.components.schemas!).length,
    );
  });

  it("cannot drift from the route table: an operation without a definition is refused", () => {
    const made = { ...OPERATIONS[0]!, name: "made_up", path: "/made/up" };
    expect(() => openApiDocument(katapultDocument(), [...OPERATIONS, made], { version: "0" })).toThrow(
      UndocumentedOperation,
    );
  });
});

describe("the docs page", () => {
  it("is served from this server with its own assets, under a strict Content-Security-Policy", async () => {
    const page = await api.call("GET", "/docs");
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.headers["content-security-policy"]).toContain("default-src 'none'");
    expect(page.headers["content-security-policy"]).toContain("connect-src 'self'");
    const sources = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(sources.every((source) => source.startsWith("/docs/"))).toBe(true);
    for (const source of sources)
      expect({ source, status: (await api.call("GET", source)).statusCode }).toEqual({ source, status: 200 });
    const init = await api.call("GET", "/docs/init.js");
    expect(init.body).toContain("validatorUrl: null");
    expect(init.body).toContain('url: "/core/v1/openapi.json"');
  });
});
