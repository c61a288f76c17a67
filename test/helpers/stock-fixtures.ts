/** SKUs with known stock for reservation tests, built on the shared catalog fixtures. */
import { env, runInDurableObject } from "cloudflare:test";
import { product } from "../../src/seed/generate";
import { shardNameForSku } from "../../src/stock/routing";
import type { LedgerEntry } from "../../src/stock/types";
import { insertProduct } from "./catalog-fixtures";
import { uid } from "./http";

export type StockSpec = number | { [location: string]: number };

/** One product with a variant per entry of `stock` (a count at loc-us-east, or counts per location). Returns the SKUs. */
export async function makeSkus(stock: StockSpec[], opts: { safetyStock?: number; prices?: Record<string, number> } = {}): Promise<string[]> {
  const template = product(1).variants[0]!;
  const variants = stock.map((_, i) => ({ ...template, sku: uid("SKU"), position: i, prices: opts.prices ?? template.prices }));
  const rows = variants.flatMap((v, i) => {
    const spec = stock[i]!;
    const perLocation = typeof spec === "number" ? { "loc-us-east": spec } : spec;
    return Object.entries(perLocation).map(([locationId, onHand]) => ({ sku: v.sku, locationId, onHand, safetyStock: opts.safetyStock }));
  });
  await insertProduct(env.DB, { variants, stock: rows });
  return variants.map((v) => v.sku);
}

export function shardStub(sku: string) {
  return env.STOCK.getByName(shardNameForSku(env, sku));
}

/** The whole ledger of a SKU straight from its shard. */
export async function ledgerOf(sku: string): Promise<LedgerEntry[]> {
  return runInDurableObject(shardStub(sku), (_, state) =>
    state.storage.sql.exec<LedgerEntry>("SELECT * FROM ledger WHERE sku = ? ORDER BY id", sku).toArray(),
  );
}

/** Replays the ledger and compares with the live rows: returns the mismatches (none = reconciled) and the oversold count. */
export async function reconcile(sku: string): Promise<{ mismatches: string[]; oversold: number; onHand: number; reserved: number }> {
  const ledger = await ledgerOf(sku);
  const rows = await runInDurableObject(shardStub(sku), (_, state) =>
    state.storage.sql
      .exec<{ location: string; on_hand: number; reserved: number; safety_stock: number; backorder_limit: number | null }>("SELECT * FROM stock WHERE sku = ?", sku)
      .toArray(),
  );
  const mismatches: string[] = [];
  let oversold = 0;
  let onHand = 0;
  let reserved = 0;
  for (const r of rows) {
    // `transit` rows count units travelling between objects of a hot SKU; they change no count of their own object.
    const mine = ledger.filter((l) => l.location === r.location && l.kind !== "transit");
    const sumOn = mine.reduce((n, l) => n + l.delta_on_hand, 0);
    const sumRes = mine.reduce((n, l) => n + l.delta_reserved, 0);
    if (sumOn !== r.on_hand) mismatches.push(`${r.location}: ledger on_hand ${sumOn} != ${r.on_hand}`);
    if (sumRes !== r.reserved) mismatches.push(`${r.location}: ledger reserved ${sumRes} != ${r.reserved}`);
    for (const l of mine) oversold = Math.max(oversold, l.reserved_after - l.on_hand_after - (r.backorder_limit ?? 0), -l.on_hand_after);
    onHand += r.on_hand;
    reserved += r.reserved;
  }
  const seqs = ledger.map((l) => l.seq);
  if (seqs.some((s, i) => i > 0 && s <= seqs[i - 1]!)) mismatches.push("per-SKU seq is not strictly increasing");
  return { mismatches, oversold, onHand, reserved };
}
