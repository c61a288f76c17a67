export type StockStatus = "in_stock" | "low_stock" | "out_of_stock";

/** One rule for every tier (shard, projection, feeds) so a SKU never shows two different badges. */
export function availabilityStatus(available: number, lowStockThreshold: number): StockStatus {
  if (available <= 0) return "out_of_stock";
  if (available <= lowStockThreshold) return "low_stock";
  return "in_stock";
}
