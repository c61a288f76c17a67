import { createRoute, z } from "@hono/zod-openapi";
import { ProductIdParam } from "../catalog/product-input";
import { requireAdmin } from "../lib/auth";
import { createApp } from "../lib/validation";
import { recommendationMetrics, startRebuild } from "../recommendations/jobs";
import { pinsOf, savePins } from "../recommendations/manage-pins";
import { etag, parseIfMatch, problem } from "./common";

const Ids = z.array(ProductIdParam).max(40).default([]);
const PinsBody = z
  .object({
    complementary: Ids.openapi({ description: "Shown first in `complementary`, in this order." }),
    related: Ids.openapi({ description: "Shown first in `related`, in this order." }),
    exclude: Ids.openapi({ description: "Never recommended for this product." }),
  })
  .openapi("RecommendationPins");

const ListItem = z.object({ id: z.string(), score: z.number(), reason: z.string() });
const StoredList = z.object({ version: z.number(), computed_at: z.number(), items: z.array(ListItem) }).nullable();
const PinsView = z
  .object({
    product_id: z.string(),
    pins: z.object({ complementary: z.array(z.string()), related: z.array(z.string()), exclude: z.array(z.string()), version: z.number() }).nullable(),
    lists: z.object({ related: StoredList, complementary: StoredList }),
  })
  .openapi("RecommendationAdminView");

const Params = z.object({ id: ProductIdParam.openapi({ param: { name: "id", in: "path" }, example: "p-000001" }) });

const putRoute = createRoute({
  method: "put",
  path: "/admin/products/{id}/recommendations",
  tags: ["Admin: recommendations"],
  summary: "Set merchandiser pins (complementary, related, exclude) for a product",
  description:
    'Replaces the pins. The first write needs no If-Match; later ones need `If-Match` with the current pins version (ETag, e.g. `"2"`). The product\'s lists are recomputed and its cached answers purged before the response.',
  security: [{ adminToken: [] }],
  request: {
    params: Params,
    headers: z.object({ "if-match": z.string().optional().openapi({ description: "Current pins version, as returned in ETag." }) }),
    body: { required: true, content: { "application/json": { schema: PinsBody } } },
  },
  responses: {
    200: { description: "Stored; ETag holds the new pins version.", content: { "application/json": { schema: PinsView } } },
    400: problem("Malformed body or ids."),
    401: problem("Missing or wrong admin token."),
    404: problem("No such product."),
    412: problem("If-Match does not match the current pins version."),
    422: problem("Pinned ids that are not products (`unknown_ids`), or the product pinned to itself."),
    428: problem("Pins exist and the request has no If-Match."),
  },
});

const getRoute = createRoute({
  method: "get",
  path: "/admin/products/{id}/recommendations",
  tags: ["Admin: recommendations"],
  summary: "A product's pins and its precomputed lists (with versions)",
  security: [{ adminToken: [] }],
  request: { params: Params },
  responses: { 200: { description: "Pins and lists.", content: { "application/json": { schema: PinsView } } }, 401: problem("Missing or wrong admin token."), 404: problem("No such product.") },
});

const JobSchema = z
  .object({ id: z.string(), kind: z.string(), status: z.string(), processed: z.number(), total: z.number(), started_at: z.number(), finished_at: z.number().nullable() })
  .passthrough()
  .openapi("RecommendationJob");

const rebuildRoute = createRoute({
  method: "post",
  path: "/admin/recommendations/rebuild",
  tags: ["Admin: recommendations"],
  summary: "Recompute every product's related and complementary lists (background, chunked)",
  description:
    "Starts a full rebuild that runs in chunks across queue messages (resumable; the cron continues a stalled one). If one is already running it is returned instead. Progress and the last finished run are in `/admin/metrics` → `recommendations`.",
  security: [{ adminToken: [] }],
  responses: {
    202: { description: "Started, or already running (`started: false`).", content: { "application/json": { schema: z.object({ started: z.boolean(), job: JobSchema }) } } },
    401: problem("Missing or wrong admin token."),
  },
});

const RunView = z
  .object({
    id: z.string(),
    status: z.string(),
    processed: z.number(),
    total: z.number(),
    started_at: z.string(),
    finished_at: z.string().nullable(),
    duration_ms: z.number().nullable(),
  })
  .nullable();

const rebuildStatusRoute = createRoute({
  method: "get",
  path: "/admin/recommendations/rebuild",
  tags: ["Admin: recommendations"],
  summary: "Progress of the running rebuild (processed of total products), the last finished one, and the incremental backlog",
  security: [{ adminToken: [] }],
  responses: {
    200: {
      description: "Rebuild progress.",
      content: {
        "application/json": {
          schema: z
            .object({
              rebuild_running: RunView,
              last_rebuild: RunView,
              dirty_products: z.number().openapi({ description: "Products waiting for the incremental run." }),
              last_incremental: z.object({ at: z.string(), recomputed: z.number(), changed: z.number() }).nullable(),
            })
            .openapi("RecommendationRebuildStatus"),
        },
      },
    },
    401: problem("Missing or wrong admin token."),
  },
});

export const adminRecommendationsApp = createApp();
adminRecommendationsApp.use("/admin/products/:id/recommendations", requireAdmin);
adminRecommendationsApp.use("/admin/recommendations/*", requireAdmin);

adminRecommendationsApp
  .openapi(putRoute, async (c) => {
    const ifMatch = parseIfMatch(c.req.valid("header")["if-match"], "a pins version");
    const { version, view } = await savePins(c.env, c.req.valid("param").id, c.req.valid("json"), ifMatch);
    c.header("etag", etag(version));
    c.header("cache-control", "no-store");
    return c.json(view, 200);
  })
  .openapi(getRoute, async (c) => {
    const view = await pinsOf(c.env, c.req.valid("param").id);
    if (view.pins) c.header("etag", etag(view.pins.version));
    c.header("cache-control", "no-store");
    return c.json(view, 200);
  })
  .openapi(rebuildStatusRoute, async (c) => {
    c.header("cache-control", "no-store");
    return c.json(await recommendationMetrics(c.env.DB), 200);
  })
  .openapi(rebuildRoute, async (c) => {
    const { job, started } = await startRebuild(c.env);
    c.header("cache-control", "no-store");
    return c.json({ started, job }, 202);
  });
