import { BoundedMap, stringBytes } from "../lib/isolate-memory";
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { AppEnv } from "../env";
import { resolveCurrency, resolveLocale } from "../catalog/locale";
import { ProductIdParam } from "../catalog/product-input";
import { createApp } from "../lib/validation";
import { shopperRegion } from "../stock/locations";
import { regionOfCountry, REGIONS, type ShopperMarket } from "../lib/markets";
import { BEST_SELLERS } from "../recommendations/refs";
import { blendContext, finish, fnv, readAnswer, type PublicItem, type Shopper } from "../recommendations/serve";
import { problem } from "./common";

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** A comma-separated list of product ids, at most `max`; every id must look like one. */
const idList = (max: number, description: string) =>
  z
    .string()
    .max(max * 66)
    .refine((s) => s.split(",").filter(Boolean).length <= max, `at most ${max} product ids`)
    .refine((s) => s.split(",").filter(Boolean).every((id) => ID_RE.test(id)), "every id must be letters, digits, '.', '_' or '-' (max 64)")
    .optional()
    .openapi({ description, example: "p-000001,p-000002" });

const CommonQuery = {
  limit: z.coerce.number().int().min(1).max(20).default(8).openapi({ description: "How many items, 1–20 (default 8)." }),
  currency: z.string().regex(/^[A-Za-z]{3}$/, "must be an ISO 4217 code").optional().openapi({ description: "Price currency (else resolved from the request).", example: "EUR" }),
  locale: z.string().max(35).optional().openapi({ description: "Text locale (en, de, fr).", example: "de" }),
  market: z
    .string()
    .regex(/^[A-Za-z]{2,4}$/, "must be a country (ISO 3166 alpha-2) or region code (EU, NA, APAC)")
    .optional()
    .openapi({ description: "Shopper market; else `x-shopper-country` / the request's country. Items not sold there are left out.", example: "DE" }),
  include_out_of_stock: z.enum(["true", "false"]).optional().openapi({ description: "`true` keeps sold-out items (never for `substitutes`)." }),
  exclude: idList(50, "Product ids to leave out (e.g. the cart)."),
};

const Card = z
  .object({
    id: z.string(),
    slug: z.string(),
    title: z.string(),
    brand: z.string(),
    image: z.object({ url: z.string(), alt: z.string().optional() }).nullable(),
    price: z.object({ amount: z.number().int(), currency: z.string() }).passthrough().nullable().openapi({ description: "Lowest effective variant price in the requested currency (promotions applied)." }),
    availability: z.object({ status: z.enum(["in_stock", "low_stock", "out_of_stock"]), in_stock: z.boolean() }),
  })
  .openapi("ProductCard");

const Item = z.object({
  product: Card,
  reason: z.enum(["similar", "bought_together", "pinned", "substitute", "best_seller"]),
  score: z.number().openapi({ description: "Relative strength within this answer (pins score above 1)." }),
});

const RecommendationsSchema = z
  .object({
    product_id: z.string().nullable(),
    intent: z.string().openapi({ example: "related" }),
    personalised: z.boolean().openapi({ description: "False for product-page answers, best sellers, and whenever consent is withheld." }),
    currency: z.string(),
    locale: z.string(),
    version: z.number().nullable().openapi({ description: "Version of the precomputed list (related, complementary)." }),
    items: z.array(Item),
  })
  .openapi("Recommendations");

const answerHeaders = {
  "x-cache-tier": { description: "Tier that answered: edge, kv or d1.", schema: { type: "string" as const } },
  ETag: { description: "Validator of this filtered answer.", schema: { type: "string" as const } },
};

const productRoute = createRoute({
  method: "get",
  path: "/v1/products/{id}/recommendations",
  tags: ["Recommendations"],
  summary: "Related, bought-together, or in-stock substitute products for one product",
  description:
    "`related`: similar by category, brand, attributes and title (precomputed). `complementary`: bought together in committed orders, plus merchandiser pins (precomputed). `substitutes`: in-stock alternatives in the same category ranked by similarity and price closeness, from live availability (regional when the shopper's region is known). Served from the edge cache; market, stock, `exclude` and `limit` are applied per request. Out-of-stock items are left out unless `include_out_of_stock=true` (never for substitutes); the product itself never appears.",
  request: {
    params: z.object({ id: ProductIdParam.openapi({ param: { name: "id", in: "path" }, example: "p-000001" }) }),
    query: z.object({ intent: z.enum(["related", "complementary", "substitutes"]).default("related").openapi({ description: "Default `related`." }), ...CommonQuery }),
  },
  responses: {
    200: { description: "The recommendations.", headers: answerHeaders, content: { "application/json": { schema: RecommendationsSchema } } },
    304: { description: "Not modified." },
    400: problem("Unknown intent, limit outside 1–20, malformed id, unsupported currency."),
    404: problem("No such product."),
    410: problem("The product has been archived."),
  },
});

const sessionRoute = createRoute({
  method: "get",
  path: "/v1/recommendations",
  tags: ["Recommendations"],
  summary: "Recommendations for a browsing session (context travels with the request), or best sellers",
  description:
    "Send up to 20 recently viewed product ids in `context`, most recent first: their related and complementary lists are blended, and context or `exclude`d ids never come back. Nothing is stored about the shopper. Without context, or with `Sec-GPC: 1` or `consent=none` (context then ignored), the answer is the market's best sellers (committed orders of the last 30 days in the requested currency).",
  request: {
    query: z.object({
      context: idList(20, "Recently viewed product ids, most recent first (≤ 20)."),
      consent: z.enum(["none", "granted"]).optional().openapi({ description: "`none`: non-personalised answer (best sellers); context ignored." }),
      ...CommonQuery,
    }),
    headers: z.object({ "sec-gpc": z.string().optional().openapi({ description: "Global Privacy Control: `1` means non-personalised." }) }),
  },
  responses: {
    200: { description: "The recommendations.", headers: answerHeaders, content: { "application/json": { schema: RecommendationsSchema } } },
    304: { description: "Not modified." },
    400: problem("More than 20 context ids, malformed ids, bad limit or currency."),
  },
});

/** Everything the shopper-specific pass depends on, next to the cached unit it filters. */
const filterKey = (unit: string, intent: string, limit: number, shopper: Shopper, exclude: Set<string>) =>
  `${unit}\n${JSON.stringify([intent, limit, shopper.market.country ?? "", shopper.market.region ?? "", shopper.includeOutOfStock, [...exclude].sort()])}`;

const splitIds = (s: string | undefined) => (s ? [...new Set(s.split(",").filter(Boolean))] : []);

function shopperMarket(req: Request, explicit: string | undefined): ShopperMarket {
  const code = explicit?.toUpperCase();
  if (code && (REGIONS as readonly string[]).includes(code)) return { region: code };
  const cf = (req as Request & { cf?: { country?: string } }).cf;
  const country = code ?? req.headers.get("x-shopper-country")?.trim().toUpperCase() ?? cf?.country?.toUpperCase();
  return { country: country || undefined, region: shopperRegion(req) ?? regionOfCountry(country) };
}

type Common = { limit: number; currency?: string; locale?: string; market?: string; include_out_of_stock?: "true" | "false"; exclude?: string };

function contextOf(c: Context<AppEnv>, q: Common) {
  const req = c.req.raw;
  const ctx = { currency: resolveCurrency(req, c.env, q.currency), locale: resolveLocale(req, c.env, q.locale), now: Date.now() };
  const shopper: Shopper = { market: shopperMarket(req, q.market), includeOutOfStock: q.include_out_of_stock === "true" };
  return { ctx, shopper, exclude: new Set(splitIds(q.exclude)) };
}

const rendered = new BoundedMap<{ text: string; etag: string }>("recommendations.rendered", { maxBytes: 4 * 1024 * 1024, sizeOf: (v) => stringBytes(v.text) + 64 });

/**
 * The filtered answer with its own validator; headers of the cached unit (tier, timing, cache policy) carried
 * over. `memoKey` (cached unit + everything the filter depends on) lets repeated edge hits skip re-rendering.
 */
function respond(c: Context<AppEnv>, body: () => object, from: Headers | null, personalised: boolean, memoKey?: string): Response {
  let out = memoKey ? rendered.get(memoKey) : undefined;
  if (!out) {
    const text = JSON.stringify(body());
    out = { text, etag: `"r${fnv(text)}"` };
    if (memoKey) rendered.set(memoKey, out);
  }
  const { text, etag } = out;
  const headers = new Headers({ "content-type": "application/json; charset=utf-8", etag, vary: "Accept-Language, x-shopper-country, x-shopper-region, Sec-GPC" });
  for (const h of ["x-cache-tier", "server-timing", "cache-control"]) {
    const v = from?.get(h);
    if (v) headers.set(h, v);
  }
  // A session answer depends on what the shopper sent: private to them, never in a shared cache.
  if (personalised) headers.set("cache-control", "private, no-store");
  const inm = c.req.header("if-none-match");
  if (inm && inm.split(",").some((t) => t.trim().replace(/^W\//, "") === etag)) return new Response(null, { status: 304, headers });
  return new Response(text, { status: 200, headers });
}

export const recommendationsApp = createApp()
  .openapi(productRoute, async (c) => {
    const { id } = c.req.valid("param");
    const q = c.req.valid("query");
    const { ctx, shopper, exclude } = contextOf(c, q);
    exclude.add(id);
    const { answer, headers, unit } = await readAnswer(c.env, (p) => c.executionCtx.waitUntil(p), id, q.intent, ctx);
    const body = () => {
      const items: PublicItem[] = finish(answer.items, shopper, q.limit, exclude, q.intent);
      return { product_id: id, intent: q.intent, personalised: false, currency: ctx.currency, locale: ctx.locale, version: answer.version, items };
    };
    return respond(c, body, headers, false, unit ? filterKey(unit, q.intent, q.limit, shopper, exclude) : undefined);
  })
  .openapi(sessionRoute, async (c) => {
    const q = c.req.valid("query");
    const { ctx, shopper, exclude } = contextOf(c, q);
    const optedOut = c.req.valid("header")["sec-gpc"]?.trim() === "1" || q.consent === "none";
    const context = optedOut ? [] : splitIds(q.context);
    if (context.length) {
      for (const id of context) exclude.add(id);
      const blended = await blendContext(c.env, context, exclude, ctx);
      const items = finish(blended, shopper, q.limit, exclude, "context");
      return respond(c, () => ({ product_id: null, intent: "context", personalised: true, currency: ctx.currency, locale: ctx.locale, version: null, items }), null, true);
    }
    const { answer, headers, unit } = await readAnswer(c.env, (p) => c.executionCtx.waitUntil(p), BEST_SELLERS, BEST_SELLERS, ctx);
    const body = () => {
      const items = finish(answer.items, shopper, q.limit, exclude, BEST_SELLERS);
      return { product_id: null, intent: "best_sellers", personalised: false, currency: ctx.currency, locale: ctx.locale, version: null, items };
    };
    return respond(c, body, headers, false, unit ? filterKey(unit, BEST_SELLERS, q.limit, shopper, exclude) : undefined);
  });
