/**
 * Purging cached recommendation answers. Answers are cached per (owner, intent, currency, locale) with the
 * shopper-specific filtering (market, stock, limit) applied after the cache, so an owner has a small, fixed
 * set of cache URLs that can be deleted exactly. Which owners show an item is recorded when an answer is
 * rendered (D1 `recommendation_refs`), so a change to the item (sell-out, restock, price) purges exactly
 * the answers that show it. In production the answers also carry the item ids as Cache-Tags, so the
 * purge-by-tag the consumer already does for the item clears them in every colo as well.
 */
import { cacheKey } from "../catalog/cache-keys";
import { SUPPORTED_LOCALES, supportedCurrencies } from "../catalog/locale";
import { purgerFor, type Purger } from "../events/purger";

export type ServedIntent = "related" | "complementary" | "substitutes";
export const INTENTS: ServedIntent[] = ["related", "complementary", "substitutes"];
export const BEST_SELLERS = "best-sellers";

export const recommendationsPath = (id: string) => `/v1/products/${encodeURIComponent(id)}/recommendations`;
export const BEST_SELLERS_PATH = "/v1/recommendations/best-sellers";

export function recommendationCacheKey(id: string, intent: ServedIntent, currency: string, locale: string): string {
  return cacheKey(recommendationsPath(id), { currency, intent, locale });
}

export function bestSellersCacheKey(currency: string, locale: string): string {
  return cacheKey(BEST_SELLERS_PATH, { currency, locale });
}

/** The tag of every cached answer owned by `owner` (production purge-by-tag). */
export const ownerTag = (owner: string) => `rec:${owner}`;

export function ownerCacheUrls(owner: string, env: Pick<Env, "SUPPORTED_CURRENCIES">): string[] {
  const out: string[] = [];
  for (const currency of supportedCurrencies(env)) {
    for (const locale of SUPPORTED_LOCALES) {
      if (owner === BEST_SELLERS) out.push(bestSellersCacheKey(currency, locale));
      else for (const intent of INTENTS) out.push(recommendationCacheKey(owner, intent, currency, locale));
    }
  }
  return out;
}

/** Records that `owner`'s answers show `itemIds`; the owner refers to itself, so even an empty answer is known. */
export async function recordRefs(d1: D1Database, owner: string, itemIds: string[]): Promise<void> {
  await d1
    .prepare("INSERT INTO recommendation_refs (item_id, owner) SELECT value, ? FROM json_each(?) WHERE true ON CONFLICT DO NOTHING")
    .bind(owner, JSON.stringify([...new Set([owner, ...itemIds])]))
    .run();
}

/**
 * Deletes every cached answer of `owners` (this colo's Cache API, plus their tags through the purger) and
 * forgets their refs: the next render records them again.
 */
export async function purgeOwners(env: Env, purger: Purger | undefined, owners: string[], cache: Cache = caches.default): Promise<void> {
  const unique = [...new Set(owners)];
  if (!unique.length) return;
  await Promise.all(unique.flatMap((o) => ownerCacheUrls(o, env)).map((url) => cache.delete(url)));
  // The local purger cannot purge tags (see purger.ts); the deletes above are the local purge.
  if (env.PURGE_MODE === "cloudflare") await (purger ?? purgerFor(env)).purgeTags(unique.map(ownerTag));
  for (let i = 0; i < unique.length; i += 500) {
    await env.DB.prepare("DELETE FROM recommendation_refs WHERE owner IN (SELECT value FROM json_each(?))").bind(JSON.stringify(unique.slice(i, i + 500))).run();
  }
}

/** Owners whose cached answers show any of `items`. */
export async function ownersShowing(d1: D1Database, items: string[]): Promise<string[]> {
  if (!items.length) return [];
  const { results } = await d1
    .prepare("SELECT DISTINCT owner FROM recommendation_refs WHERE item_id IN (SELECT value FROM json_each(?))")
    .bind(JSON.stringify(items))
    .all<{ owner: string }>();
  return results.map((r) => r.owner);
}

/** Of `owners`, those with answers that may be cached (a render recorded refs for them). */
export async function ownersWithAnswers(d1: D1Database, owners: string[]): Promise<string[]> {
  if (!owners.length) return [];
  const { results } = await d1
    .prepare("SELECT DISTINCT owner FROM recommendation_refs WHERE owner IN (SELECT value FROM json_each(?))")
    .bind(JSON.stringify(owners))
    .all<{ owner: string }>();
  return results.map((r) => r.owner);
}
