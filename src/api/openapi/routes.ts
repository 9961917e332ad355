import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { FastifyInstance, FastifyReply } from "fastify";
import { VERSION } from "../../version.js";
import type { Operation } from "../operation.js";
import { openApiDocument } from "./document.js";
import { katapultDocument } from "./katapult-document.js";

export const OPENAPI_PATH = "/core/v1/openapi.json";

/**
 * The page renders the document with Swagger UI from npm (swagger-ui-dist), served from
 * here: no CDN, no validator badge (it would send the document to swagger.io), and a
 * Content-Security-Policy that lets the page reach nothing but this server.
 */
const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Trebuchet API</title>
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="docs"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`;

const INIT_SCRIPT = `window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "${OPENAPI_PATH}",
    dom_id: "#docs",
    validatorUrl: null,
    deepLinking: true,
    docExpansion: "none",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
`;

const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const swaggerUiFile = (() => {
  const directory = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  const cache = new Map<string, Buffer>();
  return (name: string): Buffer => {
    let content = cache.get(name);
    if (!content) {
      content = readFileSync(join(directory, name));
      cache.set(name, content);
    }
    return content;
  };
})();

/** Serves the OpenAPI document and the page that renders it, without credentials. */
export function registerOpenApiRoutes(
  app: FastifyInstance,
  operations: readonly Operation[],
  finishHeaders: (reply: FastifyReply) => void,
): void {
  // Built at the first request: a server nobody asks for its document never reads Katapult's.
  let documentText: string | undefined;
  app.get(OPENAPI_PATH, { config: { operation: "openapi_document" } }, (_request, reply) => {
    documentText ??= JSON.stringify(openApiDocument(katapultDocument(), operations, { version: VERSION }));
    finishHeaders(reply);
    return reply.type("application/json; charset=utf-8").send(documentText);
  });

  const asset = (path: string, type: string, body: () => string | Buffer) =>
    app.get(path, { config: { operation: "docs" } }, (_request, reply) => {
      finishHeaders(reply);
      return reply
        .headers({
          "content-security-policy": CONTENT_SECURITY_POLICY,
          "x-content-type-options": "nosniff",
          "cache-control": "public, max-age=3600",
        })
        .type(type)
        .send(body());
    });
  asset("/docs", "text/html; charset=utf-8", () => DOCS_PAGE);
  asset("/docs/init.js", "text/javascript; charset=utf-8", () => INIT_SCRIPT);
  asset("/docs/swagger-ui.css", "text/css; charset=utf-8", () => swaggerUiFile("swagger-ui.css"));
  asset("/docs/favicon-32x32.png", "image/png", () => swaggerUiFile("favicon-32x32.png"));
  asset("/docs/swagger-ui-bundle.js", "text/javascript; charset=utf-8", () =>
    swaggerUiFile("swagger-ui-bundle.js"),
  );
}
