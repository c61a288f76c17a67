/**
 * The one lookup of the price a shopper pays per unit, used to snapshot prices into reservations: the
 * effective price at `now` (src/promotions/effective-price.ts, the same function every page and feed
 * renders with), with the regular price and the promotion that produced it.
 *
 * Checkout prices from the product document the read path already keeps (KV `product:{id}`, found through the
 * `sku:{sku}` index), so a reservation costs no D1 query and charges what the product page shows. Each isolate
 * keeps what it read for a second, so a flash sale on one SKU reads KV about once per second per isolate.
 * SKUs whose document or index entry is missing are priced from D1, and the index entry is written for them.
 */
import { allCatalogDbs } from "../db/partitions";
import { visibleProductSql } from "../imports/visibility";
import { productIdsOf, indexSkus } from "../catalog/sku-index";
import type { ProductDocument } from "../catalog/document";
import { readProductDoc } from "../catalog/projection-store";
import { effectivePrice, type DocPromotion } from "../promotions/effective-price";
import { loadSchedules } from "../promotions/schedule";
import type { ShopperMarket } from "../lib/markets";
import { BoundedMap } from "../lib/isolate-memory";

export type UnitPrice = {
  sku: string;
  currency: string;
  /** Minor units; null when the SKU exists but has no price in this currency (not sellable in it). */
  unit_price: number | null;
  regular_price: number | null;
  promotion_id: string | null;
};

/** What pricing needs of one SKU, cut from its product document (or from D1 when there is none). */
export type PriceSlice = {
  sku: string;
  productId: string;
  /** False for a draft or archived product, or an archived variant: such SKUs cannot be reserved. */
  sellable: boolean;
  /** Regular prices in minor units per currency. */
  prices: Record<string, number>;
  promotions: DocPromotion[];
};

export type CartPrices = {
  /** Prices of the sellable SKUs. */
  prices: Map<string, UnitPrice>;
  /** Not in the catalog. */
  unknown: string[];
  /** In the catalog, but their product is a draft or archived (or the variant is archived). */
  inactive: string[];
};

const MEMO_TTL_MS = 1_000;
/** sku → slice (null = not in the catalog), per isolate, for `MEMO_TTL_MS` of wall time; made-up SKUs fill it too. */
const memo = new BoundedMap<{ until: number; slice: PriceSlice | null }>("pricing.sku-slices", { maxBytes: 1024 * 1024, maxKeyLength: 64, sizeOf: (v) => (v.slice ? 512 : 32) });

function remember(sku: string, slice: PriceSlice | null, until: number): void {
  memo.set(sku, { until, slice });
}

/** The slices of every variant a product document lists (documents list active variants only). */
export function slicesOfDocument(doc: ProductDocument): PriceSlice[] {
  return doc.variants.map((v) => ({
    sku: v.sku,
    productId: doc.id,
    sellable: doc.status === "active",
    prices: v.prices,
    promotions: (doc.promotions ?? []).filter((p) => p.skus.includes(v.sku)),
  }));
}

/** Slices from KV; SKUs absent from the result need D1 (no index entry, no document, or not in the document). */
async function slicesFromKv(kv: KVNamespace, skus: readonly string[]): Promise<{ slices: Map<string, PriceSlice>; unindexed: string[] }> {
  const owners = await productIdsOf(kv, skus);
  const docs = await Promise.all([...new Set(owners.values())].map((id) => readProductDoc(kv, id).catch(() => null)));
  const slices = new Map<string, PriceSlice>();
  for (const doc of docs) {
    if (!doc) continue;
    for (const s of slicesOfDocument(doc)) if (owners.get(s.sku) === doc.id) slices.set(s.sku, s);
  }
  return { slices, unindexed: skus.filter((s) => !owners.has(s)) };
}

type CatalogRow = { sku: string; product_id: string; sellable: number; currency: string | null; amount: number | null };

/** The fallback: one keyed read of the SKUs (bound as one JSON parameter) and one of their promotions. */
async function slicesFromD1(db: D1Database, skus: readonly string[], now: number): Promise<Map<string, PriceSlice>> {
  const { results } = await db
    .prepare(
      `SELECT v.sku, v.product_id, (p.status = 'active' AND v.status = 'active' AND ${visibleProductSql("p")}) AS sellable, pr.currency, pr.amount
       FROM variants v JOIN products p ON p.id = v.product_id LEFT JOIN prices pr ON pr.sku = v.sku
       WHERE v.sku IN (SELECT value FROM json_each(?))`,
    )
    .bind(JSON.stringify(skus))
    .all<CatalogRow>();
  const slices = new Map<string, PriceSlice>();
  for (const r of results) {
    const s = slices.get(r.sku) ?? { sku: r.sku, productId: r.product_id, sellable: r.sellable === 1, prices: {}, promotions: [] };
    if (r.currency !== null && r.amount !== null) s.prices[r.currency] = r.amount;
    slices.set(r.sku, s);
  }
  const schedules = await loadSchedules(db, [...new Set([...slices.values()].map((s) => s.productId))], now);
  for (const s of slices.values()) s.promotions = (schedules.get(s.productId) ?? []).filter((p) => p.skus.includes(s.sku));
  return slices;
}

/** Slices of `skus`: this isolate's memo, then KV, then D1 for what KV lacks. */
async function priceSlices(env: Env, skus: readonly string[], now: number, waitUntil?: (p: Promise<unknown>) => void): Promise<Map<string, PriceSlice | null>> {
  const out = new Map<string, PriceSlice | null>();
  const wall = Date.now();
  const missing: string[] = [];
  for (const sku of skus) {
    const hit = memo.get(sku);
    if (hit && hit.until > wall) out.set(sku, hit.slice);
    else missing.push(sku);
  }
  if (!missing.length) return out;
  const fromKv = await slicesFromKv(env.CATALOG_KV, missing).catch(() => ({ slices: new Map<string, PriceSlice>(), unindexed: missing }));
  const rest = missing.filter((s) => !fromKv.slices.has(s));
  // A SKU's partition is its product's, unknown until found: each catalog partition is asked (one, with N = 1).
  const fromD1 = new Map<string, PriceSlice>();
  if (rest.length) for (const part of await Promise.all(allCatalogDbs(env).map((db) => slicesFromD1(db, rest, now)))) for (const [k, v] of part) fromD1.set(k, v);
  const toIndex = new Map<string, string[]>();
  for (const sku of missing) {
    const slice = fromKv.slices.get(sku) ?? fromD1.get(sku) ?? null;
    out.set(sku, slice);
    remember(sku, slice, wall + MEMO_TTL_MS);
    if (slice && fromD1.has(sku) && fromKv.unindexed.includes(sku)) toIndex.set(slice.productId, [...(toIndex.get(slice.productId) ?? []), sku]);
  }
  if (toIndex.size && waitUntil) {
    waitUntil(Promise.all([...toIndex].map(([id, list]) => indexSkus(env.CATALOG_KV, id, list))).catch(() => undefined));
  }
  return out;
}

/** Prices a cart's SKUs in `currency` at `now`, sorting out unknown and unsellable SKUs. */
export async function priceCart(
  env: Env,
  skus: readonly string[],
  currency: string,
  now: number,
  market?: ShopperMarket,
  waitUntil?: (p: Promise<unknown>) => void,
): Promise<CartPrices> {
  const unique = [...new Set(skus)];
  const slices = await priceSlices(env, unique, now, waitUntil);
  const result: CartPrices = { prices: new Map(), unknown: [], inactive: [] };
  for (const sku of unique) {
    const s = slices.get(sku);
    if (!s) result.unknown.push(sku);
    else if (!s.sellable) result.inactive.push(sku);
    else result.prices.set(sku, unitPrice(s, currency, now, market));
  }
  return result;
}

function unitPrice(s: PriceSlice, currency: string, now: number, market: ShopperMarket | undefined): UnitPrice {
  const regular = s.prices[currency];
  if (regular === undefined) return { sku: s.sku, currency, unit_price: null, regular_price: null, promotion_id: null };
  const eff = effectivePrice(regular, currency, s.sku, s.promotions, now, market);
  return { sku: s.sku, currency, unit_price: eff.amount, regular_price: regular, promotion_id: eff.promotion?.id ?? null };
}

/** Prices of the sellable SKUs; SKUs absent from the returned map are unknown or not for sale. */
export async function resolveUnitPrices(env: Env, skus: readonly string[], currency: string, now: number, market?: ShopperMarket): Promise<Map<string, UnitPrice>> {
  return (await priceCart(env, skus, currency, now, market)).prices;
}
