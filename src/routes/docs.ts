import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../env";
import { createApp } from "../lib/validation";
import { completeContract } from "../openapi/contract";

export const OPENAPI_INFO = {
  openapi: "3.1.0",
  info: {
    title: "edgeshelf API",
    version: "0.1.0",
    description:
      "Edge-first catalog and stock-reservation API. Errors are RFC 9457 `application/problem+json` with a `request_id`.",
    license: { name: "MIT", identifier: "MIT" },
  },
} as const;

/** The document as served at /openapi.json: the routes' own definitions completed with what the middleware adds. */
export function openApiDocument(root: OpenAPIHono<AppEnv>) {
  return completeContract(root.getOpenAPI31Document(OPENAPI_INFO));
}

/**
 * The reference page is Swagger UI from the swagger-ui-dist package, served from Workers static assets
 * (public/docs/vendor/, copied there by scripts/copy-docs-assets.mjs on install, `wrangler dev` and deploy), so it
 * works offline. "Try it out" sends requests to this origin with the security schemes of /openapi.json.
 */
const PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>edgeshelf API reference</title>
    <link rel="stylesheet" href="/docs/vendor/swagger-ui.css" />
    <link rel="icon" href="/docs/vendor/favicon-32x32.png" />
  </head>
  <body>
    <noscript>The reference needs JavaScript; the raw document is at <a href="/openapi.json">/openapi.json</a>.</noscript>
    <div id="swagger-ui"></div>
    <script src="/docs/vendor/swagger-ui-bundle.js"></script>
    <script src="/docs/init.js"></script>
  </body>
</html>
`;

export function docsApp(root: OpenAPIHono<AppEnv>) {
  const app = createApp();
  let cached: ReturnType<typeof openApiDocument> | undefined;
  const document = () => (cached ??= openApiDocument(root));
  app.get("/openapi.json", (c) => {
    c.header("cache-control", "public, max-age=60");
    return c.json(document());
  });
  app.get("/docs", (c) => {
    c.header("cache-control", "public, max-age=300");
    return c.html(PAGE);
  });
  // Swagger UI's files and its start script, from static assets (the Worker runs first for every path).
  app.get("/docs/*", (c) => c.env.ASSETS.fetch(c.req.raw));
  return app;
}
