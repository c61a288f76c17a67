/**
 * Cache invalidation after a projection changed. The Cache API is per data center: `cache.delete` in the
 * consumer only clears the colo the consumer happens to run in, and a Worker cannot reach the caches of the
 * other ~300. So production purges by Cache-Tag through Cloudflare's API (one call clears every colo), while
 * local development, which has a single cache, deletes the URLs directly.
 */
import { categoryCacheUrls, productCacheUrls, TAG_LISTINGS } from "../catalog/cache-keys";

/** `category_slugs`: every path segment a category page is cached under (`/v1/categories/{slug or id}`). */
export type PurgeTarget = { id: string; category_slugs?: string[] };

export interface Purger {
  /** Purges one product's cached responses plus everything carrying `tags` (its categories, listings). */
  purgeProduct(product: PurgeTarget, tags: string[]): Promise<void>;
  purgeTags(tags: string[]): Promise<void>;
}

/** Local (`PURGE_MODE=local`): deletes the exact cache URLs the read path builds in cache-keys.ts. */
export class LocalCachePurger implements Purger {
  constructor(
    private readonly env: Pick<Env, "SUPPORTED_CURRENCIES">,
    private readonly cache: Cache = caches.default,
  ) {}

  async purgeProduct(product: PurgeTarget, tags: string[]): Promise<void> {
    const urls = productCacheUrls(product.id, this.env);
    for (const slug of product.category_slugs ?? []) urls.push(...categoryCacheUrls(slug));
    await Promise.all([...new Set(urls)].map((url) => this.cache.delete(url)));
    await this.purgeTags(tags);
  }

  async purgeTags(tags: string[]): Promise<void> {
    // Listing responses (any filter combination) cannot be enumerated from a tag without a tag index; locally
    // they expire by their short s-maxage. Production purges them by tag.
    void tags;
  }
}

/** Production (`PURGE_MODE=cloudflare`): POST /zones/{zone}/purge_cache {tags}. */
export class CloudflareTagPurger implements Purger {
  /** The API accepts up to 30 tags per call on every plan. */
  static readonly TAGS_PER_CALL = 30;

  constructor(
    private readonly zoneId: string,
    private readonly apiToken: string,
    private readonly fetcher: typeof fetch = fetch,
  ) {}

  async purgeProduct(product: PurgeTarget, tags: string[]): Promise<void> {
    await this.purgeTags([product.id, ...tags]);
  }

  async purgeTags(tags: string[]): Promise<void> {
    const unique = [...new Set(tags)].filter(Boolean);
    for (let i = 0; i < unique.length; i += CloudflareTagPurger.TAGS_PER_CALL) {
      const res = await this.fetcher(`https://api.cloudflare.com/client/v4/zones/${encodeURIComponent(this.zoneId)}/purge_cache`, {
        method: "POST",
        headers: { authorization: `Bearer ${this.apiToken}`, "content-type": "application/json" },
        body: JSON.stringify({ tags: unique.slice(i, i + CloudflareTagPurger.TAGS_PER_CALL) }),
      });
      // Throwing makes the consumer retry the message with backoff; a purge is idempotent.
      if (!res.ok) throw new Error(`purge by tag failed: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
    }
  }
}

export function purgerFor(env: Pick<Env, "PURGE_MODE" | "PURGE_ZONE_ID" | "PURGE_API_TOKEN" | "SUPPORTED_CURRENCIES">): Purger {
  if (env.PURGE_MODE === "cloudflare") {
    if (!env.PURGE_ZONE_ID || !env.PURGE_API_TOKEN) throw new Error("PURGE_MODE=cloudflare needs the PURGE_ZONE_ID and PURGE_API_TOKEN secrets");
    return new CloudflareTagPurger(env.PURGE_ZONE_ID, env.PURGE_API_TOKEN);
  }
  return new LocalCachePurger(env);
}

export { TAG_LISTINGS };
