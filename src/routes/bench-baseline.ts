import { createRoute, z } from "@hono/zod-openapi";
import { requireAdmin } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { createApp } from "../lib/validation";

/**
 * Baseline for `bench/catalog.ts`: a bare route that returns exactly the bytes of a catalog response with
 * none of the read path (no cache, KV or D1), through the same middleware. The body is held in isolate
 * memory after an admin PUT; disabled in production.
 */
let body: string | null = null;

const put = createRoute({
  method: "put",
  path: "/admin/bench/bare",
  tags: ["Admin: operations"],
  summary: "Benchmark baseline: set the bytes GET /v1/bench/bare returns (not in production)",
  security: [{ adminToken: [] }],
  request: { body: { content: { "application/json": { schema: z.record(z.string(), z.unknown()) } } } },
  responses: { 204: { description: "Stored." }, 401: { description: "Missing or wrong admin token." } },
});

const get = createRoute({
  method: "get",
  path: "/v1/bench/bare",
  tags: ["Admin: operations"],
  summary: "Benchmark baseline: the stored bytes, with no read path behind them (not in production)",
  responses: { 200: { description: "The stored bytes." }, 404: { description: "Nothing stored, or production." } },
});

export const benchBaselineApp = createApp();
benchBaselineApp.use("/admin/bench/bare", requireAdmin);
benchBaselineApp
  .openapi(put, async (c) => {
    if (c.env.ENVIRONMENT === "production") throw ApiError.notFound("Not available in production.");
    body = await c.req.text();
    return c.body(null, 204);
  })
  .openapi(get, (c) => {
    if (c.env.ENVIRONMENT === "production" || body === null) throw ApiError.notFound("No baseline body stored.");
    return c.body(body, 200, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" });
  });
