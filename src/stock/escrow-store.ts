/**
 * Escrow transfers of a hot SKU between StockShard objects: the giving side's half, synchronous, run inside the
 * shard's `transactionSync`. A transfer is recorded on the giving side (`escrow_sends`, state `pending`) in the
 * same step that takes the units out of its stock (ledger `adjust`, reason `escrow_out`), and stays pending until
 * the receiver has acknowledged applying it (reason `escrow_in`, idempotent per transfer id and location). The
 * giving object re-delivers pending sends (its alarm sweeps them), so no unit is ever lost in transit, and while
 * a send is pending its units still count at the giver for every reader.
 *
 * A debit (a recount below what the home shard holds free) is a send of negative units: the receiver applies it
 * to its own count, the giver takes nothing.
 */
import type { StockStore } from "./shard-store";

export type EscrowItem = { location: string; quantity: number };
export type SendRow = {
  transfer_id: string;
  sku: string;
  target: string;
  target_role: "home" | "sub";
  items: EscrowItem[];
  reason: string;
  created_at: number;
  attempts: number;
};
type RawSend = Omit<SendRow, "items"> & { items: string; state: string };

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

/** A pending send older than this is re-delivered by the giver's alarm. */
export const SEND_SWEEP_MS = 2_000;

type RawStock = { location: string; on_hand: number; reserved: number; safety_stock: number };

const toSend = (r: RawSend): SendRow => ({ ...r, items: JSON.parse(r.items) as EscrowItem[] });

export class EscrowStore {
  constructor(
    private readonly sql: SqlStorage,
    private readonly stock: StockStore,
  ) {
    sql.exec(ESCROW_DDL);
  }

  /** Free units (on_hand − reserved − safety_stock) per location, largest first, optionally of one location. */
  free(sku: string, location?: string): EscrowItem[] {
    return this.sql
      .exec<RawStock>("SELECT location, on_hand, reserved, safety_stock FROM stock WHERE sku = ? ORDER BY location", sku)
      .toArray()
      .filter((r) => location === undefined || r.location === location)
      .map((r) => ({ location: r.location, quantity: Math.max(0, r.on_hand - r.reserved - r.safety_stock) }))
      .filter((r) => r.quantity > 0)
      .sort((a, b) => b.quantity - a.quantity);
  }

  /** This object's role as a sub-shard of `sku`: its own name and its home's (none when it is not one). */
  subOf(sku: string): { shard: string; home: string } | undefined {
    return this.sql.exec<{ shard: string; home: string }>("SELECT shard, home FROM escrow_sub WHERE sku = ?", sku).toArray()[0];
  }

  /** The send recorded under `transferId`, if any (a retried take returns the same units, never more). */
  send(transferId: string): (SendRow & { state: string }) | undefined {
    const r = this.sql.exec<RawSend>("SELECT * FROM escrow_sends WHERE transfer_id = ?", transferId).toArray()[0];
    return r ? { ...toSend(r), state: r.state } : undefined;
  }

  /**
   * Takes up to `max` free units (all when null) of `sku` (of one location if given), largest locations first,
   * and records them as a pending send to `target`. Held and committed units never move.
   */
  take(sku: string, transferId: string, target: string, targetRole: "home" | "sub", max: number | null, location: string | undefined, actor: string, now: number): SendRow {
    const done = this.send(transferId);
    if (done) return done;
    this.stock.expireDue(now);
    let left = max ?? Number.POSITIVE_INFINITY;
    const items: EscrowItem[] = [];
    for (const r of this.free(sku, location)) {
      if (left <= 0) break;
      const q = Math.min(r.quantity, left);
      this.stock.move(sku, r.location, -q, "escrow_out", `${transferId}:out:${r.location}`, actor, now);
      items.push({ location: r.location, quantity: q });
      left -= q;
    }
    return this.record(transferId, sku, target, targetRole, items, "escrow_in", actor, now);
  }

  /**
   * Records a send of units already taken out here (or a debit: negative units, nothing taken here), with the
   * ledger's `transit` row for the units it carries (settled by the receiver's row on arrival).
   */
  record(transferId: string, sku: string, target: string, targetRole: "home" | "sub", items: EscrowItem[], reason: string, actor: string, now: number): SendRow {
    const done = this.send(transferId);
    if (done) return done;
    this.sql.exec(
      "INSERT INTO escrow_sends (transfer_id, sku, target, target_role, items, reason, state, attempts, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?)",
      transferId, sku, target, targetRole, JSON.stringify(items), reason, now,
    );
    for (const it of items) if (it.quantity > 0) this.stock.noteTransit(sku, it.location, it.quantity, "sent", transferId, actor, now);
    return { transfer_id: transferId, sku, target, target_role: targetRole, items, reason, created_at: now, attempts: 0 };
  }

  settle(transferId: string, sku: string, now: number): void {
    const changed = this.sql.exec("UPDATE escrow_sends SET state = 'settled', settled_at = ? WHERE transfer_id = ? AND state = 'pending'", now, transferId).rowsWritten;
    // The pending units stopped counting here: readers of the sum must see a newer snapshot.
    if (changed) this.stock.bumpSeq(sku);
  }

  failed(transferId: string): void {
    this.sql.exec("UPDATE escrow_sends SET attempts = attempts + 1 WHERE transfer_id = ?", transferId);
  }

  /** Pending sends, oldest first: all of them, or those of one SKU, or those created before `before`. */
  pending(opts: { sku?: string; before?: number } = {}): SendRow[] {
    return this.sql
      .exec<RawSend>(
        "SELECT * FROM escrow_sends WHERE state = 'pending' AND (? IS NULL OR sku = ?) AND created_at < ? ORDER BY created_at LIMIT 100",
        opts.sku ?? null, opts.sku ?? null, opts.before ?? Number.MAX_SAFE_INTEGER,
      )
      .toArray()
      .map(toSend);
  }

  oldestPending(): number | null {
    return this.sql.exec<{ t: number | null }>("SELECT MIN(created_at) AS t FROM escrow_sends WHERE state = 'pending'").one().t;
  }

  /** Applies a transfer's units here (idempotent per transfer id and location). `role` sub registers a sub-shard. */
  give(sku: string, transferId: string, items: EscrowItem[], reason: string, role: "sub" | "home", self: string, home: string, actor: string, now: number): void {
    if (role === "sub") {
      // Registering the SKU as known first means this object will never adopt the D1 baseline for it.
      this.sql.exec("INSERT OR IGNORE INTO skus (sku, seq, adopted_at) VALUES (?, 0, ?)", sku, now);
      this.sql.exec("INSERT INTO escrow_sub (sku, shard, home) VALUES (?, ?, ?) ON CONFLICT (sku) DO UPDATE SET shard = excluded.shard, home = excluded.home", sku, self, home);
      this.sql.exec("INSERT INTO escrow_role (sku, role) VALUES (?, 'sub') ON CONFLICT (sku) DO UPDATE SET role = 'sub'", sku);
    }
    for (const it of items) {
      if (it.quantity === 0) continue;
      const applied = this.stock.move(sku, it.location, it.quantity, reason, `${transferId}:in:${it.location}`, actor, now);
      // The giver's `transit` row is settled here, once, in the step that adds the units.
      if (applied && it.quantity > 0) this.stock.noteTransit(sku, it.location, it.quantity, "received", transferId, actor, now);
    }
  }

  /** Counts of this object for `sku`, for reconciliation across the home shard and its sub-shards. */
  totals(sku: string): { on_hand: number; reserved: number; available: number; committed: number; escrow_out: number; escrow_in: number; pending: number } {
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
    const pending = this.pending({ sku }).reduce((n, s) => n + s.items.reduce((m, i) => m + Math.max(0, i.quantity), 0), 0);
    const onHand = s.on_hand ?? 0;
    const reserved = s.reserved ?? 0;
    return {
      on_hand: onHand,
      reserved,
      available: onHand - reserved - (s.safety ?? 0),
      committed: l.committed ?? 0,
      escrow_out: l.out ?? 0,
      escrow_in: l.inn ?? 0,
      pending,
    };
  }
}
