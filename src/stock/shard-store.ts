/**
 * Synchronous stock operations over a shard's SQLite. Nothing here awaits: the Durable Object calls these
 * inside `transactionSync`, so each check-and-write is atomic and rolls back whole on a throw.
 */
import { availabilityStatus } from "../lib/stock-status";
import type {
  AdjustmentLine,
  AdjustmentOutcome,
  HeldItem,
  HoldRequest,
  LedgerEntry,
  LedgerKind,
  Shortfall,
  StockRow,
} from "./types";

/** A stock row as stored: the RPC shape less what is derived on read. */
type RawStock = Omit<StockRow, "available" | "seq">;
type RawHold = { reservation_id: string; sku: string; location: string; quantity: number; expires_at: number; state: string };
type Meta = { reason?: string | null; reservation_id?: string | null; actor?: string | null; event_id?: string | null };

export type Baseline = { sku: string; location: string; on_hand: number; safety_stock: number; low_stock: number };

const availableOf = (r: RawStock) => r.on_hand - r.reserved - r.safety_stock;
const floorOf = (r: RawStock) => -(r.backorder_limit ?? 0);

export function stockChangedEvent(row: StockRow, occurredAt: number) {
  const available = Math.max(0, row.available);
  return {
    type: "stock.changed" as const,
    sku: row.sku,
    location: row.location,
    on_hand: row.on_hand,
    reserved: row.reserved,
    available,
    safety_stock: row.safety_stock,
    low_stock: row.low_stock,
    status: availabilityStatus(available, row.low_stock),
    seq: row.seq,
    occurred_at: occurredAt,
  };
}

export class StockStore {
  constructor(private readonly sql: SqlStorage) {}

  knownSkus(skus: string[]): string[] {
    const known: string[] = [];
    for (const sku of skus) {
      if (this.sql.exec("SELECT 1 FROM skus WHERE sku = ?", sku).toArray().length) known.push(sku);
    }
    return known;
  }

  /**
   * Adopts D1's baseline for SKUs seen for the first time. INSERT OR IGNORE on `skus` decides the race: a SKU
   * adopted by a concurrent call in the meantime is left alone, so baseline stock is never counted twice.
   */
  adopt(skus: string[], baselines: Baseline[], now: number): void {
    for (const sku of skus) {
      const inserted = this.sql.exec("INSERT OR IGNORE INTO skus (sku, seq, adopted_at) VALUES (?, 0, ?)", sku, now).rowsWritten;
      if (!inserted) continue;
      for (const b of baselines) {
        if (b.sku !== sku) continue;
        this.sql.exec(
          "INSERT OR IGNORE INTO stock (sku, location, on_hand, reserved, safety_stock, low_stock, backorder_limit, updated_at) VALUES (?, ?, 0, 0, ?, ?, NULL, ?)",
          sku, b.location, b.safety_stock, b.low_stock, now,
        );
        this.apply(sku, b.location, b.on_hand, 0, "baseline", { reason: "baseline", actor: "system" }, now);
      }
    }
  }

  rows(skus: string[]): StockRow[] {
    const out: StockRow[] = [];
    for (const sku of skus) {
      const seq = this.seqOf(sku);
      for (const r of this.sql.exec<RawStock>("SELECT * FROM stock WHERE sku = ? ORDER BY location", sku).toArray()) {
        out.push(this.toRow(r, seq));
      }
    }
    return out;
  }

  /** Places all lines or none. Lines on one SKU are summed first, so a cart cannot oversell against itself. */
  hold(req: HoldRequest, now: number): { ok: true; items: HeldItem[] } | { ok: false; shortfalls: Shortfall[] } {
    this.expireDue(now);
    const live = this.sql
      .exec<RawHold>("SELECT * FROM holds WHERE reservation_id = ? AND state = 'held'", req.reservationId)
      .toArray();
    if (live.length) {
      // A retried saga (same reservation id): the hold is already in place; only its deadline moves.
      this.sql.exec("UPDATE holds SET expires_at = ? WHERE reservation_id = ? AND state = 'held'", req.expiresAt, req.reservationId);
      return { ok: true, items: live.map((h) => ({ sku: h.sku, quantity: h.quantity, location: h.location })) };
    }
    this.sql.exec("DELETE FROM holds WHERE reservation_id = ?", req.reservationId);

    const wanted = new Map<string, { sku: string; location?: string; quantity: number }>();
    for (const line of req.lines) {
      const key = `${line.sku}\u0000${line.location ?? ""}`;
      const prev = wanted.get(key);
      if (prev) prev.quantity += line.quantity;
      else wanted.set(key, { sku: line.sku, location: line.location, quantity: line.quantity });
    }

    const taken = new Map<string, number>();
    const takenAt = (sku: string, loc: string) => taken.get(`${sku}\u0000${loc}`) ?? 0;
    const picks: HeldItem[] = [];
    const shortfalls: Shortfall[] = [];
    const stockBySku = new Map<string, RawStock[]>();
    const stockOf = (sku: string) => {
      let rows = stockBySku.get(sku);
      if (!rows) {
        rows = this.sql.exec<RawStock>("SELECT * FROM stock WHERE sku = ?", sku).toArray();
        stockBySku.set(sku, rows);
      }
      return rows;
    };

    for (const w of wanted.values()) {
      const rows = stockOf(w.sku);
      const room = (r: RawStock) => availableOf(r) - takenAt(w.sku, r.location) - floorOf(r);
      let chosen: RawStock | undefined;
      if (w.location !== undefined) {
        const r = rows.find((x) => x.location === w.location);
        if (r && room(r) >= w.quantity) chosen = r;
      } else {
        for (const loc of req.preferredLocations) {
          const r = rows.find((x) => x.location === loc);
          if (r && room(r) >= w.quantity) {
            chosen = r;
            break;
          }
        }
        if (!chosen) {
          const best = [...rows].sort((a, b) => room(b) - room(a) || a.location.localeCompare(b.location))[0];
          if (best && room(best) >= w.quantity) chosen = best;
        }
      }
      if (!chosen) {
        const candidates = w.location !== undefined ? rows.filter((x) => x.location === w.location) : rows;
        const best = Math.max(0, ...candidates.map((r) => availableOf(r) - takenAt(w.sku, r.location)));
        shortfalls.push({ sku: w.sku, requested: w.quantity, available: best, ...(w.location !== undefined ? { location: w.location } : {}) });
        continue;
      }
      taken.set(`${w.sku}\u0000${chosen.location}`, takenAt(w.sku, chosen.location) + w.quantity);
      picks.push({ sku: w.sku, quantity: w.quantity, location: chosen.location });
    }
    if (shortfalls.length) return { ok: false, shortfalls };

    const merged = new Map<string, HeldItem>();
    for (const p of picks) {
      const key = `${p.sku}\u0000${p.location}`;
      const prev = merged.get(key);
      if (prev) prev.quantity += p.quantity;
      else merged.set(key, { ...p });
    }
    const items = [...merged.values()];
    for (const it of items) {
      this.apply(it.sku, it.location, 0, it.quantity, "reserve", { reservation_id: req.reservationId, actor: req.actor }, now);
      this.sql.exec(
        "INSERT INTO holds (reservation_id, sku, location, quantity, expires_at, state, created_at) VALUES (?, ?, ?, ?, ?, 'held', ?)",
        req.reservationId, it.sku, it.location, it.quantity, req.expiresAt, now,
      );
    }
    return { ok: true, items };
  }

  release(reservationId: string, actor: string, now: number): number {
    const live = this.sql.exec<RawHold>("SELECT * FROM holds WHERE reservation_id = ? AND state = 'held'", reservationId).toArray();
    for (const h of live) {
      this.apply(h.sku, h.location, 0, -h.quantity, "release", { reservation_id: reservationId, actor }, now);
    }
    this.sql.exec("UPDATE holds SET state = 'released' WHERE reservation_id = ? AND state = 'held'", reservationId);
    this.expireDue(now);
    return live.length;
  }

  /**
   * Makes the decrement permanent. The coordinator has already accepted the commit before the deadline, so a
   * hold still marked `held` is committed even if its deadline passed a moment ago. A hold that an expiry sweep
   * got to first is re-taken from free stock if there is enough; otherwise the shortfall is reported.
   */
  commit(reservationId: string, items: HeldItem[], actor: string, now: number): { ok: true } | { ok: false; shortfalls: Shortfall[] } {
    const holds = this.holdsOf(reservationId);
    const late: HeldItem[] = [];
    for (const it of items) {
      const h = holds.get(`${it.sku}\u0000${it.location}`);
      if (!h || (h.state !== "held" && h.state !== "committed")) late.push(it);
    }
    const shortfalls = this.shortfallsFor(late);
    if (shortfalls.length) return { ok: false, shortfalls };
    const meta = { reservation_id: reservationId, actor };
    for (const it of items) {
      const h = holds.get(`${it.sku}\u0000${it.location}`);
      if (h?.state === "committed") continue;
      if (h?.state === "held") this.apply(it.sku, it.location, -h.quantity, -h.quantity, "commit", meta, now);
      else this.apply(it.sku, it.location, -it.quantity, 0, "commit", { ...meta, reason: "late_commit" }, now);
      this.upsertHold(reservationId, it, now, "committed", now);
    }
    this.expireDue(now);
    return { ok: true };
  }

  /** Moves the deadline of every line; a line already expired is re-held if stock allows, else nothing changes. */
  extend(reservationId: string, items: HeldItem[], expiresAt: number, actor: string, now: number): { ok: true } | { ok: false; shortfalls: Shortfall[] } {
    const holds = this.holdsOf(reservationId);
    const lapsed = items.filter((it) => holds.get(`${it.sku}\u0000${it.location}`)?.state !== "held");
    const shortfalls = this.shortfallsFor(lapsed);
    if (shortfalls.length) return { ok: false, shortfalls };
    for (const it of lapsed) {
      this.apply(it.sku, it.location, 0, it.quantity, "reserve", { reservation_id: reservationId, actor, reason: "extend_rehold" }, now);
      this.upsertHold(reservationId, it, expiresAt, "held", now);
    }
    this.sql.exec("UPDATE holds SET expires_at = ? WHERE reservation_id = ? AND state = 'held'", expiresAt, reservationId);
    return { ok: true };
  }

  /** Releases every hold whose deadline has passed. Runs from the alarm and lazily before each operation. */
  expireDue(now: number): number {
    const due = this.sql
      .exec<RawHold>("SELECT * FROM holds WHERE state = 'held' AND expires_at <= ? ORDER BY expires_at LIMIT 500", now)
      .toArray();
    for (const h of due) {
      this.apply(h.sku, h.location, 0, -h.quantity, "expire", { reservation_id: h.reservation_id, actor: "system" }, now);
      this.sql.exec("UPDATE holds SET state = 'expired' WHERE reservation_id = ? AND sku = ? AND location = ?", h.reservation_id, h.sku, h.location);
    }
    return due.length;
  }

  nextExpiry(): number | null {
    const r = this.sql.exec<{ t: number | null }>("SELECT MIN(expires_at) AS t FROM holds WHERE state = 'held'").one();
    return r.t;
  }

  set(req: { sku: string; location: string; on_hand: number; safety_stock?: number; low_stock?: number; backorder_limit?: number | null; actor: string }, now: number): StockRow {
    this.ensureRow(req.sku, req.location, now);
    const cur = this.raw(req.sku, req.location)!;
    this.sql.exec(
      "UPDATE stock SET safety_stock = ?, low_stock = ?, backorder_limit = ? WHERE sku = ? AND location = ?",
      req.safety_stock ?? cur.safety_stock,
      req.low_stock ?? cur.low_stock,
      req.backorder_limit === undefined ? cur.backorder_limit : req.backorder_limit,
      req.sku,
      req.location,
    );
    return this.apply(req.sku, req.location, req.on_hand - cur.on_hand, 0, "set", { reason: "set", actor: req.actor }, now);
  }

  adjust(line: AdjustmentLine, actor: string, now: number): AdjustmentOutcome {
    const seen = this.sql.exec<{ outcome: string }>("SELECT outcome FROM adjustments WHERE event_id = ?", line.event_id).toArray()[0];
    if (seen) return { ...(JSON.parse(seen.outcome) as AdjustmentOutcome), status: "duplicate" };
    this.ensureRow(line.sku, line.location, now);
    const cur = this.raw(line.sku, line.location)!;
    let outcome: AdjustmentOutcome;
    if (cur.on_hand + line.delta < 0) {
      outcome = { event_id: line.event_id, sku: line.sku, location: line.location, status: "rejected", detail: `on_hand would go below zero (is ${cur.on_hand})`, on_hand: cur.on_hand };
    } else {
      const row = this.apply(line.sku, line.location, line.delta, 0, "adjust", { reason: line.reason, actor, event_id: line.event_id }, now);
      outcome = { event_id: line.event_id, sku: line.sku, location: line.location, status: "applied", on_hand: row.on_hand };
    }
    // Rejections are remembered too: a feed retrying the same event gets the same answer.
    this.sql.exec("INSERT INTO adjustments (event_id, outcome, applied_at) VALUES (?, ?, ?)", line.event_id, JSON.stringify(outcome), now);
    return outcome;
  }

  ledger(sku: string, after: number, limit: number): LedgerEntry[] {
    return this.sql
      .exec<LedgerEntry>("SELECT * FROM ledger WHERE sku = ? AND id > ? ORDER BY id LIMIT ?", sku, after, limit)
      .toArray();
  }

  // --- internals ---------------------------------------------------------------------------------------------

  private holdsOf(reservationId: string): Map<string, RawHold> {
    const map = new Map<string, RawHold>();
    for (const h of this.sql.exec<RawHold>("SELECT * FROM holds WHERE reservation_id = ?", reservationId).toArray()) {
      map.set(`${h.sku}\u0000${h.location}`, h);
    }
    return map;
  }

  private shortfallsFor(items: HeldItem[]): Shortfall[] {
    const need = new Map<string, HeldItem>();
    for (const it of items) {
      const key = `${it.sku}\u0000${it.location}`;
      const prev = need.get(key);
      need.set(key, prev ? { ...prev, quantity: prev.quantity + it.quantity } : { ...it });
    }
    const out: Shortfall[] = [];
    for (const it of need.values()) {
      const r = this.raw(it.sku, it.location);
      const room = r ? availableOf(r) - floorOf(r) : 0;
      if (room < it.quantity) out.push({ sku: it.sku, requested: it.quantity, available: Math.max(0, r ? availableOf(r) : 0), location: it.location });
    }
    return out;
  }

  private upsertHold(reservationId: string, it: HeldItem, expiresAt: number, state: string, now: number) {
    this.sql.exec(
      `INSERT INTO holds (reservation_id, sku, location, quantity, expires_at, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (reservation_id, sku, location) DO UPDATE SET state = excluded.state, quantity = excluded.quantity, expires_at = excluded.expires_at`,
      reservationId, it.sku, it.location, it.quantity, expiresAt, state, now,
    );
  }

  private ensureRow(sku: string, location: string, now: number) {
    this.sql.exec("INSERT OR IGNORE INTO stock (sku, location, updated_at) VALUES (?, ?, ?)", sku, location, now);
  }

  private raw(sku: string, location: string): RawStock | undefined {
    return this.sql.exec<RawStock>("SELECT * FROM stock WHERE sku = ? AND location = ?", sku, location).toArray()[0];
  }

  private seqOf(sku: string): number {
    return this.sql.exec<{ seq: number }>("SELECT seq FROM skus WHERE sku = ?", sku).toArray()[0]?.seq ?? 0;
  }

  private toRow(r: RawStock, seq: number): StockRow {
    return { ...r, available: availableOf(r), seq };
  }

  /** The single write path: counts, per-SKU seq, ledger row and outbox event move together. */
  private apply(sku: string, location: string, dOnHand: number, dReserved: number, kind: LedgerKind, meta: Meta, now: number): StockRow {
    const r = this.sql
      .exec<RawStock>(
        "UPDATE stock SET on_hand = on_hand + ?, reserved = reserved + ?, updated_at = ? WHERE sku = ? AND location = ? RETURNING *",
        dOnHand, dReserved, now, sku, location,
      )
      .one();
    const { seq } = this.sql.exec<{ seq: number }>("UPDATE skus SET seq = seq + 1 WHERE sku = ? RETURNING seq", sku).one();
    this.sql.exec(
      `INSERT INTO ledger (sku, location, seq, kind, delta_on_hand, delta_reserved, on_hand_after, reserved_after, reason, reservation_id, actor, event_id, at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      sku, location, seq, kind, dOnHand, dReserved, r.on_hand, r.reserved,
      meta.reason ?? null, meta.reservation_id ?? null, meta.actor ?? null, meta.event_id ?? null, now,
    );
    const row = this.toRow(r, seq);
    // A hot SKU's escrow sub-shard holds only a slice of its stock: publishing that slice would overwrite the
    // projection with a partial count, so sub-shards stay silent (see src/stock/escrow-store.ts).
    if (this.sql.exec("SELECT 1 FROM escrow_role WHERE sku = ? AND role = 'sub'", sku).toArray().length) return row;
    // Events are snapshots and consumers keep only the newest seq, so one pending event per (sku, location)
    // is enough. REPLACE gives the row a new id, so a flush already in flight never deletes the newer one.
    this.sql.exec(
      "INSERT OR REPLACE INTO outbox (dedupe_key, body, attempts, next_attempt_at, created_at) VALUES (?, ?, 0, ?, ?)",
      `stock:${sku}\u0000${location}`, JSON.stringify(stockChangedEvent(row, now)), now, now,
    );
    return row;
  }
}
