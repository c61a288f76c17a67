/**
 * Serving recommendations through the catalog's tiered read path (Cache API → origin).
 *
 * The cached unit is one owner's full candidate list for one intent, currency and locale, with each item's
 * card, markets and stock per region. What depends on the shopper (market, stock filter, `limit`, `exclude`)
 * is applied after the cache on every request: a cheap pass over ≤ 40 items that keeps the number of cached
 * variants per product fixed (so they can be purged exactly, see refs.ts) and lets every shopper share them.
 */
import { BoundedMap } from "../lib/isolate-memory";
import { cacheTagHeader } from "../catalog/cache-keys";
import { tieredRead, type CachePolicy } from "../catalog/read-path";
import { consistentRead } from "../imports/published-view";
import { ApiError } from "../lib/errors";
import type { StockStatus } from "../lib/stock-status";
import { sellableIn, type ShopperMarket } from "../lib/markets";
import { cardsMaxAgeCap, toCardEntry, type Card, type LoadedDoc } from "./cards";
import { activeAmong, loadCards, partitioned } from "./catalog-reads";
import { DAY_MS } from "./orders";
import { computeLists } from "./compute";
import { substituteCandidates } from "./substitutes";
import { LIST_SIZE, readLists, readStoredLists, storeLists, type ListItem, type PrecomputedIntent, type Reason } from "./lists";
import { BEST_SELLERS, bestSellersCacheKey, ownerTag, recommendationCacheKey, recordRefs, type ServedIntent } from "./refs";
import { round } from "./related";

export type CachedItem = { id: string; reason: Reason; score: number; card: Card; markets: string[]; regions: Record<string, StockStatus> };
export type CachedAnswer = { owner: string; intent: string; version: number | null; computed_at: number | null; max_age_cap?: number; items: CachedItem[] };

export type RenderCtx = { currency: string; locale: string; now: number };
export type Shopper = { market: ShopperMarket; includeOutOfStock: boolean };
export type PublicItem = { product: Card; reason: Reason; score: number };

/** Sliding window of best sellers. */
export const BEST_SELLER_DAYS = 30;

const POLICIES: Record<string, Partial<CachePolicy>> = {
  // Purged on change (refs.ts); the TTL is only the safety net.
  related: { sMaxAge: 300, staleWhileRevalidate: 60 },
  complementary: { sMaxAge: 300, staleWhileRevalidate: 60 },
  // Live availability: short, and restocks (which no purge announces to a list that excluded them) show soon.
  substitutes: { sMaxAge: 15, staleWhileRevalidate: 15 },
  [BEST_SELLERS]: { sMaxAge: 60, staleWhileRevalidate: 60 },
};

/** FNV-1a, 32 bit: a cheap validator of a rendered body. */
export function fnv(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(36);
}

function entries(docs: Map<string, LoadedDoc>, list: ListItem[], ctx: RenderCtx, defaultLocale: string): CachedItem[] {
  const out: CachedItem[] = [];
  for (const item of list) {
    const doc = docs.get(item.id);
    if (!doc || doc.status !== "active") continue;
    const e = toCardEntry(doc, ctx, defaultLocale);
    out.push({ id: item.id, reason: item.reason, score: item.score, card: e.card, markets: e.markets, regions: e.regions });
  }
  return out;
}

function sourceOrThrow(docs: Map<string, LoadedDoc>, id: string): LoadedDoc | null {
  const src = docs.get(id);
  if (!src) return null;
  if (src.status === "archived") throw new ApiError(410, "gone", "Gone", `Product '${id}' has been archived.`);
  if (src.status !== "active") throw ApiError.notFound(`No product with id '${id}'.`);
  return src;
}

async function precomputedAnswer(env: Env, id: string, intent: PrecomputedIntent, ctx: RenderCtx): Promise<CachedAnswer | null> {
  let lists = await readLists(env, id);
  // A product no run has reached yet (new, or a fresh database): compute its lists now, once.
  if (!lists.related && !lists.complementary) {
    await storeLists(env, await computeLists(env, [id]), ctx.now);
    lists = await readLists(env, id);
  }
  const list = lists[intent];
  const docs = await loadCards(env, [id, ...(list?.items ?? []).map((i) => i.id)], ctx);
  if (!sourceOrThrow(docs, id)) return null;
  const items = entries(docs, list?.items ?? [], ctx, env.DEFAULT_LOCALE);
  return { owner: id, intent, version: list?.version ?? null, computed_at: list?.computed_at ?? null, max_age_cap: cardsMaxAgeCap([...docs.values()], ctx.now), items };
}

/** Live: ranked in substitutes.ts, then carded from D1 with availability as of now. */
async function substitutesAnswer(env: Env, id: string, ctx: RenderCtx): Promise<CachedAnswer | null> {
  const list = await substituteCandidates(env, id, ctx.currency);
  if (!list) return null;
  const docs = await loadCards(env, [id, ...list.map((i) => i.id)], ctx);
  if (!sourceOrThrow(docs, id)) return null;
  // Never the product itself, never anything out of stock: filtered here and again after the cache.
  const items = entries(docs, list, ctx, env.DEFAULT_LOCALE).filter((i) => i.id !== id && i.card.availability.in_stock);
  return { owner: id, intent: "substitutes", version: null, computed_at: ctx.now, max_age_cap: cardsMaxAgeCap([...docs.values()], ctx.now), items };
}

async function bestSellersAnswer(env: Env, ctx: RenderCtx): Promise<CachedAnswer> {
  const since = Math.floor(ctx.now / DAY_MS) - BEST_SELLER_DAYS + 1;
  const results = partitioned(env)
    ? await activeBestSellers(env, ctx.currency, since)
    : (
        await env.DB.prepare(
          // Aggregate the window first, then look each product up: joining first made SQLite walk every active product.
          `SELECT s.id, s.units FROM (SELECT product_id AS id, sum(units) AS units FROM sales_daily WHERE currency = ? AND day >= ? GROUP BY product_id) s
           CROSS JOIN products p ON p.id = s.id AND +p.status = 'active' ORDER BY s.units DESC, s.id LIMIT ?`,
        )
          .bind(ctx.currency, since, LIST_SIZE)
          .all<{ id: string; units: number }>()
      ).results;
  const top = results[0]?.units ?? 1;
  const list: ListItem[] = results.map((r) => ({ id: r.id, score: round(r.units / top), reason: "best_seller" }));
  const docs = await loadCards(env, list.map((i) => i.id), ctx);
  return { owner: BEST_SELLERS, intent: BEST_SELLERS, version: null, computed_at: ctx.now, max_age_cap: cardsMaxAgeCap([...docs.values()], ctx.now), items: entries(docs, list, ctx, env.DEFAULT_LOCALE) };
}

/**
 * Best sellers over catalog partitions: the window's ranking comes from the directory, the products' status from
 * their partitions, so pages of the ranking are read until LIST_SIZE active products are found (or it ends).
 */
async function activeBestSellers(env: Env, currency: string, since: number): Promise<{ id: string; units: number }[]> {
  const out: { id: string; units: number }[] = [];
  const page = LIST_SIZE * 2;
  for (let offset = 0; out.length < LIST_SIZE; offset += page) {
    const { results } = await env.DB.prepare(
      `SELECT product_id AS id, sum(units) AS units FROM sales_daily WHERE currency = ? AND day >= ? GROUP BY product_id
       ORDER BY units DESC, id LIMIT ? OFFSET ?`,
    )
      .bind(currency, since, page, offset)
      .all<{ id: string; units: number }>();
    const active = await activeAmong(env, results.map((r) => r.id));
    out.push(...results.filter((r) => active.has(r.id)));
    if (results.length < page) break;
  }
  return out.slice(0, LIST_SIZE);
}

/** `unit`: identifies the cached unit's content (cache key + its ETag) when it came from a cache; null otherwise. */
export type AnswerRead = { answer: CachedAnswer; headers: Headers; unit: string | null };

/**
 * Per-isolate memo of parsed units. Edge hits of one owner's answer repeat the same JSON parse of a ~30 KB unit
 * for every shopper: keyed on the unit's ETag (a hash of its content), remembering them is exact and spares the
 * allocations behind the p99. A parsed unit takes about three times its JSON length.
 */
const parsedUnits = new BoundedMap<CachedAnswer>("recommendations.parsed-units", { maxBytes: 4 * 1024 * 1024, sizeOf: () => 90_000 });

/** One owner's cached answer for `intent` (or the best sellers when `owner` is BEST_SELLERS). */
export async function readAnswer(env: Env, waitUntil: (p: Promise<unknown>) => void, owner: string, intent: ServedIntent | typeof BEST_SELLERS, ctx: RenderCtx): Promise<AnswerRead> {
  const key = intent === BEST_SELLERS ? bestSellersCacheKey(ctx.currency, ctx.locale) : recommendationCacheKey(owner, intent, ctx.currency, ctx.locale);
  const res = await tieredRead<CachedAnswer>({
    // A bare request: validators are checked on the filtered answer, not on the cached unit.
    request: new Request(key),
    cacheKey: key,
    waitUntil,
    // Cards of products from every partition: never from a mix of an import's old and new rows (published-view.ts).
    origin: () =>
      consistentRead(env, () =>
        intent === BEST_SELLERS
          ? bestSellersAnswer(env, ctx)
          : intent === "substitutes"
            ? substitutesAnswer(env, owner, ctx)
            : precomputedAnswer(env, owner, intent, ctx),
      ),
    notFound: () => ApiError.notFound(`No product with id '${owner}'.`),
    render: (answer) => {
      const body = JSON.stringify(answer);
      waitUntil(recordRefs(env.DB, owner, answer.items.map((i) => i.id)).catch(() => undefined));
      return {
        body,
        etag: fnv(body),
        tags: cacheTagHeader([ownerTag(owner), ...answer.items.map((i) => i.id)]).split(","),
        maxAgeCap: answer.max_age_cap,
      };
    },
    policy: POLICIES[intent],
  });
  const etag = res.headers.get("etag");
  const tier = res.headers.get("x-cache-tier");
  // Only copies read back from a cache are memoised: a fresh render (origin) is not shared by the next reader yet.
  const unit = etag && tier === "edge" ? `${key}\n${etag}\n${res.headers.get("content-length") ?? ""}` : null;
  const memo = unit ? parsedUnits.get(unit) : undefined;
  if (memo) {
    await res.body?.cancel();
    return { answer: memo, headers: res.headers, unit };
  }
  const answer = (await res.json()) as CachedAnswer;
  if (unit) parsedUnits.set(unit, answer, 3 * (Number(res.headers.get("content-length")) || 30_000));
  return { answer, headers: res.headers, unit };
}

function inStockFor(item: CachedItem, market: ShopperMarket, regional: boolean): boolean {
  if (regional && market.region && Object.keys(item.regions).length) return (item.regions[market.region] ?? "out_of_stock") !== "out_of_stock";
  return item.card.availability.in_stock;
}

/** The shopper-specific pass: exclusions, market, stock (regional for substitutes), then `limit`. */
export function finish(items: CachedItem[], shopper: Shopper, limit: number, exclude: Set<string>, intent: string): PublicItem[] {
  const out: PublicItem[] = [];
  const substitutes = intent === "substitutes";
  for (const item of items) {
    if (out.length >= limit) break;
    if (exclude.has(item.id)) continue;
    if (!sellableIn(item.markets, shopper.market)) continue;
    if ((substitutes || !shopper.includeOutOfStock) && !inStockFor(item, shopper.market, substitutes)) continue;
    out.push({ product: item.card, reason: item.reason, score: item.score });
  }
  return out;
}

/**
 * Session recommendations: related and complementary lists of every context product blended, the most
 * recent (first) context product weighing most; context and excluded ids never come back.
 */
export async function blendContext(env: Env, context: string[], exclude: Set<string>, ctx: RenderCtx): Promise<CachedItem[]> {
  const stored = await readStoredLists(env.DB, context);
  const scores = new Map<string, { score: number; reason: Reason; best: number }>();
  context.forEach((id, position) => {
    const lists = stored.get(id);
    if (!lists) return;
    const recency = 1 / (1 + 0.25 * position);
    for (const [intent, weight] of [["complementary", 1.2], ["related", 1]] as const) {
      for (const item of lists[intent]?.items ?? []) {
        if (exclude.has(item.id)) continue;
        const contribution = recency * weight * Math.min(item.score, 1);
        const cur = scores.get(item.id) ?? { score: 0, reason: item.reason, best: 0 };
        cur.score += contribution;
        if (contribution > cur.best) {
          cur.best = contribution;
          cur.reason = item.reason;
        }
        scores.set(item.id, cur);
      }
    }
  });
  const list: ListItem[] = [...scores.entries()]
    .map(([id, s]) => ({ id, score: round(s.score), reason: s.reason }))
    .sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1))
    .slice(0, LIST_SIZE * 2);
  const docs = await loadCards(env, list.map((i) => i.id), ctx);
  return entries(docs, list, ctx, env.DEFAULT_LOCALE);
}
