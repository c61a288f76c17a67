import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../env";
import { resolveCurrency, resolveLocale } from "../catalog/locale";
import { loadProductDocuments } from "../catalog/document";
import { selectPage } from "../feeds/pages";
import { allCatalogDbs, catalogDb } from "../db/partitions";
import { renderOne, renderPage, type FeedFormat, type RenderContext } from "../feeds/render";
import { parseShipping, renderGoogleDocument, shippingFor, streamGoogleFeed, type StreamedFormat, type StreamOptions } from "../feeds/google-merchant";
import { conditionalResponse, etagMatches } from "../feeds/conditional";
import { sha256Hex } from "../lib/crypto";
import { filterVariants, inScope } from "../feeds/scope";
import { originAllowed, requestOrigin, requireAffiliate } from "../lib/auth";
import { now as clockNow } from "../lib/clock";
import { ApiError } from "../lib/errors";
import { consistentRead } from "../imports/published-view";
import { capCacheControl, lastPriceChange } from "../promotions/cache-cap";
import { createApp } from "../lib/validation";

const FORMATS = ["json", "google", "google-xml", "google-tsv", "jsonfeed"] as const;
const STREAMED = new Set<string>(["google-xml", "google-tsv"]);
/** Page size of the streamed Merchant Center formats: 1,000 products per D1 read keeps a 300k catalog within a request's query budget. */
const STREAM_PAGE = 1000;
const LIST_CACHE = "private, max-age=60, stale-while-revalidate=300";
const ITEM_CACHE = "private, max-age=30, stale-while-revalidate=60";
const VARY = "Authorization, Origin, Accept-Language, x-shopper-country";

const common = {
  format: z.enum(FORMATS).default("json").openapi({
    description:
      "`json` (our schema), `google` (Merchant Center attributes as JSON, one item per variant), `google-xml` (RSS 2.0 with the `g:` namespace) or `google-tsv` (tab-separated) for Merchant Center scheduled fetches, or `jsonfeed` (JSON Feed 1.1). The two Merchant Center file formats stream the whole catalog in one response.",
  }),
  currency: z.string().max(3).optional().openapi({ description: "ISO 4217; default from x-shopper-country / Accept-Language / country." }),
  locale: z.string().max(35).optional().openapi({ description: "en, de or fr (BCP 47 tags are reduced to the language)." }),
  key: z.string().max(256).optional().openapi({ description: "Affiliate key for script-tag embeds; accepted only from the affiliate's allowed origins." }),
};

const ListQuery = z.object({
  ...common,
  limit: z.coerce.number().int().min(1).max(1000).optional().openapi({ description: "Items per page (default 100). For google-xml and google-tsv: products read per step of the stream (default 1000)." }),
  cursor: z.string().max(512).optional().openapi({ description: "next_cursor of the previous page of a full listing." }),
  since: z.string().max(512).optional().openapi({ description: "Opaque delta token (next_since of an earlier response): only products changed since, removals as tombstones." }),
  category: z.string().max(100).optional().openapi({ description: "Only this category and its subcategories (within the affiliate's scope)." }),
  brand: z.string().max(200).optional(),
});

const FeedBody = z.record(z.string(), z.unknown()).openapi("AffiliateFeed", {
  description:
    "format=json: {format, mode, currency, locale, items[], removed[], next_cursor, next_since, has_more}; each item has id, slug, title, description, brand, category_id, category_path, condition, attributes, image, images, markets, link (tracked), click_url, price {amount, currency, decimal, formatted, compare_at, promotion}, availability {status, available}, variants[], version, change_seq, updated_at. format=google: items are Merchant Center products (one per variant). format=jsonfeed: JSON Feed 1.1 with `_edgeshelf` extensions.",
});

const feedContent = {
  "application/json": { schema: FeedBody },
  "application/feed+json": { schema: FeedBody },
  "application/rss+xml": { schema: z.string().openapi({ description: "RSS 2.0 with xmlns:g=\"http://base.google.com/ns/1.0\": one <item> per variant." }) },
  "text/tab-separated-values": { schema: z.string().openapi({ description: "A header row of Merchant Center attribute names, then one row per variant." }) },
};

const errors = {
  304: { description: "Not modified (If-None-Match matched the ETag)." },
  400: { description: "Invalid parameter or token." },
  401: { description: "Missing, unknown, expired or revoked key." },
  403: { description: "`?key=` used from an origin the affiliate has not allowed, or a non-affiliate key." },
};

const listRoute = createRoute({
  method: "get",
  path: "/v1/feeds/products",
  tags: ["Affiliate feeds"],
  summary: "Product feed for an affiliate (full listing or delta since a token)",
  description: "Authorization: Bearer <affiliate key> (or ?key= from an allowed origin). ETag/If-None-Match → 304.",
  request: { query: ListQuery },
  responses: { 200: { description: "A feed page (JSON formats), or the whole feed as one streamed Merchant Center file (google-xml, google-tsv).", content: feedContent }, ...errors },
});

const itemRoute = createRoute({
  method: "get",
  path: "/v1/feeds/products/{id}",
  tags: ["Affiliate feeds"],
  summary: "One product in feed format, with live availability",
  request: { params: z.object({ id: z.string().min(1).max(100) }), query: z.object(common) },
  responses: {
    200: { description: "The product.", content: feedContent },
    ...errors,
    404: { description: "Unknown, inactive or outside the affiliate's scope." },
  },
});

/**
 * Browser embeds: the global /v1 CORS layer answers `*`; feeds narrow it to the affiliate's allowed
 * origins once the key is known, so a page elsewhere cannot read the feed even with a copied key.
 */
const affiliateCors = createMiddleware<AppEnv>(async (c, next) => {
  await next();
  const affiliate = c.get("affiliate");
  const origin = c.req.header("origin");
  if (!affiliate || !origin) return;
  c.res.headers.append("Vary", "Origin");
  if (originAllowed(requestOrigin(c), affiliate.allowed_origins)) c.res.headers.set("Access-Control-Allow-Origin", origin);
  else c.res.headers.delete("Access-Control-Allow-Origin");
});

function renderContext(c: Context<AppEnv>, currency: string, locale: string): RenderContext {
  const selfUrl = new URL(c.req.url);
  selfUrl.searchParams.delete("key");
  return { affiliate: c.get("affiliate")!, currency, locale, siteBaseUrl: c.env.SITE_BASE_URL, apiOrigin: new URL(c.req.url).origin, selfUrl, now: clockNow() };
}

export const feedsApp = createApp();
feedsApp.use("/v1/feeds/*", affiliateCors, requireAffiliate);

feedsApp.openapi(listRoute, async (c) => {
  const q = c.req.valid("query");
  if (q.cursor !== undefined && q.since !== undefined) {
    throw ApiError.badRequest("Use either cursor (next page of a full listing) or since (delta), not both.", {
      errors: [{ location: "query", path: "cursor", message: "cannot be combined with since" }],
    });
  }
  const currency = resolveCurrency(c.req.raw, c.env, q.currency);
  const locale = resolveLocale(c.req.raw, c.env, q.locale);
  const affiliate = c.get("affiliate")!;
  if (STREAMED.has(q.format)) return streamedFeed(c, q.format as StreamedFormat, { ...q, currency, locale });
  const readAt = Date.now();
  const page = await consistentRead(c.env, () => selectPage(allCatalogDbs(c.env), {
    scope: affiliate.scope,
    filters: { category: q.category, brand: q.brand },
    limit: q.limit ?? 100,
    since: q.since,
    cursor: q.cursor,
    currency,
    locale,
  }));
  page.live = page.live.map((l) => ({ ...l, doc: filterVariants(l.doc, affiliate.scope) }));
  const ctx = renderContext(c, currency, locale);
  const { body, contentType } = renderPage(q.format as FeedFormat, page, ctx);
  const docs = page.live.map((l) => l.doc);
  // A promotion boundary changes prices without a write: it counts as a modification, and caps the lifetime.
  const lastModified = Math.max(affiliate.updated_at, lastPriceChange(docs, ctx.now), ...page.live.map((l) => l.lastModified), ...page.removed.map((r) => r.removed_at));
  // Last-Modified is informational on lists: a page's membership can change without any listed row changing.
  return conditionalResponse(c.req.raw, JSON.stringify(body), { contentType, cacheControl: capCacheControl(LIST_CACHE, docs, ctx.now), lastModified, readAt, vary: VARY });
});

feedsApp.openapi(itemRoute, async (c) => {
  const { id } = c.req.valid("param");
  const q = c.req.valid("query");
  const currency = resolveCurrency(c.req.raw, c.env, q.currency);
  const locale = resolveLocale(c.req.raw, c.env, q.locale);
  const affiliate = c.get("affiliate")!;
  const readAt = Date.now();
  const [loaded] = await loadProductDocuments(catalogDb(c.env, id), [id], { only: { currency, locale }, badJson: "fallback" });
  if (!loaded || loaded.doc.status !== "active" || !inScope(loaded.doc, affiliate.scope)) {
    throw ApiError.notFound(`No product '${id}' in this affiliate's catalog.`);
  }
  const ctx = renderContext(c, currency, locale);
  const doc = filterVariants(loaded.doc, affiliate.scope);
  const rendered = STREAMED.has(q.format)
    ? { text: renderGoogleDocument([doc], streamOptions(c, q.format as StreamedFormat, ctx)), contentType: STREAMED_TYPES[q.format as StreamedFormat] }
    : (({ body, contentType }) => ({ text: JSON.stringify(body), contentType }))(renderOne(q.format as FeedFormat, doc, ctx));
  return conditionalResponse(c.req.raw, rendered.text, {
    contentType: rendered.contentType,
    cacheControl: capCacheControl(ITEM_CACHE, [loaded.doc], ctx.now),
    lastModified: Math.max(loaded.lastModified, affiliate.updated_at, lastPriceChange([loaded.doc], ctx.now)),
    readAt,
    honourIfModifiedSince: true,
    vary: VARY,
  });
});

const STREAMED_TYPES: Record<StreamedFormat, string> = {
  "google-xml": "application/rss+xml; charset=utf-8",
  "google-tsv": "text/tab-separated-values; charset=utf-8",
};

function streamOptions(c: Context<AppEnv>, format: StreamedFormat, ctx: RenderContext): StreamOptions {
  return { format, ctx, shipping: shippingFor(parseShipping(c.env.GOOGLE_SHIPPING), ctx.currency), channelTitle: `edgeshelf products for ${ctx.affiliate.name}` };
}

type StreamQuery = { limit?: number; cursor?: string; since?: string; category?: string; brand?: string; currency: string; locale: string };

/**
 * The whole catalog in scope as one Merchant Center file, read `limit` products at a time. The weak ETag names
 * the catalog's change_seq high-water mark (every product write, availability flip and promotion boundary moves
 * it), the affiliate's version and the request, so a scheduled fetch of an unchanged catalog is a cheap 304.
 */
async function streamedFeed(c: Context<AppEnv>, format: StreamedFormat, q: StreamQuery): Promise<Response> {
  if (q.cursor !== undefined || q.since !== undefined) {
    throw ApiError.badRequest(`format=${format} streams the whole feed in one response; cursor and since apply to the JSON formats.`, {
      errors: [{ location: "query", path: q.cursor !== undefined ? "cursor" : "since", message: `not accepted with format=${format}` }],
    });
  }
  const affiliate = c.get("affiliate")!;
  const request = { scope: affiliate.scope, filters: { category: q.category, brand: q.brand }, limit: q.limit ?? STREAM_PAGE, currency: q.currency, locale: q.locale };
  // Each page gathered from every partition, and each consistent with one state of every import (published-view.ts).
  const first = await consistentRead(c.env, () => selectPage(allCatalogDbs(c.env), request));
  const ctx = renderContext(c, q.currency, q.locale);
  const opts = streamOptions(c, format, ctx);
  const etag = `W/"${(await sha256Hex(JSON.stringify([format, first.next_since, affiliate.updated_at, request.filters, q.currency, q.locale, request.limit, opts.shipping]))).slice(0, 32)}"`;
  const headers = new Headers({ etag, "cache-control": "private, no-cache", vary: VARY });
  if (etagMatches(c.req.header("if-none-match"), etag)) return new Response(null, { status: 304, headers });
  headers.set("content-type", STREAMED_TYPES[format]);
  let cursor = first.next_cursor;
  // The 200 and the first page are sent: a later page must not cut the file short. If an import keeps the catalog
  // rolling past the wait, that page and the rest are read as they are (best effort), never failed.
  let waitForImports = true;
  const source = {
    async next() {
      const read = () => selectPage(allCatalogDbs(c.env), { ...request, cursor: cursor ?? undefined });
      const page = waitForImports
        ? await consistentRead(c.env, read).catch((err: unknown) => {
            if (!(err instanceof ApiError) || err.status !== 503) throw err;
            waitForImports = false;
            return read();
          })
        : await read();
      cursor = page.next_cursor;
      return { docs: page.live.map((l) => filterVariants(l.doc, affiliate.scope)), hasMore: page.has_more };
    },
  };
  const firstDocs = { docs: first.live.map((l) => filterVariants(l.doc, affiliate.scope)), hasMore: first.has_more };
  if (c.req.method === "HEAD") return new Response(null, { status: 200, headers });
  return new Response(streamGoogleFeed(firstDocs, source, opts), { status: 200, headers });
}
