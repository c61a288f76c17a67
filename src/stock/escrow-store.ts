/**
 * Escrow transfers of a hot SKU between StockShard objects (issue 7). Synchronous, run inside the shard's
 * `transactionSync`. Units move as ledgered `adjust` movements (reason `escrow_out` / `escrow_in`), so the
 * union of the ledgers of the home shard and its sub-shards stays the audit trail of the SKU:
 *   Σ on_hand over home + sub-shards + Σ committed since the split = stock at the split (± later adjustments).
 * A transfer is recorded on the giving side under its id, so a retried take returns the same units instead
 * of taking more, and applied on the receiving side through idempotent adjustment event ids.
 */
import type { StockStore } from "./shard-store";

export type EscrowItem = { location: string; quantity: number };

export const ESCROW_DDL = `
CREATE TABLE IF NOT EXISTS escrow_transfers (
  transfer_id TEXT PRIMARY KEY,
  sku TEXT NOT NULL,
  items TEXT NOT NULL,
  at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS escrow_role (
  sku TEXT PRIMARY KEY,
  role TEXT NOT NULL
) WITHOUT ROWID;
`;

type RawStock = { location: string; on_hand: number; reserved: number; safety_stock: number };

export class EscrowStore {
  constructor(
    private readonly sql: SqlStorage,
    private readonly stock: StockStore,
  ) {
    sql.exec(ESCROW_DDL);
  }

  /** Sub-shards never adopt the D1 baseline (their stock arrives by transfer) and publish no stock events. */
  isSub(sku: string): boolean {
    return this.sql.exec("SELECT 1 FROM escrow_role WHERE sku = ? AND role = 'sub'", sku).toArray().length > 0;
  }

  /**
   * Takes up to `max` free units (all free units when null) of `sku`, largest locations first. Free means
   * on_hand − reserved − safety_stock: held and committed units never move.
   */
  take(sku: string, transferId: string, max: number | null, actor: string, now: number): EscrowItem[] {
    const done = this.sql.exec<{ items: string }>("SELECT items FROM escrow_transfers WHERE transfer_id = ?", transferId).toArray()[0];
    if (done) return JSON.parse(done.items) as EscrowItem[];
    this.stock.expireDue(now);
    const rows = this.sql
      .exec<RawStock>("SELECT location, on_hand, reserved, safety_stock FROM stock WHERE sku = ? ORDER BY location", sku)
      .toArray()
      .map((r) => ({ location: r.location, free: Math.max(0, r.on_hand - r.reserved - r.safety_stock) }))
      .sort((a, b) => b.free - a.free);
    let left = max ?? Number.POSITIVE_INFINITY;
    const items: EscrowItem[] = [];
    for (const r of rows) {
      if (left <= 0) break;
      const q = Math.min(r.free, left);
      if (q <= 0) continue;
      const out = this.stock.adjust({ sku, location: r.location, delta: -q, reason: "escrow_out", event_id: `${transferId}:out:${r.location}` }, actor, now);
      if (out.status !== "applied") continue;
      items.push({ location: r.location, quantity: q });
      left -= q;
    }
    this.sql.exec("INSERT INTO escrow_transfers (transfer_id, sku, items, at) VALUES (?, ?, ?, ?)", transferId, sku, JSON.stringify(items), now);
    return items;
  }

  /** Applies a transfer's units here (idempotent per transfer id and location). `role` marks a sub-shard. */
  give(sku: string, transferId: string, items: EscrowItem[], role: "sub" | "home", actor: string, now: number): void {
    if (role === "sub") {
      // Registering the SKU as known first means this object will never adopt the D1 baseline for it.
      this.sql.exec("INSERT OR IGNORE INTO skus (sku, seq, adopted_at) VALUES (?, 0, ?)", sku, now);
      this.sql.exec("INSERT INTO escrow_role (sku, role) VALUES (?, 'sub') ON CONFLICT (sku) DO UPDATE SET role = 'sub'", sku);
    }
    for (const it of items) {
      if (it.quantity <= 0) continue;
      this.stock.adjust({ sku, location: it.location, delta: it.quantity, reason: "escrow_in", event_id: `${transferId}:in:${it.location}` }, actor, now);
    }
  }

  /** Counts of this object for `sku`, for reconciliation across the home shard and its sub-shards. */
  totals(sku: string): { on_hand: number; reserved: number; available: number; committed: number; escrow_out: number; escrow_in: number } {
    const s = this.sql
      .exec<{ on_hand: number | null; reserved: number | null; safety: number | null }>(
        "SELECT SUM(on_hand) AS on_hand, SUM(reserved) AS reserved, SUM(safety_stock) AS safety FROM stock WHERE sku = ?",
        sku,
      )
      .one();
    const l = this.sql
      .exec<{ committed: number | null; out: number | null; inn: number | null }>(
        `SELECT -SUM(CASE WHEN kind = 'commit' THEN delta_on_hand ELSE 0 END) AS committed,
                -SUM(CASE WHEN kind = 'adjust' AND reason = 'escrow_out' THEN delta_on_hand ELSE 0 END) AS out,
                SUM(CASE WHEN kind = 'adjust' AND reason = 'escrow_in' THEN delta_on_hand ELSE 0 END) AS inn
         FROM ledger WHERE sku = ?`,
        sku,
      )
      .one();
    const onHand = s.on_hand ?? 0;
    const reserved = s.reserved ?? 0;
    return {
      on_hand: onHand,
      reserved,
      available: onHand - reserved - (s.safety ?? 0),
      committed: l.committed ?? 0,
      escrow_out: l.out ?? 0,
      escrow_in: l.inn ?? 0,
    };
  }
}
