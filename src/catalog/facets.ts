/**
 * Facets: brand, category (rolled up the tree), attribute values and price ranges.
 *
 * Without a query or filters the counts are read from `facet_counts`, which triggers keep exact on every
 * write (migrations/0001_search.sql): a primary-key read, whatever the catalog size. With a query or
 * filters they are counted over the matching set only (bounded by the match, never a catalog scan).
 */
import { sql, type SQL } from "drizzle-orm";

/** Lower bounds of price buckets in minor units; must match the CASE in migrations/0001_search.sql. */
export const PRICE_BUCKETS = [0, 2500, 5000, 10000, 25000, 50000] as const;

export function priceBucketLabel(amount: number): string {
  for (let i = PRICE_BUCKETS.length - 1; i >= 0; i--) {
    const lo = PRICE_BUCKETS[i]!;
    if (amount >= lo) return i === PRICE_BUCKETS.length - 1 ? `${lo}+` : `${lo}-${PRICE_BUCKETS[i + 1]}`;
  }
  return `0-${PRICE_BUCKETS[1]}`;
}

/** SQL twin of priceBucketLabel over the numeric expression `expr` (SQL text: a column or json_each's `value`). */
export function priceBucketCase(expr: string): string {
  const whens = PRICE_BUCKETS.slice(1).map((hi, i) => `WHEN ${expr} < ${hi} THEN '${priceBucketLabel(PRICE_BUCKETS[i]!)}'`);
  return `CASE ${whens.join(" ")} ELSE '${priceBucketLabel(PRICE_BUCKETS[PRICE_BUCKETS.length - 1]!)}' END`;
}

export type FacetRow = { facet: string; value: string; count: number };
export type FacetValue = { value: string; count: number };
export type CategoryFacet = { id: string; slug: string; name: string; parent_id: string | null; count: number };
export type Facets = {
  brand: FacetValue[];
  category: CategoryFacet[];
  attributes: Record<string, FacetValue[]>;
  price: { min: number; max: number | null; count: number; currency: string }[];
};

type CategoryRow = { id: string; slug: string; name: string; parent_id: string | null; path: string; t_name: string | null };

export type { CategoryRow };

export function categoriesQuery(locale: string): SQL {
  return sql`SELECT c.id, c.slug, c.name, c.parent_id, c.path, t.name AS t_name
    FROM categories c LEFT JOIN category_translations t ON t.category_id = c.id AND t.locale = ${locale}
    ORDER BY c.depth, c.position, c.id`;
}

/** `meta`'s mark of an old partition in a growth's clean-up, as readers routing by `value` partitions test it. */
export type CleanupMark = { key: string; value: string };

/**
 * facet_counts rows (facet, value, count) matching `wanted`. `cleanup` (several partitions): while `meta` holds that
 * key and value, this partition is a growth's old one, still holding the moved products' rows until the clean-up
 * deletes them; their counts (`grow_moved_facets`, kept by src/db/grow.ts) are subtracted, so the sum over the
 * partitions stays exact. That costs a primary-key probe per row into a table empty outside a clean-up.
 */
function facetCountsQuery(wanted: SQL, cleanup: CleanupMark | undefined): SQL {
  if (!cleanup) return sql`SELECT f.facet, f.value, f.count FROM facet_counts f WHERE f.count > 0 AND ${wanted}`;
  return sql`SELECT f.facet, f.value, f.count - coalesce(m.count, 0) AS count FROM facet_counts f
    LEFT JOIN grow_moved_facets m ON m.facet = f.facet AND m.value = f.value AND EXISTS (SELECT 1 FROM meta WHERE key = ${cleanup.key} AND value = ${cleanup.value})
    WHERE f.count > 0 AND ${wanted}`;
}

/** Materialised facets (no query, no filter) for one currency. */
export function materialisedFacetsQuery(currency: string, cleanup?: CleanupMark): SQL {
  return facetCountsQuery(sql`(f.facet IN ('brand', 'category') OR f.facet >= 'attr:' AND f.facet < 'attr;' OR f.facet = ${`price:${currency}`})`, cleanup);
}

/** Active products per leaf category (`value`), for the category tree's counts. */
export function categoryCountsQuery(cleanup?: CleanupMark): SQL {
  return facetCountsQuery(sql`f.facet = 'category'`, cleanup);
}

const byCount = (a: FacetValue, b: FacetValue) => b.count - a.count || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0);

/** Shapes raw (facet, value, count) rows; `price` rows may be named `price` or `price:<CUR>`. */
export function shapeFacets(rows: FacetRow[], categories: CategoryRow[], currency: string): Facets {
  const brand: FacetValue[] = [];
  const attributes: Record<string, FacetValue[]> = {};
  const leafCounts = new Map<string, number>();
  const priceCounts = new Map<string, number>();
  for (const r of rows) {
    const count = Number(r.count);
    if (count <= 0) continue;
    if (r.facet === "brand") brand.push({ value: r.value, count });
    else if (r.facet === "category") leafCounts.set(r.value, count);
    else if (r.facet.startsWith("attr:")) (attributes[r.facet.slice(5)] ??= []).push({ value: r.value, count });
    else if (r.facet === "price" || r.facet === `price:${currency}`) priceCounts.set(r.value, count);
  }
  brand.sort(byCount);
  for (const list of Object.values(attributes)) list.sort(byCount);
  // Roll leaf counts up the materialised paths: a parent counts every product of its subtree.
  const category: CategoryFacet[] = [];
  for (const c of categories) {
    let count = 0;
    for (const other of categories) if (other.path.startsWith(c.path)) count += leafCounts.get(other.id) ?? 0;
    if (count > 0) category.push({ id: c.id, slug: c.slug, name: c.t_name ?? c.name, parent_id: c.parent_id, count });
  }
  const price = PRICE_BUCKETS.map((lo, i) => {
    const label = priceBucketLabel(lo);
    return { min: lo, max: i === PRICE_BUCKETS.length - 1 ? null : PRICE_BUCKETS[i + 1]!, count: priceCounts.get(label) ?? 0, currency };
  }).filter((b) => b.count > 0);
  return { brand, category, attributes: Object.fromEntries(Object.entries(attributes).sort(([a], [b]) => (a < b ? -1 : 1))), price };
}
