/**
 * Listings and search through the tiered read path (edge → D1; pages have no KV projection). The cache key
 * holds the validated, defaulted, resolved parameters only, so equivalent requests share one entry.
 */
import { allCatalogDbs } from "../db/partitions";
import { now as clockNow } from "../lib/clock";
import { ApiError } from "../lib/errors";
import { listingPriceCap } from "../promotions/switcher";
import { TAG_LISTINGS, cacheTagHeader, listingCacheKey } from "./cache-keys";
import { decodeCursor, normaliseQuery, runListing, type ListingPage, type ListingParams, type Sort } from "./listing";
import { originSession } from "./origin";
import { tieredRead } from "./read-path";
import { consistentRead } from "../imports/published-view";

/** Listings change with any product write, and the local purger cannot enumerate them: keep them short. */
export const LISTING_POLICY = { sMaxAge: 30, staleWhileRevalidate: 30 };

export type RawListingQuery = {
  q?: string;
  category?: string;
  brand?: string;
  min_price?: number;
  max_price?: number;
  in_stock?: "true" | "false";
  sort?: Sort;
  limit?: number;
  cursor?: string;
};

export function listingParams(raw: RawListingQuery, currency: string, locale: string): ListingParams {
  if (raw.min_price !== undefined && raw.max_price !== undefined && raw.min_price > raw.max_price) {
    throw ApiError.badRequest("min_price must not be greater than max_price.", {
      errors: [{ location: "query", path: "min_price", message: "greater than max_price" }],
    });
  }
  const brand = raw.brand
    ?.split(",")
    .map((b) => b.trim())
    .filter(Boolean)
    .sort();
  const params: ListingParams = {
    q: normaliseQuery(raw.q),
    category: raw.category?.trim() || undefined,
    brand: brand?.length ? [...new Set(brand)] : undefined,
    min_price: raw.min_price,
    max_price: raw.max_price,
    in_stock: raw.in_stock === "true" ? true : undefined,
    sort: raw.sort ?? "relevance",
    limit: raw.limit ?? 24,
    cursor: raw.cursor,
    currency,
    locale,
  };
  decodeCursor(params); // validate before anything is cached or queried
  return params;
}

async function sha1(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return [...new Uint8Array(digest).slice(0, 12)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function readListing(input: {
  env: Env;
  request: Request;
  waitUntil: (p: Promise<unknown>) => void;
  path: "/v1/products" | "/v1/search";
  params: ListingParams;
  facets: boolean;
  total: boolean;
  now?: number;
}): Promise<Response> {
  const { env, params } = input;
  const now = input.now ?? clockNow();
  const key = listingCacheKey(input.path, {
    q: params.q,
    category: params.category,
    brand: params.brand?.join(","),
    min_price: params.min_price,
    max_price: params.max_price,
    in_stock: params.in_stock ? "true" : undefined,
    sort: params.sort,
    limit: params.limit,
    cursor: params.cursor,
    currency: params.currency,
    locale: params.locale,
  });
  // Filled by the origin read: the category's id when `category` names one (by slug or id).
  const resolved: { categoryId?: string } = {};
  return tieredRead<ListingPage>({
    request: input.request,
    cacheKey: key,
    waitUntil: input.waitUntil,
    // Gathered from every partition: never from a mix of an import's old and new rows (published-view.ts).
    origin: ({ primary }) => consistentRead(env, () => runListing(allCatalogDbs(env).map((db) => originSession(db, { primary })), params, { facets: input.facets, total: input.total, now, resolved })),
    notFound: () => ApiError.notFound("No such listing."),
    render: async (page) => {
      const body = JSON.stringify(page);
      return {
        body,
        etag: `l.${await sha1(body)}`,
        // Product purges name the product's categories by id: a page asked for by slug is tagged with the id too.
        tags: cacheTagHeader([
          TAG_LISTINGS,
          ...new Set([params.category, resolved.categoryId].filter((c): c is string => !!c)),
          ...page.items.map((i) => i.id),
        ]).split(","),
        contentLanguage: params.locale,
        // Listing prices come from products.min_prices, which changes at every promotion boundary.
        maxAgeCap: await listingPriceCap(env.DB, now),
      };
    },
    policy: LISTING_POLICY,
    now,
    headers: { vary: "Accept-Language, x-shopper-country" },
  });
}
