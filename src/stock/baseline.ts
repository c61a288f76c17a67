import type { Baseline } from "./shard-store";

const CHUNK = 90; // D1 allows 100 bound parameters per statement in production.

/** Which of `skus` exist in the catalog, and their baseline stock rows (none = zero stock). */
export async function loadCatalogSkus(db: D1Database, skus: string[]): Promise<{ found: string[]; baselines: Baseline[] }> {
  const found: string[] = [];
  const baselines: Baseline[] = [];
  for (let i = 0; i < skus.length; i += CHUNK) {
    const chunk = skus.slice(i, i + CHUNK);
    const marks = chunk.map(() => "?").join(",");
    const [variants, base] = await db.batch([
      db.prepare(`SELECT sku FROM variants WHERE sku IN (${marks})`).bind(...chunk),
      db
        .prepare(
          `SELECT sku, location_id AS location, on_hand, safety_stock, low_stock_threshold AS low_stock FROM stock_baseline WHERE sku IN (${marks})`,
        )
        .bind(...chunk),
    ]);
    for (const r of variants.results as { sku: string }[]) found.push(r.sku);
    baselines.push(...(base.results as Baseline[]));
  }
  return { found, baselines };
}

/** The same over every catalog partition (a SKU lives in its product's partition): one look-up each. */
export async function loadCatalogSkusAcross(dbs: readonly D1Database[], skus: string[]): Promise<{ found: string[]; baselines: Baseline[] }> {
  if (dbs.length === 1) return loadCatalogSkus(dbs[0]!, skus);
  const parts = await Promise.all(dbs.map((db) => loadCatalogSkus(db, skus)));
  return { found: parts.flatMap((p) => p.found), baselines: parts.flatMap((p) => p.baselines) };
}
