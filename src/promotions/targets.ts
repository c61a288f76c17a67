/**
 * Which SKUs a promotion covers. A promotion write resolves its target into `promotion_targets` (so product
 * reads are a keyed lookup), but the catalog keeps moving after that: a product created in a promoted
 * category or brand, a product moved out of it, a variant added to a promoted product. Every catalog write
 * therefore re-resolves the targets of the products it touches, in its own batch, with the same conditions
 * the promotion write used (`targetCondition`), so the two can never disagree.
 */
export const TARGET_TYPES = ["skus", "products", "category", "brand"] as const;
export type TargetType = (typeof TARGET_TYPES)[number];

/**
 * SQL that is true when the variant `v` of product `p` is covered by a target of `type` whose values (a
 * JSON array of SKUs, product ids, category ids or slugs, or brands) are the SQL expression `values`.
 * Categories include their subcategories through the materialised path.
 */
export function targetCondition(type: TargetType, values: string): string {
  switch (type) {
    case "skus":
      return `v.sku IN (SELECT value FROM json_each(${values}))`;
    case "products":
      return `v.product_id IN (SELECT value FROM json_each(${values}))`;
    case "brand":
      return `p.brand IN (SELECT value FROM json_each(${values}))`;
    case "category":
      return `p.category_id IN (SELECT c.id FROM categories root JOIN categories c ON substr(c.path, 1, length(root.path)) = root.path
                WHERE root.id IN (SELECT value FROM json_each(${values})) OR root.slug IN (SELECT value FROM json_each(${values})))`;
  }
}

/** The same test for a stored promotion `pr`, whatever its target type. */
const STORED_MATCH = `CASE pr.target_type
  WHEN 'skus' THEN ${targetCondition("skus", "pr.target_values")}
  WHEN 'products' THEN ${targetCondition("products", "pr.target_values")}
  WHEN 'brand' THEN ${targetCondition("brand", "pr.target_values")}
  WHEN 'category' THEN ${targetCondition("category", "pr.target_values")}
  ELSE 0 END`;

const SELLABLE = "v.status = 'active' AND p.status <> 'archived'";
const LIVE = "pr.deleted_at IS NULL AND (pr.ends_at IS NULL OR pr.ends_at > ?1)";

/**
 * Statements that bring the targets of the products selected by `scope` (SQL selecting product ids, with its
 * parameters from ?2 on) in line with the catalog as the same batch leaves it. ?1 is the time. Run them after
 * the batch's product and variant writes.
 *
 * - Additions: every live promotion's target values are turned into keys once per statement (a SKU, a
 *   product id, a brand, or a category id with all its subcategories) and joined to the scoped variants by
 *   key, so an import of many products costs one pass over the promotions, not one per product and promotion.
 *   This covers products created in (or moved into) a promoted category or brand, new variants of promoted
 *   products, and products or SKUs a promotion listed before they existed.
 * - Rows that no longer match (moved out of the category or brand) are removed. Rows of archived variants and
 *   products stay: they price nothing while archived, and cover the product again if it is restored.
 */
export function retargetStatements(db: D1Database, scope: { sql: string; params: (string | number)[] }, now: number): D1PreparedStatement[] {
  const bind = (sql: string) => db.prepare(sql).bind(now, ...scope.params);
  const byKey = (kind: TargetType, column: string) =>
    `SELECT k.promotion_id, s.sku, s.product_id FROM scoped s JOIN keys k ON k.kind = '${kind}' AND k.key = s.${column}`;
  return [
    bind(`DELETE FROM promotion_targets WHERE product_id IN (${scope.sql}) AND NOT EXISTS (
            SELECT 1 FROM variants v CROSS JOIN products p ON p.id = v.product_id CROSS JOIN promotions pr ON pr.id = promotion_targets.promotion_id
            WHERE v.sku = promotion_targets.sku AND v.product_id = promotion_targets.product_id AND ${STORED_MATCH})`),
    bind(`WITH keys AS MATERIALIZED (
            SELECT pr.id AS promotion_id, pr.target_type AS kind, j.value AS key
            FROM promotions pr, json_each(pr.target_values) j
            WHERE pr.target_type IN ('skus', 'products', 'brand') AND ${LIVE}
            UNION ALL
            SELECT pr.id, 'category', c.id
            FROM promotions pr, json_each(pr.target_values) j
              JOIN categories root ON root.id = j.value OR root.slug = j.value
              JOIN categories c ON substr(c.path, 1, length(root.path)) = root.path
            WHERE pr.target_type = 'category' AND ${LIVE}
          ),
          scoped AS MATERIALIZED (
            SELECT v.sku, v.product_id, p.brand, p.category_id FROM variants v CROSS JOIN products p ON p.id = v.product_id
            WHERE v.product_id IN (${scope.sql}) AND ${SELLABLE}
          )
          INSERT OR IGNORE INTO promotion_targets (promotion_id, sku, product_id)
          ${byKey("skus", "sku")} UNION ${byKey("products", "product_id")} UNION ${byKey("brand", "brand")} UNION ${byKey("category", "category_id")}`),
  ];
}
