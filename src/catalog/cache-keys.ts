/**
 * Cache API keys for every public catalog response, and the URL builders the purger uses to delete them.
 *
 * Keys live under a fixed internal origin (never the request's host) so that the queue consumer, which has
 * no request, can rebuild them. A key holds only known parameters, sorted, with currency and locale already
 * resolved: `?currency=EUR` and `Accept-Language: de-DE` share one entry, and junk parameters cannot split
 * the cache. A product therefore has exactly |currencies| × |locales| cached variants (9 by default).
 *
 * Besides the primary entry (fresh for s-maxage) each response keeps a "last good" copy under
 * `/__last-good/...` for stale-if-error; purges deliberately leave it alone (see read-path.ts).
 */
import { SUPPORTED_LOCALES, supportedCurrencies } from "./locale";

export const CACHE_ORIGIN = "https://cache.edgeshelf.internal";
const LAST_GOOD_PREFIX = "/__last-good";

export type ParamValue = string | number | boolean | null | undefined;

/** Builds `{CACHE_ORIGIN}{path}?k=v…` with parameters sorted by name and empty ones dropped. */
export function cacheKey(path: string, params: Record<string, ParamValue> = {}): string {
  const entries = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => [k, String(v)] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const qs = new URLSearchParams(entries as [string, string][]).toString();
  return `${CACHE_ORIGIN}${path}${qs ? `?${qs}` : ""}`;
}

/** The stale-if-error copy of a primary key. */
export function lastGoodKey(primary: string): string {
  return primary.replace(CACHE_ORIGIN, CACHE_ORIGIN + LAST_GOOD_PREFIX);
}

export const productPath = (id: string) => `/v1/products/${encodeURIComponent(id)}`;

/**
 * `market` only when the request named one. Those variants are not in `productCacheUrls`: a local purge
 * cannot enumerate every market, so they live out their s-maxage (production purges them by tag).
 */
export function productCacheKey(id: string, currency: string, locale: string, market?: string): string {
  return cacheKey(productPath(id), { currency, locale, market });
}

type CurrencyEnv = Pick<Env, "SUPPORTED_CURRENCIES">;

/** Every primary cache URL of one product (all currencies × locales): what `cache.delete` must remove. */
export function productCacheUrls(id: string, env: CurrencyEnv): string[] {
  const out: string[] = [];
  for (const currency of supportedCurrencies(env)) for (const locale of SUPPORTED_LOCALES) out.push(productCacheKey(id, currency, locale));
  return out;
}

/** Listing/search keys: `params` must already be validated, defaulted and resolved (only known names). */
export function listingCacheKey(path: "/v1/products" | "/v1/search", params: Record<string, ParamValue>): string {
  return cacheKey(path, params);
}

export function categoryTreeCacheKey(locale: string): string {
  return cacheKey("/v1/categories", { locale });
}

export function categoryCacheKey(slug: string, locale: string): string {
  return cacheKey(`/v1/categories/${encodeURIComponent(slug)}`, { locale });
}

/** Every cached category response of one category plus the tree, in every locale. */
export function categoryCacheUrls(slug: string): string[] {
  return SUPPORTED_LOCALES.flatMap((locale) => [categoryCacheKey(slug, locale), categoryTreeCacheKey(locale)]);
}

/**
 * Cache-Tag values. Product and category ids are already disjoint (`p-…`, `cat-…`), so the ids are the tags:
 * purging a product's tag clears its page and every cached listing it appears on (production purge-by-tag).
 */
export const TAG_LISTINGS = "listings";
export const TAG_CATEGORIES = "categories";

export function productTags(doc: { id: string; category_path: string[] }): string[] {
  return [doc.id, ...doc.category_path];
}

/** A tag is a header token: anything but printable ASCII without commas is percent-encoded (and capped). */
function safeTag(tag: string): string {
  return /^[\x21-\x2b\x2d-\x7e]{1,128}$/.test(tag) ? tag : encodeURIComponent(tag.slice(0, 128));
}

/** Cache-Tag header value; Cloudflare caps the header at 16 KB, so very long lists are truncated. */
export function cacheTagHeader(tags: string[]): string {
  let out = "";
  for (const tag of new Set(tags.map(safeTag))) {
    const next = out ? `${out},${tag}` : tag;
    if (next.length > 16_000) break;
    out = next;
  }
  return out;
}
