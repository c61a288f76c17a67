/**
 * The canonical product projection: one JSON document per product holding every currency, locale and
 * variant, plus the availability summary. It is built from D1 here and nowhere else; KV stores it
 * under `product:{id}`; routes render it for one currency/locale at read time.
 */
import { availabilityStatus, type StockStatus } from "../lib/stock-status";
import { now } from "../lib/clock";
import { visibleProductSql } from "../imports/visibility";
import type { DocPromotion } from "../promotions/effective-price";
import { schedulesFrom, schedulesStatement } from "../promotions/schedule";

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

/** Groups price rows into {currency: amount} per SKU. */
function pricesBySku(rows: Iterable<{ sku: string; currency: string; amount: number }>): Map<string, Record<string, number>> {
  const out = new Map<string, Record<string, number>>();
  for (const p of rows) {
    const entry = out.get(p.sku) ?? {};
    entry[p.currency] = p.amount;
    out.set(p.sku, entry);
  }
  return out;
}

/** Sums availability-projection rows over locations into one summary per SKU. */
function availabilityBySku(
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

type Queryable = Pick<D1Database, "prepare" | "batch">;

type ProductRow = {
  id: string; slug: string; version: number; status: string; title: string; description: string; brand: string;
  category_id: string; attributes: string; images: string; markets: string; condition: string;
  created_at: number; updated_at: number; change_seq: number;
};

export type LoadedDocument = { doc: ProductDocument; lastModified: number };

export type LoadOptions = {
  /** Narrows translations and prices to the one locale and currency a feed renders (see below). */
  only?: { currency?: string; locale?: string };
  /**
   * How to treat a JSON column that does not parse. `throw` (the default) for the projection: a document built
   * from a broken row must not reach KV, and the failing event ends in the dead-letter queue. `fallback` for
   * feed pages, where one broken row must not take the whole page down.
   */
  badJson?: "throw" | "fallback";
};

/**
 * Loads product documents in one D1 batch of seven queries, whatever the number of ids: ids travel as one JSON
 * parameter through `json_each`, so the 100-bound-parameter limit never applies. Order follows `ids`; missing
 * ids are skipped. Availability is read from the projection on every call (feeds promise live availability,
 * which a KV copy cannot guarantee), summed per SKU in SQL.
 *
 * `only` narrows translations and prices by key: a feed page then reads and returns about a third of those rows.
 */
export async function loadProductDocuments(db: Queryable, ids: readonly string[], opts: LoadOptions = {}): Promise<LoadedDocument[]> {
  if (ids.length === 0) return [];
  const only = opts.only ?? {};
  const parse = <T>(text: string | null, fallback: T): T => {
    if (opts.badJson !== "fallback") return text === null ? fallback : (JSON.parse(text) as T);
    if (!text) return fallback;
    try {
      return JSON.parse(text) as T;
    } catch {
      return fallback;
    }
  };
  const idsJson = JSON.stringify([...new Set(ids)]);
  const inIds = "(SELECT value FROM json_each(?1))";
  // A plain `column = ?2`, added only when narrowing: `(?2 IS NULL OR …)` kept it out of the key and read every row.
  const narrowed = (select: string, column: string, value: string | undefined) =>
    value ? db.prepare(`${select} AND ${column} = ?2`).bind(idsJson, value) : db.prepare(select).bind(idsJson);
  const [productRes, translationRes, variantRes, priceRes, stockRes, categoryRes, scheduleRes] = await db.batch([
    db.prepare(
      `SELECT id, slug, version, status, title, description, brand, category_id, attributes, images, markets, condition,
              created_at, updated_at, change_seq FROM products WHERE id IN ${inIds} AND ${visibleProductSql("products")}`,
    ).bind(idsJson),
    narrowed(`SELECT product_id, locale, title, description FROM product_translations WHERE product_id IN ${inIds}`, "locale", only.locale),
    db.prepare(
      `SELECT sku, product_id, title, options, gtin, mpn, position FROM variants
       WHERE product_id IN ${inIds} AND status = 'active' ORDER BY product_id, position`,
    ).bind(idsJson),
    // Variants drive (CROSS JOIN): with a currency, SQLite would otherwise read all its prices via prices_currency_amount_idx.
    narrowed(
      `SELECT pr.sku, pr.currency, pr.amount FROM variants v CROSS JOIN prices pr ON pr.sku = v.sku
       WHERE v.product_id IN ${inIds} AND v.status = 'active'`,
      "pr.currency",
      only.currency,
    ),
    db.prepare(
      `SELECT a.sku, sum(a.on_hand) AS on_hand, sum(a.reserved) AS reserved, sum(a.available) AS available, sum(a.seq) AS seq,
              max(a.updated_at) AS updated_at
       FROM availability a JOIN variants v ON v.sku = a.sku
       WHERE v.product_id IN ${inIds} AND v.status = 'active' GROUP BY a.sku`,
    ).bind(idsJson),
    db.prepare(
      `SELECT c.id, c.path FROM categories c WHERE c.id IN (SELECT category_id FROM products WHERE id IN ${inIds})`,
    ).bind(idsJson),
    schedulesStatement(db, ids, now()),
  ]);

  const translations = new Map<string, Record<string, { title: string; description: string }>>();
  for (const t of translationRes!.results as { product_id: string; locale: string; title: string; description: string }[]) {
    const entry = translations.get(t.product_id) ?? {};
    entry[t.locale] = { title: t.title, description: t.description };
    translations.set(t.product_id, entry);
  }
  const priceMap = pricesBySku(priceRes!.results as { sku: string; currency: string; amount: number }[]);
  const stockRows = stockRes!.results as { sku: string; on_hand: number; reserved: number; available: number; seq: number; updated_at: number }[];
  const stockBySku = availabilityBySku(stockRows);
  const stockUpdated = new Map<string, number>();
  for (const s of stockRows) stockUpdated.set(s.sku, Math.max(stockUpdated.get(s.sku) ?? 0, s.updated_at));
  const categoryPaths = new Map((categoryRes!.results as { id: string; path: string }[]).map((c) => [c.id, c.path]));
  const variantsByProduct = new Map<string, ProductDocument["variants"]>();
  for (const v of variantRes!.results as { sku: string; product_id: string; title: string; options: string; gtin: string | null; mpn: string | null; position: number }[]) {
    const list = variantsByProduct.get(v.product_id) ?? [];
    list.push({
      sku: v.sku,
      title: v.title,
      options: parse<Record<string, string>>(v.options, {}),
      gtin: v.gtin,
      mpn: v.mpn,
      position: v.position,
      prices: priceMap.get(v.sku) ?? {},
      availability: stockBySku.get(v.sku) ?? noStock(),
    });
    variantsByProduct.set(v.product_id, list);
  }

  const schedules = schedulesFrom(scheduleRes!.results);
  const byId = new Map<string, LoadedDocument>();
  for (const row of productRes!.results as ProductRow[]) {
    const variants = variantsByProduct.get(row.id) ?? [];
    let lastModified = row.updated_at;
    let stockSeq = 0;
    for (const v of variants) {
      lastModified = Math.max(lastModified, stockUpdated.get(v.sku) ?? 0);
      stockSeq += v.availability.seq;
    }
    const path = categoryPaths.get(row.category_id) ?? `/${row.category_id}/`;
    byId.set(row.id, {
      lastModified,
      doc: {
        id: row.id,
        slug: row.slug,
        version: row.version,
        stock_seq: stockSeq,
        status: row.status as ProductDocument["status"],
        title: row.title,
        description: row.description,
        translations: translations.get(row.id) ?? {},
        brand: row.brand,
        category_id: row.category_id,
        category_path: path.split("/").filter(Boolean),
        attributes: parse<Record<string, string>>(row.attributes, {}),
        images: parse<{ url: string; alt?: string }[]>(row.images, []),
        markets: parse<string[]>(row.markets, []),
        condition: row.condition,
        created_at: row.created_at,
        updated_at: row.updated_at,
        change_seq: row.change_seq,
        variants,
        promotions: schedules.get(row.id) ?? [],
      },
    });
  }
  return ids.map((id) => byId.get(id)).filter((d): d is LoadedDocument => d !== undefined);
}

/** One product's document, or null when there is no such product. */
export async function loadProductDocument(db: Queryable, id: string): Promise<ProductDocument | null> {
  return (await loadProductDocuments(db, [id]))[0]?.doc ?? null;
}

/**
 * The (version, stock_seq) pair the database holds for a product, summed as the loader sums it, without loading the
 * document: a check for a newer version costs the product's own rows, not a second full load.
 */
export async function loadDocumentVersion(db: Queryable, id: string): Promise<Pick<ProductDocument, "version" | "stock_seq"> | null> {
  return db
    .prepare(
      `SELECT p.version AS version,
              (SELECT coalesce(sum(a.seq), 0) FROM variants v JOIN availability a ON a.sku = v.sku
               WHERE v.product_id = p.id AND v.status = 'active') AS stock_seq
       FROM products p WHERE p.id = ? AND ${visibleProductSql("p")}`,
    )
    .bind(id)
    .first<Pick<ProductDocument, "version" | "stock_seq">>();
}

/**
 * The database's document when it is newer than `doc`, else `doc` (null when the product is gone): the version
 * probe reads the product's own rows, and the full load runs only when there is something newer. The check a KV
 * writer makes after its write (src/catalog/projection-store.ts) almost always finds nothing newer.
 */
export async function newerThan(doc: ProductDocument, db: Queryable, id: string): Promise<ProductDocument | null> {
  const version = await loadDocumentVersion(db, id);
  if (!version) return null;
  return isNewer(version, doc) ? loadProductDocument(db, id) : doc;
}
