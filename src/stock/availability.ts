/** Strong stock reads: each owning shard is asked once, for all of its SKUs together. */
import { ApiError } from "../lib/errors";
import { availabilityStatus, type StockStatus } from "../lib/stock-status";
import { groupByShard, stockStub } from "./routing";
import type { StockRow } from "./types";

export type LocationAvailability = { location: string; on_hand: number; reserved: number; available: number; status: StockStatus };
export type SkuAvailability = {
  sku: string;
  on_hand: number;
  reserved: number;
  available: number;
  status: StockStatus;
  seq: number;
  locations?: LocationAvailability[];
};

export async function readStockRows(env: Env, skus: string[]): Promise<StockRow[]> {
  const groups = [...groupByShard(env, [...new Set(skus)], (s) => s)];
  const results = await Promise.all(groups.map(([name, list]) => stockStub(env, name).read(list)));
  const unknown = results.flatMap((r) => (r.ok ? [] : r.skus));
  if (unknown.length) throw ApiError.unprocessable(`Unknown SKUs: ${unknown.join(", ")}.`, { unknown_skus: unknown });
  return results.flatMap((r) => (r.ok ? r.rows : []));
}

/**
 * Summed over locations. Available units never show below zero (safety stock can exceed what is left), and
 * the summed badge uses the largest low-stock threshold of the SKU's locations.
 */
export function summarise(skus: string[], rows: StockRow[], byLocation: boolean): SkuAvailability[] {
  return skus.map((sku) => {
    const mine = rows.filter((r) => r.sku === sku);
    const available = mine.reduce((n, r) => n + Math.max(0, r.available), 0);
    const threshold = Math.max(0, ...mine.map((r) => r.low_stock));
    const item: SkuAvailability = {
      sku,
      on_hand: mine.reduce((n, r) => n + r.on_hand, 0),
      reserved: mine.reduce((n, r) => n + r.reserved, 0),
      available,
      status: availabilityStatus(available, threshold),
      seq: mine[0]?.seq ?? 0,
    };
    if (byLocation) {
      item.locations = mine.map((r) => {
        const avail = Math.max(0, r.available);
        return { location: r.location, on_hand: r.on_hand, reserved: r.reserved, available: avail, status: availabilityStatus(avail, r.low_stock) };
      });
    }
    return item;
  });
}
