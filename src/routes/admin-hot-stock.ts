import { createRoute, z } from "@hono/zod-openapi";
import { requireAdmin } from "../lib/auth";
import { createApp } from "../lib/validation";
import { hotStatus, markHot, MAX_SUB_SHARDS, unmarkHot } from "../stock/hot";
import { problem } from "./common";

const security = [{ adminToken: [] }];
const SkuParams = z.object({ sku: z.string().min(1).max(128).openapi({ param: { name: "sku", in: "path" }, example: "SKU-000001-1" }) });

const Totals = z.object({
  shard: z.string(),
  on_hand: z.number(),
  reserved: z.number(),
  available: z.number(),
  committed: z.number(),
  escrow_out: z.number(),
  escrow_in: z.number(),
  pending: z.number().openapi({ description: "Units this object sent that their receiver has not acknowledged yet (its alarm re-delivers them)." }),
});
const HotStatusSchema = z
  .object({
    sku: z.string(),
    hot: z.boolean(),
    state: z.string().nullable().openapi({ description: "marking | hot | folding, or null when not hot" }),
    sub_shards: z.number(),
    home: Totals,
    sub_shard_totals: z.array(Totals),
    totals: z
      .object({ on_hand: z.number(), reserved: z.number(), available: z.number(), committed: z.number(), quotas: z.number() })
      .openapi({ description: "Summed over the home shard and every sub-shard; `on_hand` and `available` include the units in transit, as every other reader counts them." }),
    in_transit: z.number().openapi({ description: "Of `totals.on_hand`, the units taken by one object and not yet recorded by the other (0 unless a transfer failed mid-way; the giver's alarm re-delivers them)." }),
  })
  .openapi("HotSkuStatus");
const ok = (description: string) => ({ description, content: { "application/json": { schema: HotStatusSchema } } });

const markRoute = createRoute({
  method: "post",
  path: "/admin/stock/{sku}/hot",
  tags: ["Admin: stock"],
  summary: "Mark a SKU hot: split its free stock into K escrow quotas held by K sub-shard objects",
  description:
    "Reservations for the SKU are then spread over the sub-shards by a hash of the reservation (fixed by its Idempotency-Key); a dry sub-shard borrows from its siblings. Retrying after a failure resumes the same split.",
  security,
  request: {
    params: SkuParams,
    body: { required: true, content: { "application/json": { schema: z.object({ sub_shards: z.number().int().min(1).max(MAX_SUB_SHARDS) }) } } },
  },
  responses: { 200: ok("The SKU is hot; totals per object."), 401: problem("Admin token required."), 404: problem("Unknown SKU."), 409: problem("Already hot with another K.") },
});

const statusRoute = createRoute({
  method: "get",
  path: "/admin/stock/{sku}/hot",
  tags: ["Admin: stock"],
  summary: "Escrow status and reconciliation of a SKU across its home shard and sub-shards",
  security,
  request: { params: SkuParams },
  responses: { 200: ok("Totals per object; quotas + reserved + committed account for the stock."), 401: problem("Admin token required.") },
});

const unmarkRoute = createRoute({
  method: "delete",
  path: "/admin/stock/{sku}/hot",
  tags: ["Admin: stock"],
  summary: "Un-mark a hot SKU: fold the free quotas back into the home shard",
  description: "Units still held in a sub-shard stay there until their reservation ends; calling this again sweeps what has been freed since.",
  security,
  request: { params: SkuParams },
  responses: { 200: ok("Folded (state null once the sub-shards are empty)."), 401: problem("Admin token required."), 404: problem("The SKU is not hot.") },
});

export const adminHotStockApp = createApp();
adminHotStockApp.use("/admin/stock/:sku/hot", requireAdmin);
adminHotStockApp
  .openapi(markRoute, async (c) => {
    const { sku } = c.req.valid("param");
    c.header("cache-control", "no-store");
    return c.json(await markHot(c.env, sku, c.req.valid("json").sub_shards, "admin"), 200);
  })
  .openapi(statusRoute, async (c) => {
    c.header("cache-control", "no-store");
    return c.json(await hotStatus(c.env, c.req.valid("param").sku), 200);
  })
  .openapi(unmarkRoute, async (c) => {
    c.header("cache-control", "no-store");
    return c.json(await unmarkHot(c.env, c.req.valid("param").sku, "admin"), 200);
  });
