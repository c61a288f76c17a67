/**
 * SQL conditions restricting `products p` to an affiliate's catalog scope and to a request's filters.
 * Each scope dimension that is set must match (categories include their subcategories through the
 * materialised `categories.path`); a SKU allow-list keeps products with at least one allowed variant,
 * and `filterVariants` then hides the others. Lists are bound as one JSON parameter each.
 */
import type { AffiliateScope } from "../affiliates/account";
import type { ProductDocument } from "../catalog/document";

export type Condition = { sql: string; binds: unknown[] };

const inCategories = "p.category_id IN (SELECT c.id FROM categories c, json_each(?) j WHERE instr(c.path, '/' || j.value || '/') > 0)";
const inBrands = "p.brand IN (SELECT value FROM json_each(?))";
// An id list, not a correlated EXISTS: the allowed SKUs then lead SQLite to their products by primary key (see pages.ts)
// instead of a probe of variants for every product in the catalog.
const hasSku = "p.id IN (SELECT v.product_id FROM variants v WHERE v.sku IN (SELECT value FROM json_each(?)))";

export function scopeConditions(scope: AffiliateScope, filters: { category?: string; brand?: string } = {}): Condition[] {
  const out: Condition[] = [];
  if (scope.categories?.length) out.push({ sql: inCategories, binds: [JSON.stringify(scope.categories)] });
  if (scope.brands?.length) out.push({ sql: inBrands, binds: [JSON.stringify(scope.brands)] });
  if (scope.skus?.length) out.push({ sql: hasSku, binds: [JSON.stringify(scope.skus)] });
  if (filters.category) out.push({ sql: inCategories, binds: [JSON.stringify([filters.category])] });
  if (filters.brand) out.push({ sql: inBrands, binds: [JSON.stringify([filters.brand])] });
  return out;
}

/** The same rules in memory, for a document loaded by id (single-item reads and click redirects). */
export function inScope(doc: ProductDocument, scope: AffiliateScope): boolean {
  if (scope.categories?.length && !doc.category_path.some((c) => scope.categories!.includes(c))) return false;
  if (scope.brands?.length && !scope.brands.includes(doc.brand)) return false;
  if (scope.skus?.length && !doc.variants.some((v) => scope.skus!.includes(v.sku))) return false;
  return true;
}

/** Only the variants a SKU allow-list admits (all of them when there is none). */
export function filterVariants(doc: ProductDocument, scope: AffiliateScope): ProductDocument {
  if (!scope.skus?.length) return doc;
  const allowed = new Set(scope.skus);
  return { ...doc, variants: doc.variants.filter((v) => allowed.has(v.sku)) };
}
