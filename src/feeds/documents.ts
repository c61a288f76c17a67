/**
 * Loads a page of `ProductDocument`s (the shape of src/catalog/document.ts) in one D1 batch of six queries,
 * whatever the page size: ids travel as one JSON parameter through `json_each`, so the 100-bound-parameter
 * limit never applies. Availability is read from the projection on every call: feeds promise live
 * availability, which a KV copy of the document cannot guarantee.
 */
import { availabilityBySku, noStock, pricesBySku, type ProductDocument } from "../catalog/document";
import { now } from "../lib/clock";
import { schedulesFrom, schedulesStatement } from "../promotions/schedule";


type ProductRow = {
  id: string; slug: string; version: number; status: string; title: string; description: string; brand: string;
  category_id: string; attributes: string; images: string; markets: string; condition: string;
  created_at: number; updated_at: number; change_seq: number;
};

export type LoadedDocument = { doc: ProductDocument; lastModified: number };

function parse<T>(text: string | null, fallback: T): T {
  if (!text) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

/**
 * `only` narrows translations and prices to the one locale and currency a feed renders, by key: a page then
 * reads and returns about a third of those rows. Availability is summed per SKU in SQL for the same reason.
 */
export async function loadDocuments(db: D1Database, ids: string[], only: { currency?: string; locale?: string } = {}): Promise<LoadedDocument[]> {
  if (ids.length === 0) return [];
  const idsJson = JSON.stringify([...new Set(ids)]);
  const inIds = "(SELECT value FROM json_each(?1))";
  // A plain `column = ?2`, added only when narrowing: `(?2 IS NULL OR …)` kept it out of the key and read every row.
  const narrowed = (select: string, column: string, value: string | undefined) =>
    value ? db.prepare(`${select} AND ${column} = ?2`).bind(idsJson, value) : db.prepare(select).bind(idsJson);
  const [productRes, translationRes, variantRes, priceRes, stockRes, categoryRes, scheduleRes] = await db.batch([
    db.prepare(
      `SELECT id, slug, version, status, title, description, brand, category_id, attributes, images, markets, condition,
              created_at, updated_at, change_seq FROM products WHERE id IN ${inIds}`,
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
