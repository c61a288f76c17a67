/**
 * The one lookup of the price a shopper pays per unit, used to snapshot prices into reservations: the
 * effective price at `now` (src/promotions/effective-price.ts, the same function every page and feed
 * renders with), with the regular price and the promotion that produced it.
 */
import { effectivePrice } from "../promotions/effective-price";
import { loadSchedules } from "../promotions/schedule";
import type { ShopperMarket } from "../lib/markets";

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
export async function resolveUnitPrices(env: Env, skus: readonly string[], currency: string, now: number, market?: ShopperMarket): Promise<Map<string, UnitPrice>> {
  const unique = [...new Set(skus)];
  const rows: { sku: string; product_id: string; amount: number | null }[] = [];
  for (let i = 0; i < unique.length; i += CHUNK) {
    const chunk = unique.slice(i, i + CHUNK);
    const { results } = await env.DB.prepare(
      `SELECT v.sku AS sku, v.product_id AS product_id, p.amount AS amount FROM variants v LEFT JOIN prices p ON p.sku = v.sku AND p.currency = ?
       WHERE v.sku IN (${chunk.map(() => "?").join(",")})`,
    )
      .bind(currency, ...chunk)
      .all<{ sku: string; product_id: string; amount: number | null }>();
    rows.push(...results);
  }
  const schedules = await loadSchedules(env.DB, rows.filter((r) => r.amount !== null).map((r) => r.product_id), now);
  const out = new Map<string, UnitPrice>();
  for (const r of rows) {
    if (r.amount === null) {
      out.set(r.sku, { sku: r.sku, currency, unit_price: null, regular_price: null, promotion_id: null });
      continue;
    }
    const eff = effectivePrice(r.amount, currency, r.sku, schedules.get(r.product_id), now, market);
    out.set(r.sku, { sku: r.sku, currency, unit_price: eff.amount, regular_price: r.amount, promotion_id: eff.promotion?.id ?? null });
  }
  return out;
}
