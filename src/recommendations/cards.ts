/**
 * Product cards for recommendation answers: many products in one D1 round trip (a single batch), rendered
 * through the catalog's own price and text rendering (`renderPrice`, so promotions apply, and
 * `localisedText`), plus what the read path needs to filter per shopper: markets and stock per region.
 */
import { noStock, type ProductDocument } from "../catalog/document";
import { localisedText, priceMaxAgeCap, renderPrice, type PriceView } from "../catalog/render";
import { availabilityStatus, type StockStatus } from "../lib/stock-status";
import { visibleProductSql } from "../imports/visibility";
import { schedulesFrom, schedulesStatement } from "../promotions/schedule";

const LOW_STOCK = 5;

export type Card = {
  id: string;
  slug: string;
  title: string;
  brand: string;
  image: { url: string; alt?: string } | null;
  /** Lowest effective variant price in the requested currency. */
  price: (PriceView & Record<string, unknown>) | null;
  availability: { status: StockStatus; in_stock: boolean };
};

/** A card plus the facts the read path filters on; `markets`/`regions` never leave the worker. */
export type CardEntry = { card: Card; markets: string[]; regions: Record<string, StockStatus>; status: string; category_id: string; min_price: number | null };

/**
 * What a card needs of a product document: no descriptions or variant details, translations of one locale
 * and prices of one currency (a cached answer is per currency and locale). Product pages can carry
 * kilobytes of description in every locale; a 41-card answer never reads them.
 */
export type LoadedDoc = ProductDocument & { regionAvailable: Record<string, number> };

/** The answer's currency and locale, and the time prices are rendered at. */
export type CardScope = { currency: string; locale: string; now: number };

type P = { id: string; slug: string; title: string; brand: string; category_id: string; status: string; images: string; markets: string; condition: string; created_at: number; updated_at: number; change_seq: number; version: number; path: string | null };

/**
 * Card documents (plus stock per region) for `ids`, in one D1 batch; missing ids are absent from the map, and so
 * are products of an import not yet switched (every answer is carded here, so no list shows them early).
 */
export async function loadDocs(d1: D1Database, ids: string[], scope: CardScope): Promise<Map<string, LoadedDoc>> {
  const out = new Map<string, LoadedDoc>();
  if (!ids.length) return out;
  const unique = [...new Set(ids)];
  const arg = JSON.stringify(unique);
  const ofProducts = "(SELECT value FROM json_each(?1))";
  const [prods, trans, vars, prices, stock, promotions] = await d1.batch([
    d1
      .prepare(
        `SELECT p.id, p.slug, p.title, p.brand, p.category_id, p.status, p.images, p.markets, p.condition, p.created_at, p.updated_at,
                p.change_seq, p.version, c.path AS path
         FROM products p LEFT JOIN categories c ON c.id = p.category_id WHERE p.id IN ${ofProducts} AND ${visibleProductSql("p")}`,
      )
      .bind(arg),
    d1.prepare(`SELECT product_id, title FROM product_translations WHERE product_id IN ${ofProducts} AND locale = ?2`).bind(arg, scope.locale),
    d1.prepare(`SELECT sku, product_id, position FROM variants WHERE status = 'active' AND product_id IN ${ofProducts} ORDER BY position`).bind(arg),
    // Variants drive (CROSS JOIN): left alone, SQLite reads every price in the currency through prices_currency_amount_idx.
    d1.prepare(`SELECT pr.sku, pr.amount FROM variants v CROSS JOIN prices pr ON pr.sku = v.sku WHERE v.product_id IN ${ofProducts} AND pr.currency = ?2`).bind(arg, scope.currency),
    d1
      .prepare(
        `SELECT a.sku, a.on_hand, a.reserved, a.available, a.seq, coalesce(l.region, '') AS region FROM availability a
         JOIN variants v ON v.sku = a.sku LEFT JOIN stock_locations l ON l.id = a.location_id WHERE v.product_id IN ${ofProducts}`,
      )
      .bind(arg),
    // Promotion schedules: prices are rendered effective, exactly as on the product page.
    schedulesStatement(d1, unique, scope.now),
  ]);
  const docs = new Map<string, LoadedDoc>();
  for (const r of prods!.results as P[]) {
    docs.set(r.id, {
      id: r.id, slug: r.slug, version: r.version, stock_seq: 0, status: r.status as ProductDocument["status"], title: r.title, description: "",
      translations: {}, brand: r.brand, category_id: r.category_id, category_path: (r.path ?? `/${r.category_id}/`).split("/").filter(Boolean),
      attributes: {}, images: JSON.parse(r.images), markets: JSON.parse(r.markets), condition: r.condition,
      created_at: r.created_at, updated_at: r.updated_at, change_seq: r.change_seq, variants: [], regionAvailable: {},
    });
  }
  for (const t of trans!.results as { product_id: string; title: string }[]) {
    const d = docs.get(t.product_id);
    if (d) d.translations[scope.locale] = { title: t.title, description: "" };
  }
  const variantOwner = new Map<string, ProductDocument["variants"][number]>();
  const docOfSku = new Map<string, LoadedDoc>();
  for (const v of vars!.results as { sku: string; product_id: string; position: number }[]) {
    const d = docs.get(v.product_id);
    if (!d) continue;
    const variant = { sku: v.sku, title: "", options: {}, gtin: null, mpn: null, position: v.position, prices: {} as Record<string, number>, availability: noStock() };
    d.variants.push(variant);
    variantOwner.set(v.sku, variant);
    docOfSku.set(v.sku, d);
  }
  for (const p of prices!.results as { sku: string; amount: number }[]) {
    const v = variantOwner.get(p.sku);
    if (v) v.prices[scope.currency] = p.amount;
  }
  for (const s of stock!.results as { sku: string; on_hand: number; reserved: number; available: number; seq: number; region: string }[]) {
    const v = variantOwner.get(s.sku);
    const d = docOfSku.get(s.sku);
    if (!v || !d) continue;
    v.availability.on_hand += s.on_hand;
    v.availability.reserved += s.reserved;
    v.availability.available += s.available;
    v.availability.seq += s.seq;
    d.stock_seq += s.seq;
    if (s.region) d.regionAvailable[s.region] = (d.regionAvailable[s.region] ?? 0) + Math.max(0, s.available);
  }
  const schedules = schedulesFrom(promotions!.results);
  for (const d of docs.values()) {
    d.promotions = schedules.get(d.id) ?? [];
    for (const v of d.variants) v.availability.status = availabilityStatus(v.availability.available, LOW_STOCK);
    out.set(d.id, d);
  }
  return out;
}

const RANK: Record<StockStatus, number> = { out_of_stock: 0, low_stock: 1, in_stock: 2 };

export function bestStatus(statuses: StockStatus[]): StockStatus {
  return statuses.reduce<StockStatus>((best, s) => (RANK[s] > RANK[best] ? s : best), "out_of_stock");
}

export function toCardEntry(doc: LoadedDoc, ctx: CardScope, defaultLocale: string): CardEntry {
  const text = localisedText(doc, ctx.locale, defaultLocale);
  let price: Card["price"] = null;
  for (const v of doc.variants) {
    const p = renderPrice(v.prices[ctx.currency], ctx, { sku: v.sku, productId: doc.id, promotions: doc.promotions });
    if (p && (!price || p.amount < price.amount)) price = p;
  }
  const status = bestStatus(doc.variants.map((v) => v.availability.status));
  const regions: Record<string, StockStatus> = {};
  for (const [region, available] of Object.entries(doc.regionAvailable)) regions[region] = availabilityStatus(available, LOW_STOCK);
  const image = doc.images[0] ?? null;
  return {
    card: { id: doc.id, slug: doc.slug, title: text.title, brand: doc.brand, image, price, availability: { status, in_stock: status !== "out_of_stock" } },
    markets: doc.markets,
    regions,
    status: doc.status,
    category_id: doc.category_id,
    min_price: price?.amount ?? null,
  };
}

/** Seconds until the first of these documents' prices changes by itself (promotion boundary), if any. */
export function cardsMaxAgeCap(docs: LoadedDoc[], now: number): number | undefined {
  let cap: number | undefined;
  for (const d of docs) {
    const c = priceMaxAgeCap(d, now);
    if (c !== undefined) cap = cap === undefined ? c : Math.min(cap, c);
  }
  return cap;
}
