/**
 * Loads the promotion schedule embedded in product documents: one keyed read of `promotion_targets` by
 * product id (resolved on promotion write) joined to the promotions, however many promotions exist.
 * Ended and deleted promotions are left out; current and upcoming ones are all kept, so the document
 * stays right across future boundaries.
 */
import type { DocPromotion, PromotionValue, ValueType } from "./effective-price";

type Row = {
  product_id: string;
  sku: string;
  id: string;
  name: string;
  starts_at: number;
  ends_at: number | null;
  priority: number;
  value_type: string;
  value: string;
  currencies: string;
  markets: string;
};

type Queryable = Pick<D1Database, "prepare">;

/** The keyed read behind `loadSchedules`, for callers that put it in a D1 batch of their own. */
export function schedulesStatement(db: Queryable, productIds: readonly string[], now: number): D1PreparedStatement {
  return db
    .prepare(
      `SELECT t.product_id, t.sku, p.id, p.name, p.starts_at, p.ends_at, p.priority, p.value_type, p.value, p.currencies, p.markets
       FROM promotion_targets t JOIN promotions p ON p.id = t.promotion_id
       WHERE t.product_id IN (SELECT value FROM json_each(?1)) AND p.deleted_at IS NULL AND (p.ends_at IS NULL OR p.ends_at > ?2)
       ORDER BY t.product_id, p.id, t.sku`,
    )
    .bind(JSON.stringify([...new Set(productIds)]), now);
}

export async function loadSchedules(db: Queryable, productIds: readonly string[], now: number): Promise<Map<string, DocPromotion[]>> {
  if (productIds.length === 0) return new Map();
  return schedulesFrom((await schedulesStatement(db, productIds, now).all<unknown>()).results);
}

/** Each product's promotions, from the rows of `schedulesStatement`. */
export function schedulesFrom(rows: readonly unknown[]): Map<string, DocPromotion[]> {
  const out = new Map<string, DocPromotion[]>();
  const byKey = new Map<string, DocPromotion>();
  for (const r of rows as Row[]) {
    const key = `${r.product_id}\n${r.id}`;
    let promo = byKey.get(key);
    if (!promo) {
      promo = {
        id: r.id,
        name: r.name,
        starts_at: r.starts_at,
        ends_at: r.ends_at,
        priority: r.priority,
        value_type: r.value_type as ValueType,
        value: JSON.parse(r.value) as PromotionValue,
        currencies: JSON.parse(r.currencies) as string[],
        markets: JSON.parse(r.markets) as string[],
        skus: [],
      };
      byKey.set(key, promo);
      out.set(r.product_id, [...(out.get(r.product_id) ?? []), promo]);
    }
    promo.skus.push(r.sku);
  }
  return out;
}
