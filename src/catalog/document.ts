/**
 * The canonical product projection: one JSON document per product holding every currency, locale and
 * variant, plus the availability summary. It is built from D1 here and nowhere else; KV stores it
 * under `product:{id}`; routes render it for one currency/locale at read time.
 */
import { and, asc, eq } from "drizzle-orm";
import type { Db } from "../db/client";
import { availability, categories, prices, productTranslations, products, variants } from "../db/schema";
import { availabilityStatus, type StockStatus } from "../lib/stock-status";
import { now } from "../lib/clock";
import type { DocPromotion } from "../promotions/effective-price";
import { loadSchedules } from "../promotions/schedule";

export type VariantAvailability = { on_hand: number; reserved: number; available: number; status: StockStatus; seq: number };

export type ProductDocument = {
  id: string;
  slug: string;
  /** products.version: bumped by every catalog write. */
  version: number;
  /** Sum of the per-SKU stock sequences folded in; grows with every stock event applied. */
  stock_seq: number;
  status: "active" | "draft" | "archived";
  title: string;
  description: string;
  translations: Record<string, { title: string; description: string }>;
  brand: string;
  category_id: string;
  /** Category ids from the root down to the product's own category (for Cache-Tag and breadcrumbs). */
  category_path: string[];
  attributes: Record<string, string>;
  images: { url: string; alt?: string }[];
  markets: string[];
  condition: string;
  created_at: number;
  updated_at: number;
  change_seq: number;
  variants: {
    sku: string;
    title: string;
    options: Record<string, string>;
    gtin: string | null;
    mpn: string | null;
    position: number;
    /** Regular prices in minor units per currency. */
    prices: Record<string, number>;
    availability: VariantAvailability;
  }[];
  /**
   * Current and upcoming promotions covering this product's SKUs (src/promotions/). Prices are rendered from
   * `prices` + this schedule at read time, so the document stays right across promotion boundaries.
   * Absent on documents written before promotions existed (= none).
   */
  promotions?: DocPromotion[];
};

export const productKey = (id: string) => `product:${id}`;

/** True when `candidate` is strictly newer than `current`: catalog version first, then stock sequence. */
export function isNewer(candidate: Pick<ProductDocument, "version" | "stock_seq">, current: Pick<ProductDocument, "version" | "stock_seq"> | null): boolean {
  if (!current) return true;
  if (candidate.version !== current.version) return candidate.version > current.version;
  return candidate.stock_seq > current.stock_seq;
}

/** Low-stock threshold used for the projection's status when a SKU has no baseline row. */
const DEFAULT_LOW_STOCK = 5;

export const noStock = (): VariantAvailability => ({ on_hand: 0, reserved: 0, available: 0, status: "out_of_stock", seq: 0 });

/** Groups price rows into {currency: amount} per SKU. Shared by the single and the bulk document loaders. */
export function pricesBySku(rows: Iterable<{ sku: string; currency: string; amount: number }>): Map<string, Record<string, number>> {
  const out = new Map<string, Record<string, number>>();
  for (const p of rows) {
    const entry = out.get(p.sku) ?? {};
    entry[p.currency] = p.amount;
    out.set(p.sku, entry);
  }
  return out;
}

/** Sums availability-projection rows over locations into one summary per SKU. */
export function availabilityBySku(
  rows: Iterable<{ sku: string; on_hand: number; reserved: number; available: number; seq: number }>,
): Map<string, VariantAvailability> {
  const out = new Map<string, VariantAvailability>();
  for (const s of rows) {
    const entry = out.get(s.sku) ?? noStock();
    entry.on_hand += s.on_hand;
    entry.reserved += s.reserved;
    entry.available += s.available;
    entry.seq += s.seq;
    out.set(s.sku, entry);
  }
  for (const entry of out.values()) entry.status = availabilityStatus(entry.available, DEFAULT_LOW_STOCK);
  return out;
}

export async function loadProductDocument(db: Db, id: string): Promise<ProductDocument | null> {
  const [productRows, translationRows, variantRows, priceRows, stockRows] = await db.batch([
    db.select().from(products).where(eq(products.id, id)).limit(1),
    db.select().from(productTranslations).where(eq(productTranslations.productId, id)),
    db.select().from(variants).where(and(eq(variants.productId, id), eq(variants.status, "active"))).orderBy(asc(variants.position)),
    db
      .select({ sku: prices.sku, currency: prices.currency, amount: prices.amount })
      .from(prices)
      .innerJoin(variants, eq(variants.sku, prices.sku))
      .where(eq(variants.productId, id)),
    db
      .select({ sku: availability.sku, on_hand: availability.onHand, reserved: availability.reserved, available: availability.available, seq: availability.seq })
      .from(availability)
      .innerJoin(variants, eq(variants.sku, availability.sku))
      .where(eq(variants.productId, id)),
  ]);
  const row = productRows[0];
  if (!row) return null;

  const [category, schedules] = await Promise.all([
    db.select({ path: categories.path }).from(categories).where(eq(categories.id, row.categoryId)).limit(1),
    loadSchedules(db.$client, [id], now()),
  ]);
  const categoryPath = (category[0]?.path ?? `/${row.categoryId}/`).split("/").filter(Boolean);

  const priceMap = pricesBySku(priceRows);
  const stockBySku = availabilityBySku(stockRows);
  const stockSeq = stockRows.reduce((sum, r) => sum + r.seq, 0);

  return {
    id: row.id,
    slug: row.slug,
    version: row.version,
    stock_seq: stockSeq,
    status: row.status as ProductDocument["status"],
    title: row.title,
    description: row.description,
    translations: Object.fromEntries(translationRows.map((t) => [t.locale, { title: t.title, description: t.description }])),
    brand: row.brand,
    category_id: row.categoryId,
    category_path: categoryPath,
    attributes: row.attributes,
    images: row.images,
    markets: row.markets,
    condition: row.condition,
    created_at: row.createdAt,
    updated_at: row.updatedAt,
    change_seq: row.changeSeq,
    variants: variantRows.map((v) => ({
      sku: v.sku,
      title: v.title,
      options: v.options,
      gtin: v.gtin,
      mpn: v.mpn,
      position: v.position,
      prices: priceMap.get(v.sku) ?? {},
      availability: stockBySku.get(v.sku) ?? noStock(),
    })),
    promotions: schedules.get(id) ?? [],
  };
}

/** Loads several documents; order follows `ids`, missing ids are skipped. */
export async function loadProductDocuments(db: Db, ids: string[]): Promise<ProductDocument[]> {
  const unique = [...new Set(ids)];
  const docs = await Promise.all(unique.map((id) => loadProductDocument(db, id)));
  return docs.filter((d): d is ProductDocument => d !== null);
}

