/**
 * The one lookup of the price a shopper pays per unit, used to snapshot prices into reservations.
 * Today it returns the regular price from D1 `prices`; promotions (issue 9) will make it return the effective
 * price at `now` and fill `promotion_id` / `regular_price`, without callers changing.
 */

export type UnitPrice = {
  sku: string;
  currency: string;
  /** Minor units; null when the SKU exists but has no price in this currency (not sellable in it). */
  unit_price: number | null;
  regular_price: number | null;
  promotion_id: string | null;
};

const CHUNK = 90; // D1 allows 100 bound parameters per statement in production.

/** Prices of the SKUs that exist in the catalog; SKUs absent from the returned map are unknown. */
export async function resolveUnitPrices(env: Env, skus: readonly string[], currency: string, now: number): Promise<Map<string, UnitPrice>> {
  void now; // the instant the price must be in force at; regular prices do not depend on it yet
  const unique = [...new Set(skus)];
  const out = new Map<string, UnitPrice>();
  for (let i = 0; i < unique.length; i += CHUNK) {
    const chunk = unique.slice(i, i + CHUNK);
    const { results } = await env.DB.prepare(
      `SELECT v.sku AS sku, p.amount AS amount FROM variants v LEFT JOIN prices p ON p.sku = v.sku AND p.currency = ?
       WHERE v.sku IN (${chunk.map(() => "?").join(",")})`,
    )
      .bind(currency, ...chunk)
      .all<{ sku: string; amount: number | null }>();
    for (const r of results) {
      out.set(r.sku, { sku: r.sku, currency, unit_price: r.amount, regular_price: r.amount, promotion_id: null });
    }
  }
  return out;
}
