import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { AppEnv } from "../env";
import { requireAdmin } from "../lib/auth";
import { now as clockNow } from "../lib/clock";
import { ApiError } from "../lib/errors";
import { createApp } from "../lib/validation";
import { createPromotion, deletePromotion, mustGetPromotion, updatePromotion } from "../promotions/manage-promotions";
import { listPromotions, view } from "../promotions/store";
import { allCatalogDbs } from "../db/partitions";
import { TARGET_TYPES } from "../promotions/targets";
import { etag, parseIfMatch, problem } from "./common";

const Instant = z.iso.datetime({ offset: true }).openapi({ description: "RFC 3339 instant.", example: "2026-11-27T00:00:00Z" });
const Amounts = z.record(z.string().regex(/^[A-Z]{3}$/), z.number().int().min(0)).openapi({ description: "Minor units per currency.", example: { USD: 500, EUR: 450 } });

const Target = z
  .object({
    type: z.enum(TARGET_TYPES).openapi({ description: "`skus`, `products` (ids), `category` (id or slug; subcategories included) or `brand`." }),
    values: z.array(z.string().min(1).max(200)).min(1).max(1000),
  })
  .openapi("PromotionTarget", { example: { type: "category", values: ["cat-audio"] } });

const Value = z
  .discriminatedUnion("type", [
    z.object({ type: z.literal("percent_off"), bps: z.number().int().min(1).openapi({ description: "Basis points: 2000 = 20% off." }) }),
    z.object({ type: z.literal("amount_off"), amounts: Amounts.refine((a) => Object.values(a).every((v) => v > 0), "amounts off must be positive") }),
    z.object({ type: z.literal("fixed_price"), amounts: Amounts }),
  ])
  .openapi("PromotionValue", { example: { type: "percent_off", bps: 2000 } });

const Currencies = z.array(z.string().regex(/^[A-Z]{3}$/)).max(20);
const Markets = z.array(z.string().min(2).max(10)).max(50);

const PromotionCreate = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/).optional().openapi({ description: "Defaults to `promo-<uuid>`.", example: "promo-black-friday" }),
    name: z.string().min(1).max(200).openapi({ example: "Black Friday: 20% off audio" }),
    starts_at: Instant,
    ends_at: Instant.nullable().optional(),
    target: Target,
    value: Value,
    priority: z.number().int().min(-1_000_000).max(1_000_000).default(0).openapi({ description: "When several promotions match a SKU, the highest priority applies (no stacking)." }),
    currencies: Currencies.default([]).openapi({ description: "Only these currencies; empty = all." }),
    markets: Markets.default([]).openapi({ description: "Markets (ISO country codes, or regions EU, NA, APAC) the promotion applies in; empty = all. A market-limited promotion applies only to reads and reservations that name one of them (`market=`)." }),
  })
  .strict()
  .openapi("PromotionCreate");

const PromotionPatch = z
  .object({
    name: z.string().min(1).max(200),
    starts_at: Instant,
    ends_at: Instant.nullable().openapi({ description: "Set to now to end a promotion early." }),
    target: Target,
    value: Value,
    priority: z.number().int().min(-1_000_000).max(1_000_000),
    currencies: Currencies,
    markets: Markets,
  })
  .partial()
  .strict()
  .openapi("PromotionPatch");

const PromotionSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    status: z.enum(["scheduled", "active", "ended"]),
    starts_at: z.string(),
    ends_at: z.string().nullable(),
    target: z.object({ type: z.string(), values: z.array(z.string()), matched_skus: z.number().int(), matched_products: z.number().int() }),
    value: z.record(z.string(), z.unknown()),
    priority: z.number().int(),
    currencies: z.array(z.string()),
    markets: z.array(z.string()),
    version: z.number().int(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("Promotion");

const Params = z.object({ id: z.string().min(1).max(100).openapi({ param: { name: "id", in: "path" }, example: "promo-black-friday" }) });
const IfMatch = z.object({ "if-match": z.string().optional().openapi({ description: 'Current version as returned in ETag, e.g. `"2"`. Required.' }) });
const json = (schema: z.ZodType, description: string) => ({ description, content: { "application/json": { schema } } });

const rulesDescription =
  "422 (with `rule`) when: `ends_at` is not after `starts_at` (ends_before_start); more than 100% off (more_than_100_percent); a price would go to or below zero (price_not_positive); the target matches no SKU (empty_target); `starts_at` is more than a minute in the past (start_in_past); or a currency is unsupported.";

const createRouteDef = createRoute({
  method: "post",
  path: "/admin/promotions",
  tags: ["Admin: promotions"],
  summary: "Schedule a promotion",
  description: `Resolves the target to SKUs, then commits the promotion, its targets and the affected products' new prices and change events in one transaction. ${rulesDescription}`,
  security: [{ adminToken: [] }],
  request: { body: { required: true, content: { "application/json": { schema: PromotionCreate } } } },
  responses: {
    201: json(PromotionSchema, "Created; ETag holds the version."),
    401: problem("Missing or wrong admin token."),
    409: problem("A promotion with this id exists."),
    422: problem("A business rule is broken."),
  },
});

const listRouteDef = createRoute({
  method: "get",
  path: "/admin/promotions",
  tags: ["Admin: promotions"],
  summary: "List promotions",
  security: [{ adminToken: [] }],
  request: {
    query: z.object({
      status: z.enum(["active", "scheduled", "ended"]).optional(),
      limit: z.coerce.number().int().min(1).max(200).default(50),
      cursor: z.string().max(200).optional().openapi({ description: "`next_cursor` of the previous page." }),
    }),
  },
  responses: { 200: json(z.object({ items: z.array(PromotionSchema), next_cursor: z.string().nullable() }), "One page, by id."), 401: problem("Missing or wrong admin token.") },
});

const getRouteDef = createRoute({
  method: "get",
  path: "/admin/promotions/{id}",
  tags: ["Admin: promotions"],
  summary: "One promotion",
  security: [{ adminToken: [] }],
  request: { params: Params },
  responses: { 200: json(PromotionSchema, "The promotion; ETag holds the version."), 401: problem("Missing or wrong admin token."), 404: problem("No such promotion.") },
});

const writeErrors = {
  401: problem("Missing or wrong admin token."),
  404: problem("No such promotion."),
  412: problem("If-Match does not match the current version."),
  428: problem("If-Match is required."),
};

const patchRouteDef = createRoute({
  method: "patch",
  path: "/admin/promotions/{id}",
  tags: ["Admin: promotions"],
  summary: "Change a promotion (end it early by setting `ends_at`)",
  description: `Fields given replace the current ones; the target is re-resolved. Needs If-Match. ${rulesDescription}`,
  security: [{ adminToken: [] }],
  request: { params: Params, headers: IfMatch, body: { required: true, content: { "application/json": { schema: PromotionPatch } } } },
  responses: { 200: json(PromotionSchema, "Updated; ETag holds the new version."), ...writeErrors, 422: problem("A business rule is broken.") },
});

const deleteRouteDef = createRoute({
  method: "delete",
  path: "/admin/promotions/{id}",
  tags: ["Admin: promotions"],
  summary: "Delete a promotion (prices return to regular at once)",
  security: [{ adminToken: [] }],
  request: { params: Params, headers: IfMatch },
  responses: { 204: { description: "Deleted." }, ...writeErrors },
});

const writeContext = (c: Context<AppEnv>) => ({ env: c.env, waitUntil: (p: Promise<unknown>) => c.executionCtx.waitUntil(p) });
const ifMatch = (c: Context<AppEnv>) => parseIfMatch(c.req.header("if-match"), "a promotion version");

// ---- routes -----------------------------------------------------------------------------------------------

export const adminPromotionsApp = createApp();
adminPromotionsApp.use("/admin/promotions", requireAdmin);
adminPromotionsApp.use("/admin/promotions/*", requireAdmin);

adminPromotionsApp
  .openapi(createRouteDef, async (c) => {
    const { id, ...fields } = c.req.valid("json");
    const now = clockNow();
    const row = await createPromotion(writeContext(c), id ?? `promo-${crypto.randomUUID()}`, fields, now);
    c.header("ETag", etag(row.version));
    c.header("Location", `/admin/promotions/${encodeURIComponent(row.id)}`);
    return c.json(view(row, now), 201);
  })
  .openapi(listRouteDef, async (c) => {
    const q = c.req.valid("query");
    const now = clockNow();
    let after: string | undefined;
    if (q.cursor !== undefined) {
      try {
        after = atob(q.cursor.replace(/-/g, "+").replace(/_/g, "/"));
      } catch {
        throw ApiError.badRequest("Invalid cursor.", { errors: [{ location: "query", path: "cursor", message: "not a cursor returned by this API" }] });
      }
    }
    const rows = await listPromotions(allCatalogDbs(c.env), { status: q.status, after, limit: q.limit + 1, now });
    const page = rows.slice(0, q.limit);
    const last = page[page.length - 1];
    const next = rows.length > q.limit && last ? btoa(last.id).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "") : null;
    c.header("cache-control", "no-store");
    return c.json({ items: page.map((r) => view(r, now)), next_cursor: next }, 200);
  })
  .openapi(getRouteDef, async (c) => {
    const row = await mustGetPromotion(allCatalogDbs(c.env), c.req.valid("param").id);
    c.header("ETag", etag(row.version));
    c.header("cache-control", "no-store");
    return c.json(view(row, clockNow()), 200);
  })
  .openapi(patchRouteDef, async (c) => {
    const now = clockNow();
    const row = await updatePromotion(writeContext(c), c.req.valid("param").id, c.req.valid("json"), ifMatch(c), now);
    c.header("ETag", etag(row.version));
    return c.json(view(row, now), 200);
  })
  .openapi(deleteRouteDef, async (c) => {
    await deletePromotion(writeContext(c), c.req.valid("param").id, ifMatch(c), clockNow());
    return c.body(null, 204);
  });
