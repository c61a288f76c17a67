/**
 * The shopper's total hoarding cap, kept as a table of one stock shard: the tally shard of a holder is
 * `stock:{hash(holder) % STOCK_SHARDS}` (src/stock/routing.ts, `tallyShardIndex`). A reservation that names its
 * shopper (`x-shopper-id`) is coordinated by that same shard, so the admission runs in the transaction that
 * records the Idempotency-Key (`begin`) and no extra object is called; without a shopper id (IP fallback, the
 * coordinator follows the Idempotency-Key) the coordinator asks the tally shard object-to-object.
 *
 * Synchronous, like the other stores: the Durable Object runs each method inside one `transactionSync`. No object
 * is created per shopper, and rows are bounded: a row goes when its reservation ends (commit, release, a refused
 * saga) and lapsed rows are swept in slices by admissions (at most once a second) and by retention.
 */
import type { HoldLine } from "./types";

export type HoldAdmission = { ok: true } | { ok: false; scope: "total"; limit: number; held: number; requested: number; retry_after: number };

/**
 * Admissions sweep lapsed rows at most this often, up to SWEEP_SLICE each time: the DELETE cost about 4 % of the
 * isolate's CPU when every admission ran it (bench/reserve/profile.ts, hot SKU). Lapsed rows never count (every
 * read filters on `expires_at`), so sweeping late only keeps them on disk a little longer.
 */
const SWEEP_EVERY_MS = 1_000;
const SWEEP_SLICE = 256;

export class ShopperTally {
  /** When this object last swept (in memory: a restarted object sweeps at its first admission). */
  private sweptAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly sql: SqlStorage) {}

  /**
   * Admits a reservation's units only if the holder's live units plus them stay within `total`. Idempotent per
   * reservation id: a retried saga moves the row's deadline and is admitted again without counting twice.
   */
  admit(holder: string, reservationId: string, lines: readonly HoldLine[], expiresAt: number, total: number, now: number): HoldAdmission {
    if (now - this.sweptAt >= SWEEP_EVERY_MS || now < this.sweptAt) {
      this.sweptAt = now;
      this.sweep(now, SWEEP_SLICE);
    }
    const units = lines.reduce((n, l) => n + l.quantity, 0);
    const mine = this.sql.exec<{ expires_at: number }>("SELECT expires_at FROM shopper_holds WHERE reservation_id = ?", reservationId).toArray()[0];
    if (mine) {
      if (mine.expires_at !== expiresAt) this.extend(reservationId, expiresAt);
      return { ok: true };
    }
    const row = this.sql
      .exec<{ n: number | null; soonest: number | null }>("SELECT SUM(units) AS n, MIN(expires_at) AS soonest FROM shopper_holds WHERE holder = ? AND expires_at > ?", holder, now)
      .one();
    const held = row.n ?? 0;
    if (held + units > total) {
      const soonest = row.soonest ?? now + 1000;
      return { ok: false, scope: "total", limit: total, held, requested: units, retry_after: Math.max(1, Math.ceil((soonest - now) / 1000)) };
    }
    this.sql.exec("INSERT INTO shopper_holds (reservation_id, holder, units, expires_at) VALUES (?, ?, ?, ?)", reservationId, holder, units, expiresAt);
    return { ok: true };
  }

  /**
   * The reservation ended (committed, released, refused): its units no longer count. With `onlyUntil`, only a row
   * still at that deadline goes: each saga attempt admits with its own deadline, so a superseded attempt's
   * compensation cannot end the row a newer attempt of the same reservation admitted (or an extend moved).
   */
  end(reservationId: string, onlyUntil?: number): void {
    if (onlyUntil === undefined) this.sql.exec("DELETE FROM shopper_holds WHERE reservation_id = ?", reservationId);
    else this.sql.exec("DELETE FROM shopper_holds WHERE reservation_id = ? AND expires_at = ?", reservationId, onlyUntil);
  }

  /** An extend moved the reservation's deadline: its units keep counting until the new one. */
  extend(reservationId: string, expiresAt: number): void {
    this.sql.exec("UPDATE shopper_holds SET expires_at = ? WHERE reservation_id = ?", expiresAt, reservationId);
  }

  /** Deletes up to `limit` lapsed rows (abandoned carts never end their reservation); returns how many. */
  sweep(now: number, limit: number): number {
    return this.sql.exec(
      "DELETE FROM shopper_holds WHERE reservation_id IN (SELECT reservation_id FROM shopper_holds WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
      now,
      limit,
    ).rowsWritten;
  }
}
