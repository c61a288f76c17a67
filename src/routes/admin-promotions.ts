import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { AppEnv } from "../env";
import { isOccGuardError, isUniqueError } from "../db/guards";
import { sendOutboxIds } from "../events/outbox";
import { requireAdmin } from "../lib/auth";
import { now as clockNow } from "../lib/clock";
import { ApiError } from "../lib/errors";
import { createApp } from "../lib/validation";
import { nextBoundary } from "../promotions/effective-price";
import {
  checkRules,
  getPromotion,
  inputFromRow,
  listPromotions,
  view,
  writePromotion,
  type PromotionInput,
  type PromotionRow,
  type WriteKind,
} from "../promotions/store";
import { armClock, forgetNextBoundary } from "../promotions/switcher";
import { TARGET_TYPES } from "../promotions/targets";
import { etag, parseIfMatch, problem } from "./common";
import { supportedCurrencies } from "../catalog/locale";


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

// ---- helpers ----------------------------------------------------------------------------------------------

/** If-Match is mandatory on PATCH and DELETE: 428 without it, 412 when it is not the current version. */
function checkIfMatch(header: string | undefined, current: PromotionRow): number {
  if (header === undefined) {
    throw ApiError.preconditionRequired(`Send If-Match: "${current.version}" (the version you are changing).`, current.version);
  }
  if (parseIfMatch(header, "a promotion version", current.version) !== current.version) throw ApiError.preconditionFailed(`If-Match ${header} is not the current version ${current.version}.`, current.version);
  return current.version;
}

const ms = (iso: string) => Date.parse(iso);

async function mustGet(env: Env, id: string): Promise<PromotionRow> {
  const row = await getPromotion(env.DB, id);
  if (!row) throw ApiError.notFound(`No promotion ${id}.`);
  return row;
}

/** Commits, maps a lost race to 412, then sends the events and arms the boundary alarm after the commit. */
async function commit(c: Context<AppEnv>, write: WriteKind, input: PromotionInput | null, now: number): Promise<void> {
  let result;
  try {
    result = await writePromotion(c.env.DB, write, input, now);
  } catch (err) {
    if (isOccGuardError(err)) throw ApiError.preconditionFailed("The promotion was changed by another write meanwhile.", (await getPromotion(c.env.DB, write.id))?.version);
    if (isUniqueError(err, "promotions.id")) throw ApiError.conflict(`A promotion with id ${write.id} already exists.`);
    throw err;
  }
  forgetNextBoundary();
  const boundaries = [input, write.kind === "create" ? null : inputFromRow(write.before)].filter((x): x is PromotionInput => x !== null);
  const next = nextBoundary(boundaries, now);
  c.executionCtx.waitUntil(
    Promise.all([
      sendOutboxIds(c.env, result.outboxIds),
      armClock(c.env, next).catch((err) => console.warn(JSON.stringify({ level: "warn", message: "promotion clock not armed; the cron will", error: String(err) }))),
    ]).catch(() => {}),
  );
}

// ---- routes -----------------------------------------------------------------------------------------------

export const adminPromotionsApp = createApp();
adminPromotionsApp.use("/admin/promotions", requireAdmin);
adminPromotionsApp.use("/admin/promotions/*", requireAdmin);

adminPromotionsApp
  .openapi(createRouteDef, async (c) => {
    const body = c.req.valid("json");
    const now = clockNow();
    const input: PromotionInput = {
      name: body.name,
      starts_at: ms(body.starts_at),
      ends_at: body.ends_at ? ms(body.ends_at) : null,
      target: body.target,
      value: body.value,
      priority: body.priority,
      currencies: body.currencies,
      markets: body.markets,
    };
    checkRules(input, now, supportedCurrencies(c.env), true);
    const id = body.id ?? `promo-${crypto.randomUUID()}`;
    await commit(c, { kind: "create", id }, input, now);
    const row = await mustGet(c.env, id);
    c.header("ETag", etag(row.version));
    c.header("Location", `/admin/promotions/${encodeURIComponent(id)}`);
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
    const rows = await listPromotions(c.env.DB, { status: q.status, after, limit: q.limit + 1, now });
    const page = rows.slice(0, q.limit);
    const last = page[page.length - 1];
    const next = rows.length > q.limit && last ? btoa(last.id).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "") : null;
    c.header("cache-control", "no-store");
    return c.json({ items: page.map((r) => view(r, now)), next_cursor: next }, 200);
  })
  .openapi(getRouteDef, async (c) => {
    const { id } = c.req.valid("param");
    const row = await mustGet(c.env, id);
    c.header("ETag", etag(row.version));
    c.header("cache-control", "no-store");
    return c.json(view(row, clockNow()), 200);
  })
  .openapi(patchRouteDef, async (c) => {
    const { id } = c.req.valid("param");
    const patch = c.req.valid("json");
    const now = clockNow();
    const before = await mustGet(c.env, id);
    const expectedVersion = checkIfMatch(c.req.header("if-match"), before);
    const current = inputFromRow(before);
    const input: PromotionInput = {
      ...current,
      ...(patch.name !== undefined ? { name: patch.name } : {}),
      ...(patch.starts_at !== undefined ? { starts_at: ms(patch.starts_at) } : {}),
      ...(patch.ends_at !== undefined ? { ends_at: patch.ends_at === null ? null : ms(patch.ends_at) } : {}),
      ...(patch.target !== undefined ? { target: patch.target } : {}),
      ...(patch.value !== undefined ? { value: patch.value } : {}),
      ...(patch.priority !== undefined ? { priority: patch.priority } : {}),
      ...(patch.currencies !== undefined ? { currencies: patch.currencies } : {}),
      ...(patch.markets !== undefined ? { markets: patch.markets } : {}),
    };
    checkRules(input, now, supportedCurrencies(c.env), input.starts_at !== current.starts_at);
    await commit(c, { kind: "update", id, expectedVersion, before }, input, now);
    const row = await mustGet(c.env, id);
    c.header("ETag", etag(row.version));
    return c.json(view(row, now), 200);
  })
  .openapi(deleteRouteDef, async (c) => {
    const { id } = c.req.valid("param");
    const now = clockNow();
    const before = await mustGet(c.env, id);
    const expectedVersion = checkIfMatch(c.req.header("if-match"), before);
    await commit(c, { kind: "delete", id, expectedVersion, before }, null, now);
    return c.body(null, 204);
  });
