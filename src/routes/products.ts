import { createRoute, z } from "@hono/zod-openapi";
import { resolveCurrency, resolveLocale } from "../catalog/locale";
import { requestBookmark } from "../catalog/origin";
import { listingParams, readListing } from "../catalog/listing-read";
import { SORTS } from "../catalog/listing";
import { readProduct } from "../catalog/product-read";
import { createApp } from "../lib/validation";
import { LocaleQuery, MarketCode, problem } from "./common";

const Price = z
  .object({
    amount: z.number().int().openapi({ description: "Effective price in minor units (promotions applied).", example: 10399 }),
    currency: z.string().openapi({ example: "EUR" }),
    compare_at: z.number().int().optional().openapi({ description: "Present when a promotion applies: the regular price.", example: 12999 }),
    promotion: z
      .object({ id: z.string(), name: z.string(), ends_at: z.string().nullable() })
      .optional()
      .openapi({ description: "Present when a promotion applies.", example: { id: "promo-black-friday", name: "Black Friday: 20% off audio", ends_at: "2026-11-30T00:00:00.000Z" } }),
  })
  .passthrough()
  .openapi("Price");

export const ProductSchema = z
  .object({
    id: z.string().openapi({ example: "p-000001" }),
    slug: z.string(),
    version: z.number().int(),
    locale: z.string().openapi({ example: "de" }),
    currency: z.string().openapi({ example: "EUR" }),
    title: z.string(),
    description: z.string(),
    brand: z.string(),
    category: z.object({ id: z.string(), path: z.array(z.string()) }),
    attributes: z.record(z.string(), z.string()),
    images: z.array(z.object({ url: z.string(), alt: z.string().optional() })),
    condition: z.string(),
    markets: z.array(z.string()),
    price_range: z.object({ min: z.number(), max: z.number(), currency: z.string() }).nullable(),
    in_stock: z.boolean(),
    variants: z.array(
      z.object({
        sku: z.string().openapi({ example: "SKU-000001-1" }),
        title: z.string(),
        options: z.record(z.string(), z.string()),
        gtin: z.string().nullable(),
        mpn: z.string().nullable(),
        price: Price.nullable(),
        availability: z.object({
          status: z.enum(["in_stock", "low_stock", "out_of_stock"]),
          quantity: z.enum(["0", "1-5", "6-20", "21+"]),
        }),
      }),
    ),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("Product");

export const ListingQuery = z
  .object({
    q: z.string().max(200).optional().openapi({ description: "Full-text query (prefix matching on every term).", example: "wireless head" }),
    category: z.string().max(100).optional().openapi({ description: "Category slug or id; includes subcategories.", example: "electronics" }),
    brand: z.string().max(500).optional().openapi({ description: "Brand, or several separated by commas.", example: "Nordhaven" }),
    min_price: z.coerce.number().int().min(0).optional().openapi({ description: "Minimum price in minor units of the requested currency.", example: 2000 }),
    max_price: z.coerce.number().int().min(0).optional().openapi({ description: "Maximum price in minor units of the requested currency.", example: 15000 }),
    in_stock: z.enum(["true", "false"]).optional().openapi({ description: "`true`: only products with a sellable variant." }),
    sort: z.enum(SORTS).optional().openapi({ description: "Default `relevance` (without `q`: newest first)." }),
    limit: z.coerce.number().int().min(1).max(100).optional().openapi({ description: "Page size, 1–100 (default 24).", example: 24 }),
    cursor: z.string().max(512).optional().openapi({ description: "Opaque `next_cursor` of the previous page." }),
    ...LocaleQuery,
  });

const ListingItemSchema = z
  .object({
    id: z.string(),
    slug: z.string(),
    title: z.string(),
    brand: z.string(),
    category_id: z.string(),
    image: z.object({ url: z.string(), alt: z.string().optional() }).nullable(),
    price: Price.nullable().openapi({ description: "Lowest variant price in the requested currency." }),
    in_stock: z.boolean(),
    created_at: z.string(),
  })
  .openapi("ListingItem");

export const ListingSchema = z
  .object({ items: z.array(ListingItemSchema), next_cursor: z.string().nullable() })
  .openapi("ProductListing");

export { ListingItemSchema };

const tieredHeaders = {
  "x-cache-tier": { description: "Tier that answered: edge, kv or d1.", schema: { type: "string" as const } },
  ETag: { description: "Document version + stock sequence + render variant.", schema: { type: "string" as const } },
  "Cache-Tag": { description: "Product id and its category ids (purge by tag).", schema: { type: "string" as const } },
};

const getProduct = createRoute({
  method: "get",
  path: "/v1/products/{id}",
  tags: ["Catalog"],
  summary: "One product, priced in the shopper's currency and localised",
  description:
    "Served from the colo cache, else KV, else D1 (`x-cache-tier`). Send `If-None-Match` for 304s. When the origin fails the last cached copy is served with `x-stale: true`. Send back the `x-d1-bookmark` of an earlier answer for this product (signed by the API, good for 60 s) to read at least that state; any other value is ignored.",
  request: {
    params: z.object({ id: z.string().min(1).max(100).openapi({ example: "p-000001" }) }),
    query: z.object({
      ...LocaleQuery,
      market: MarketCode.optional().openapi({
        description:
          "Shopper market. Promotions limited to markets apply only when the request names one of them (a country, or its region); without it the price is the one that applies everywhere. Cached per market.",
        example: "DE",
      }),
    }),
  },
  responses: {
    200: { description: "The product.", headers: tieredHeaders, content: { "application/json": { schema: ProductSchema } } },
    304: { description: "Not modified (If-None-Match matched the ETag)." },
    400: problem("Bad parameter (e.g. unsupported currency)."),
    404: problem("No such product."),
    410: problem("The product has been archived."),
    503: problem("Origin down and nothing cached."),
  },
});

const listProducts = createRoute({
  method: "get",
  path: "/v1/products",
  tags: ["Catalog"],
  summary: "Browse products with filters, sorting and keyset pagination",
  description:
    "Pages are cursor-based (`next_cursor`), never offsets. With `sort=newest` (or `relevance` without `q`) paging the whole catalog returns every product exactly once even while products change.",
  request: { query: ListingQuery },
  responses: {
    200: { description: "One page.", headers: tieredHeaders, content: { "application/json": { schema: ListingSchema } } },
    304: { description: "Not modified." },
    400: problem("Bad parameter (limit out of range, malformed cursor, min_price > max_price, unknown sort…)."),
    503: problem("Origin down and nothing cached."),
  },
});

export const productsApp = createApp()
  .openapi(listProducts, async (c) => {
    const query = c.req.valid("query");
    const req = c.req.raw;
    const params = listingParams(query, resolveCurrency(req, c.env, query.currency), resolveLocale(req, c.env, query.locale));
    return readListing({ env: c.env, request: req, waitUntil: (p) => c.executionCtx.waitUntil(p), path: "/v1/products", params, facets: false, total: false });
  })
  .openapi(getProduct, async (c) => {
    const { id } = c.req.valid("param");
    const query = c.req.valid("query");
    const req = c.req.raw;
    return readProduct({
      env: c.env,
      request: req,
      waitUntil: (p) => c.executionCtx.waitUntil(p),
      id,
      currency: resolveCurrency(req, c.env, query.currency),
      locale: resolveLocale(req, c.env, query.locale),
      market: query.market?.toUpperCase(),
      bookmark: requestBookmark(req),
    });
  });
