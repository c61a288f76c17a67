/**
 * Synchronous stock operations over a shard's SQLite. Nothing here awaits: the Durable Object calls these
 * inside `transactionSync`, so each check-and-write is atomic and rolls back whole on a throw.
 */
import { availabilityStatus } from "../lib/stock-status";
import { COORDINATED_ID } from "./routing";
import type {
  AdjustmentLine,
  HoldVerdict,
  AdjustmentOutcome,
  HeldItem,
  HoldLimit,
  HoldRequest,
  LedgerEntry,
  LedgerKind,
  Shortfall,
  StockRow,
} from "./types";

/** A stock row as stored: the RPC shape less what is derived on read. */
export type RawStock = Omit<StockRow, "available" | "seq">;
type RawHold = { reservation_id: string; sku: string; location: string; quantity: number; expires_at: number; state: string };
export type Meta = { reason?: string | null; reservation_id?: string | null; actor?: string | null; event_id?: string | null };

export type PendingSend = { id: string; target: string; items: { location: string; quantity: number }[] };

export type Baseline = { sku: string; location: string; on_hand: number; safety_stock: number; low_stock: number };

const availableOf = (r: RawStock) => r.on_hand - r.reserved - r.safety_stock;
const floorOf = (r: RawStock) => -(r.backorder_limit ?? 0);
/** A frozen location sells nothing here until the home has recovered its shortfall: units freed here go home first. */
const sellableRow = (r: RawStock, frozen: Set<string>): RawStock =>
  frozen.has(r.location) ? { ...r, on_hand: Math.min(r.on_hand, r.reserved + r.safety_stock) } : r;

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

  /**
   * The rows every reader sees. For a SKU split over escrow sub-shards (this object is its home), each location
   * sums this object's counts, every sub-shard's last known counts (`hot_parts`) and the units this object has
   * sent but not yet seen arrive: the physical count of the (SKU, location), whichever object holds it.
   */
  rows(skus: string[]): StockRow[] {
    return skus.flatMap((sku) => this.totalsOf(sku));
  }

  /** This object's own rows, never summed: what a sub-shard reports to its home. */
  localRows(sku: string): { location: string; on_hand: number; reserved: number }[] {
    return this.sql
      .exec<{ location: string; on_hand: number; reserved: number }>("SELECT location, on_hand, reserved FROM stock WHERE sku = ? ORDER BY location", sku)
      .toArray();
  }

  /** Sends of `sku` from this object that their receiver has not acknowledged. */
  pendingSends(sku: string): PendingSend[] {
    return this.sql
      .exec<{ transfer_id: string; target: string; items: string }>("SELECT transfer_id, target, items FROM escrow_sends WHERE sku = ? AND state = 'pending'", sku)
      .toArray()
      .map((r) => ({ id: r.transfer_id, target: r.target, items: JSON.parse(r.items) as { location: string; quantity: number }[] }));
  }

  /** Which of these transfer ids this object has applied (a receiver that applied but whose answer was lost). */
  received(ids: string[]): string[] {
    return ids.filter((id) => this.sql.exec("SELECT 1 FROM adjustments WHERE event_id >= ? AND event_id < ? LIMIT 1", `${id}:in:`, `${id}:in;`).toArray().length > 0);
  }

  /** Home shard: replaces what is known to be in transit from `shard` (units counted at their giver until they land). */
  setTransit(sku: string, shard: string, sends: PendingSend[]): boolean {
    const before = this.sql.exec<{ transfer_id: string }>("SELECT transfer_id FROM hot_transit WHERE sku = ? AND shard = ? ORDER BY transfer_id", sku, shard).toArray().map((r) => r.transfer_id);
    const after = sends.map((t) => t.id).sort();
    if (before.join("\n") === after.join("\n")) return false;
    this.sql.exec("DELETE FROM hot_transit WHERE sku = ? AND shard = ?", sku, shard);
    for (const t of sends) this.sql.exec("INSERT OR REPLACE INTO hot_transit (sku, transfer_id, shard, items) VALUES (?, ?, ?, ?)", sku, t.id, shard, JSON.stringify(t.items));
    return true;
  }

  /** `home` while this object's SKU is split over sub-shards (state hot, marking or folding), else undefined. */
  hotState(sku: string): { sub_shards: number; max_sub_shards: number; state: string } | undefined {
    return this.sql
      .exec<{ sub_shards: number; max_sub_shards: number; state: string }>("SELECT sub_shards, max_sub_shards, state FROM hot_home WHERE sku = ?", sku)
      .toArray()[0];
  }

  isSplit(sku: string): boolean {
    const h = this.hotState(sku);
    return h !== undefined && h.state !== "cold";
  }

  /** isSub and isSplit in one statement, for the write path every movement takes. */
  private roleOf(sku: string): { sub: boolean; split: boolean } {
    const r = this.sql
      .exec<{ sub: number; state: string | null }>(
        "SELECT EXISTS (SELECT 1 FROM escrow_role WHERE sku = ?1 AND role = 'sub') AS sub, (SELECT state FROM hot_home WHERE sku = ?1) AS state",
        sku,
      )
      .one();
    return { sub: r.sub === 1, split: r.state !== null && r.state !== "cold" };
  }

  isSub(sku: string): boolean {
    return this.sql.exec("SELECT 1 FROM escrow_role WHERE sku = ? AND role = 'sub'", sku).toArray().length > 0;
  }

  /**
   * Asks the alarm to report this sub-shard's counts of `sku` to its home (coalesced into one pending row). REPLACE,
   * like a snapshot: a report in flight carries the counts read when it left, and deleting its row afterwards must
   * not take a newer change's row with it, or the home would keep the older total until the next movement here.
   */
  queueReport(sku: string, now: number): void {
    this.sql.exec(
      "INSERT OR REPLACE INTO outbox (dedupe_key, body, attempts, next_attempt_at, created_at) VALUES (?, ?, 0, ?, ?)",
      `report:${sku}`, JSON.stringify({ type: "escrow.report", sku }), now, now,
    );
  }

  /** A movement of `sku` at `location` by the caller (admin writes on a split SKU), through the single write path. */
  applyMovement(sku: string, location: string, dOnHand: number, kind: LedgerKind, meta: Meta, now: number): StockRow {
    this.ensureRow(sku, location, now);
    return this.apply(sku, location, dOnHand, 0, kind, meta, now);
  }

  private totalsOf(sku: string): StockRow[] {
    const seq = this.seqOf(sku);
    const own = this.sql.exec<RawStock>("SELECT * FROM stock WHERE sku = ? ORDER BY location", sku).toArray();
    if (!this.isSplit(sku)) return own.map((r) => this.toRow(r, seq));
    const by = new Map<string, RawStock>(own.map((r) => [r.location, { ...r }]));
    const add = (loc: string, onHand: number, reserved: number) => {
      let r = by.get(loc);
      if (!r) {
        r = { sku, location: loc, on_hand: 0, reserved: 0, safety_stock: 0, low_stock: 5, backorder_limit: null };
        by.set(loc, r);
      }
      r.on_hand += onHand;
      r.reserved += reserved;
    };
    for (const t of this.sql.exec<{ transfer_id: string; items: string }>("SELECT transfer_id, items FROM hot_transit WHERE sku = ?", sku).toArray()) {
      // Arrived here since it was last seen in transit: already in this object's own rows.
      if (this.received([t.transfer_id]).length) continue;
      for (const it of JSON.parse(t.items) as { location: string; quantity: number }[]) add(it.location, it.quantity, 0);
    }
    for (const p of this.sql.exec<{ location: string; on_hand: number; reserved: number }>("SELECT location, on_hand, reserved FROM hot_parts WHERE sku = ?", sku)) {
      add(p.location, p.on_hand, p.reserved);
    }
    return [...by.values()].sort((a, b) => a.location.localeCompare(b.location)).map((r) => this.toRow(r, seq));
  }

  /** Stores the counts a sub-shard reported (newer seq only); returns whether anything was stored. */
  upsertPart(sku: string, shard: string, rows: { location: string; on_hand: number; reserved: number }[], seq: number): boolean {
    const cur = this.sql.exec<{ seq: number }>("SELECT MAX(seq) AS seq FROM hot_parts WHERE sku = ? AND shard = ?", sku, shard).one().seq;
    if (cur !== null && cur >= seq) return false;
    this.sql.exec("DELETE FROM hot_parts WHERE sku = ? AND shard = ?", sku, shard);
    for (const r of rows) {
      this.sql.exec("INSERT INTO hot_parts (sku, shard, location, on_hand, reserved, seq) VALUES (?, ?, ?, ?, ?, ?)", sku, shard, r.location, r.on_hand, r.reserved, seq);
    }
    return true;
  }

  /** Queues the summed snapshot of every location of `sku` (after sub-shard counts changed). */
  publishAll(sku: string, now: number): void {
    const { seq } = this.sql.exec<{ seq: number }>("UPDATE skus SET seq = seq + 1 WHERE sku = ? RETURNING seq", sku).one();
    for (const r of this.totalsOf(sku)) this.enqueueSnapshot({ ...r, seq }, now);
  }

  /** Bumps the per-SKU seq without a movement (a transfer settled), so reports and snapshots stay ordered. */
  bumpSeq(sku: string): void {
    this.sql.exec("UPDATE skus SET seq = seq + 1 WHERE sku = ?", sku);
  }

  /**
   * Places all lines or none. Lines on one SKU are summed first, so a cart cannot oversell against itself. With a
   * holder and a per-SKU cap, the holder's live holds here plus the request must stay within the cap.
   */
  hold(req: HoldRequest, now: number, opts: { noneDue?: boolean } = {}): { ok: true; items: HeldItem[] } | { ok: false; shortfalls: Shortfall[] } | HoldLimit {
    // `noneDue`: the caller knows no live hold has reached its deadline (its alarm, armed no later than the
    // earliest one, is still ahead), so the expiry scan would find nothing.
    if (!opts.noneDue) this.expireDue(now);
    const mine = this.sql.exec<RawHold>("SELECT * FROM holds WHERE reservation_id = ?", req.reservationId).toArray();
    const live = mine.filter((h) => h.state === "held");
    if (live.length) {
      this.claim(req.reservationId, req.attempt ?? 0);
      // A retried saga (same reservation id): the hold is already in place; only its deadline moves.
      this.sql.exec("UPDATE holds SET expires_at = ? WHERE reservation_id = ? AND state = 'held'", req.expiresAt, req.reservationId);
      return { ok: true, items: live.map((h) => ({ sku: h.sku, quantity: h.quantity, location: h.location })) };
    }
    // Rows of an earlier attempt that ended (released, expired) make way for the new ones; a new id has none.
    if (mine.length) this.sql.exec("DELETE FROM holds WHERE reservation_id = ?", req.reservationId);

    const wanted = new Map<string, { sku: string; location?: string; quantity: number }>();
    for (const line of req.lines) {
      const key = `${line.sku}\u0000${line.location ?? ""}`;
      const prev = wanted.get(key);
      if (prev) prev.quantity += line.quantity;
      else wanted.set(key, { sku: line.sku, location: line.location, quantity: line.quantity });
    }

    const overCap = this.overCap(req, wanted.values());
    if (overCap) return overCap;

    const taken = new Map<string, number>();
    const takenAt = (sku: string, loc: string) => taken.get(`${sku}\u0000${loc}`) ?? 0;
    const picks: HeldItem[] = [];
    const shortfalls: Shortfall[] = [];
    const stockBySku = new Map<string, RawStock[]>();
    const stockOf = (sku: string) => {
      let rows = stockBySku.get(sku);
      if (!rows) {
        // A location frozen by the home shard (its count is below what is held overall) sells nothing here
        // until the home has recovered the shortfall: units freed here go home first.
        const frozen = this.frozenLocations(sku);
        rows = this.sql
          .exec<RawStock>("SELECT * FROM stock WHERE sku = ?", sku)
          .toArray()
          .map((r) => sellableRow(r, frozen));
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
    this.recordOwner(req.reservationId, req.holder);
    // Only a placed hold records its attempt: a refused one leaves nothing behind to prune.
    this.claim(req.reservationId, req.attempt ?? 0);
    for (const it of items) {
      this.apply(it.sku, it.location, 0, it.quantity, "reserve", { reservation_id: req.reservationId, actor: req.actor }, now);
      this.sql.exec(
        "INSERT INTO holds (reservation_id, sku, location, quantity, expires_at, state, created_at) VALUES (?, ?, ?, ?, ?, 'held', ?)",
        req.reservationId, it.sku, it.location, it.quantity, req.expiresAt, now,
      );
    }
    return { ok: true, items };
  }

  /** Records the newest saga attempt that placed (or reused) the holds of a reservation here. */
  private claim(reservationId: string, attempt: number): void {
    this.sql.exec(
      "INSERT INTO hold_attempts (reservation_id, attempt) VALUES (?, ?) ON CONFLICT (reservation_id) DO UPDATE SET attempt = MAX(attempt, excluded.attempt)",
      reservationId, attempt,
    );
  }

  /**
   * Releases the live holds of a reservation. With `attempt`, a compensating release of a saga attempt that a
   * newer attempt has superseded is refused (returns -1): the newer attempt reported those holds as held.
   */
  release(reservationId: string, actor: string, now: number, attempt?: number): number {
    if (attempt !== undefined) {
      const owner = this.sql.exec<{ attempt: number }>("SELECT attempt FROM hold_attempts WHERE reservation_id = ?", reservationId).toArray()[0]?.attempt ?? 0;
      if (owner > attempt) return -1;
    }
    const live = this.sql.exec<RawHold>("SELECT * FROM holds WHERE reservation_id = ? AND state = 'held'", reservationId).toArray();
    for (const h of live) {
      this.apply(h.sku, h.location, 0, -h.quantity, "release", { reservation_id: reservationId, actor }, now);
    }
    this.sql.exec("UPDATE holds SET state = 'released' WHERE reservation_id = ? AND state = 'held'", reservationId);
    this.forgetOwner(reservationId);
    this.expireDue(now);
    return live.length;
  }

  /**
   * Makes the decrement permanent. The coordinator accepted the commit before the deadline, and shards never
   * let a hold lapse without asking it (`verdict`), so a hold here is normally still `held`. A hold found
   * lapsed anyway (a clock far off, a hand-made call) is still committed: the shopper has the promise. If
   * that takes the count below what is held, the shortfall is reported as oversold, never hidden.
   */
  commit(reservationId: string, items: HeldItem[], actor: string, now: number): { ok: true; oversold: number } {
    const holds = this.holdsOf(reservationId);
    const meta = { reservation_id: reservationId, actor };
    let oversold = 0;
    for (const it of items) {
      const h = holds.get(`${it.sku}\u0000${it.location}`);
      if (h?.state === "committed") continue;
      if (h?.state === "held") this.apply(it.sku, it.location, -h.quantity, -h.quantity, "commit", meta, now);
      else {
        this.ensureRow(it.sku, it.location, now);
        this.apply(it.sku, it.location, -it.quantity, 0, "commit", { ...meta, reason: "late_commit" }, now);
        oversold += this.reportOversold(it.sku, it.location, "late_commit", meta, now);
      }
      this.upsertHold(reservationId, it, now, "committed", now);
    }
    this.forgetOwner(reservationId);
    this.expireDue(now);
    return { ok: true, oversold };
  }

  /**
   * Moves the deadline of every line; a line already expired is re-held if a fresh hold of it would be placed,
   * else nothing changes. A re-hold takes units anew, so it passes the checks a hold does: the holder's per-SKU
   * cap (`guard`), and a location the home shard froze sells nothing here. It records its holder like a hold.
   */
  extend(
    reservationId: string,
    items: HeldItem[],
    expiresAt: number,
    actor: string,
    now: number,
    guard: { holder?: string; perSkuCap?: number } = {},
  ): { ok: true } | { ok: false; shortfalls: Shortfall[] } | HoldLimit {
    const holds = this.holdsOf(reservationId);
    const state = (it: HeldItem) => holds.get(`${it.sku}\u0000${it.location}`)?.state;
    // Released or committed lines are over: an extend never brings them back.
    if (items.some((it) => state(it) === "released" || state(it) === "committed")) return { ok: false, shortfalls: [] };
    const lapsed = items.filter((it) => state(it) !== "held");
    if (lapsed.length) {
      const overCap = this.overCap(guard, lapsed);
      if (overCap) return overCap;
      const shortfalls = this.shortfallsFor(lapsed);
      if (shortfalls.length) return { ok: false, shortfalls };
      this.recordOwner(reservationId, guard.holder);
    }
    for (const it of lapsed) {
      this.apply(it.sku, it.location, 0, it.quantity, "reserve", { reservation_id: reservationId, actor, reason: "extend_rehold" }, now);
      this.upsertHold(reservationId, it, expiresAt, "held", now);
    }
    this.sql.exec("UPDATE holds SET expires_at = ? WHERE reservation_id = ? AND state = 'held'", expiresAt, reservationId);
    return { ok: true };
  }

  /** Releases every hold whose deadline has passed. Runs from the alarm and lazily before each operation. */
  /**
   * Releases every due hold that needs nobody's say: holds of reservations without a coordinator (ids this API
   * never issued). A reservation's hold at its deadline waits for its coordinator's verdict (see `dueForVerdict`),
   * because the coordinator may have accepted a commit or an extend that this shard has not heard of yet.
   */
  expireDue(now: number): number {
    const due = this.sql
      .exec<RawHold>("SELECT * FROM holds WHERE state = 'held' AND expires_at <= ? ORDER BY expires_at LIMIT 500", now)
      .toArray()
      .filter((h) => !COORDINATED_ID.test(h.reservation_id));
    for (const h of due) this.expireHold(h, now);
    return due.length;
  }

  private expireHold(h: RawHold, now: number): void {
    this.apply(h.sku, h.location, 0, -h.quantity, "expire", { reservation_id: h.reservation_id, actor: "system" }, now);
    this.sql.exec("UPDATE holds SET state = 'expired' WHERE reservation_id = ? AND sku = ? AND location = ?", h.reservation_id, h.sku, h.location);
    this.forgetOwner(h.reservation_id);
  }

  /** Reservation ids whose holds here reached their deadline and need their coordinator's verdict. */
  dueForVerdict(now: number): string[] {
    return this.sql
      .exec<{ reservation_id: string }>("SELECT DISTINCT reservation_id FROM holds WHERE state = 'held' AND expires_at <= ? ORDER BY expires_at LIMIT 200", now)
      .toArray()
      .map((r) => r.reservation_id)
      .filter((id) => COORDINATED_ID.test(id));
  }

  /** Applies the coordinator's verdict on the due holds of one reservation; `selfFor(sku)` is this object's name for the SKU. */
  applyVerdict(reservationId: string, verdict: HoldVerdict, now: number, selfFor?: (sku: string) => string): void {
    const live = this.sql.exec<RawHold>("SELECT * FROM holds WHERE reservation_id = ? AND state = 'held'", reservationId).toArray();
    if (!live.length) return;
    if (verdict.kind === "commit") {
      const listed = (h: RawHold) => {
        if (!verdict.items || !selfFor) return true;
        const self = selfFor(h.sku);
        return verdict.items.some((i) => i.sku === h.sku && i.location === h.location && i.shard === self);
      };
      const mine = live.filter(listed);
      this.commit(reservationId, mine.map((h) => ({ sku: h.sku, quantity: h.quantity, location: h.location })), "system", now);
      // Held under the id, but the header has the line on another shard: a stray of an earlier saga attempt.
      for (const h of live) if (!mine.includes(h)) this.expireHold(h, now);
    } else if (verdict.kind === "keep" && verdict.until > now) {
      this.sql.exec("UPDATE holds SET expires_at = ? WHERE reservation_id = ? AND state = 'held'", verdict.until, reservationId);
    } else {
      for (const h of live) if (h.expires_at <= now || verdict.kind === "end") this.expireHold(h, now);
    }
  }

  /** Names the holder of a reservation's holds here, so its units count against the holder's per-SKU cap. */
  private recordOwner(reservationId: string, holder: string | undefined): void {
    if (holder) this.sql.exec("INSERT OR REPLACE INTO hold_owners (reservation_id, holder) VALUES (?, ?)", reservationId, holder);
  }

  /** Brings this reservation's live holds forward to `until` if later: at `until` they ask their coordinator again. */
  capDeadline(reservationId: string, until: number): void {
    this.sql.exec("UPDATE holds SET expires_at = ?1 WHERE reservation_id = ?2 AND state = 'held' AND expires_at > ?1", until, reservationId);
  }

  /** Due holds whose verdict could not be had (coordinator unreachable) are asked again after this delay. */
  postponeDue(reservationIds: string[], until: number): void {
    for (const id of reservationIds) this.sql.exec("UPDATE holds SET expires_at = MAX(expires_at, ?) WHERE reservation_id = ? AND state = 'held'", until, id);
  }

  nextExpiry(): number | null {
    const r = this.sql.exec<{ t: number | null }>("SELECT MIN(expires_at) AS t FROM holds WHERE state = 'held'").one();
    return r.t;
  }

  /** Applies safety stock, low-stock threshold and backorder limit of a set; the count is moved by the caller. */
  setLimits(req: { sku: string; location: string; safety_stock?: number; low_stock?: number; backorder_limit?: number | null }, now: number): RawStock {
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
    return this.raw(req.sku, req.location)!;
  }

  /** A recount of an ordinary SKU: on_hand becomes the physical count; holds stay, a shortfall is reported. */
  set(req: { sku: string; location: string; on_hand: number; safety_stock?: number; low_stock?: number; backorder_limit?: number | null; actor: string }, now: number): { row: StockRow; oversold: number } {
    const cur = this.setLimits(req, now);
    this.apply(req.sku, req.location, req.on_hand - cur.on_hand, 0, "set", { reason: "set", actor: req.actor }, now);
    const oversold = this.reportOversold(req.sku, req.location, "set", { actor: req.actor }, now);
    return { row: this.rowAt(req.sku, req.location), oversold };
  }

  /** The stored outcome of an applied adjustment, as a `duplicate` answer; undefined if never applied. */
  seenAdjustment(eventId: string): AdjustmentOutcome | undefined {
    const seen = this.sql.exec<{ outcome: string }>("SELECT outcome FROM adjustments WHERE event_id = ?", eventId).toArray()[0];
    return seen ? { ...(JSON.parse(seen.outcome) as AdjustmentOutcome), status: "duplicate" } : undefined;
  }

  rememberAdjustment(outcome: AdjustmentOutcome, now: number): void {
    this.sql.exec("INSERT OR IGNORE INTO adjustments (event_id, outcome, applied_at) VALUES (?, ?, ?)", outcome.event_id, JSON.stringify(outcome), now);
  }

  /**
   * A warehouse movement on an ordinary SKU. Only applied outcomes are remembered under the event id: a
   * rejection leaves the id free, so the feed's retry applies once its cause is gone. Taking on_hand below what
   * is held is applied (holds are promises) and reported as oversold.
   */
  adjust(line: AdjustmentLine, actor: string, now: number): AdjustmentOutcome {
    const seen = this.seenAdjustment(line.event_id);
    if (seen) return seen;
    this.ensureRow(line.sku, line.location, now);
    const cur = this.raw(line.sku, line.location)!;
    if (cur.on_hand + line.delta < 0) {
      return { event_id: line.event_id, sku: line.sku, location: line.location, status: "rejected", detail: `on_hand would go below zero (is ${cur.on_hand})`, on_hand: cur.on_hand };
    }
    const meta = { reason: line.reason, actor, event_id: line.event_id };
    const row = this.apply(line.sku, line.location, line.delta, 0, "adjust", meta, now);
    const oversold = this.reportOversold(line.sku, line.location, "adjust", meta, now);
    const outcome: AdjustmentOutcome = { event_id: line.event_id, sku: line.sku, location: line.location, status: "applied", on_hand: row.on_hand, ...(oversold ? { oversold } : {}) };
    this.rememberAdjustment(outcome, now);
    return outcome;
  }

  /**
   * A unit movement between objects of one SKU (escrow transfer, recall, recount debit), applied once per
   * `eventId`. No checks: the giving side took only free units, and a debit is a physical fact.
   */
  move(sku: string, location: string, delta: number, reason: string, eventId: string, actor: string, now: number): boolean {
    if (this.sql.exec("SELECT 1 FROM adjustments WHERE event_id = ?", eventId).toArray().length) return false;
    this.ensureRow(sku, location, now);
    this.apply(sku, location, delta, 0, "adjust", { reason, actor, event_id: eventId }, now);
    this.sql.exec("INSERT INTO adjustments (event_id, outcome, applied_at) VALUES (?, ?, ?)", eventId, JSON.stringify({ moved: delta }), now);
    return true;
  }

  /** The summed row of one (SKU, location), as every reader sees it. */
  rowAt(sku: string, location: string): StockRow {
    return this.totalsOf(sku).find((r) => r.location === location) ?? this.toRow(this.raw(sku, location)!, this.seqOf(sku));
  }

  /**
   * Held units beyond the physical count of (SKU, location) and its backorder limit (pre-orders are promises the
   * shop chose to make), summed over every object: when positive, it is written to the ledger (kind `oversold`,
   * zero deltas) and queued as a `stock.oversold` event. Returns N.
   */
  reportOversold(sku: string, location: string, cause: string, meta: Meta, now: number): number {
    // A sub-shard's slice says nothing about the SKU's physical count: its home reports shortfalls.
    if (this.isSub(sku)) return 0;
    const row = this.rowAt(sku, location);
    const units = Math.max(0, row.reserved - row.on_hand - (row.backorder_limit ?? 0));
    if (units === 0) return 0;
    const { seq } = this.sql.exec<{ seq: number }>("UPDATE skus SET seq = seq + 1 WHERE sku = ? RETURNING seq", sku).one();
    const own = this.raw(sku, location)!;
    this.sql.exec(
      `INSERT INTO ledger (sku, location, seq, kind, delta_on_hand, delta_reserved, on_hand_after, reserved_after, reason, reservation_id, actor, event_id, at)
       VALUES (?, ?, ?, 'oversold', 0, 0, ?, ?, ?, NULL, ?, ?, ?)`,
      sku, location, seq, own.on_hand, own.reserved, `oversold by ${units} (${cause})`, meta.actor ?? null, meta.event_id ?? null, now,
    );
    const body = { type: "stock.oversold", sku, location, units, on_hand: row.on_hand, reserved: row.reserved, cause, event_id: meta.event_id ?? null, seq, occurred_at: now };
    this.sql.exec(
      "INSERT OR IGNORE INTO outbox (dedupe_key, body, attempts, next_attempt_at, created_at) VALUES (?, ?, 0, ?, ?)",
      `oversold:${sku}\u0000${location}\u0000${seq}`, JSON.stringify(body), now, now,
    );
    return units;
  }

  /**
   * A ledger row for units on their way between two objects of a SKU; it changes no count here. The giver writes
   * +q (`sent`) in the step that takes the units out, the receiver −q (`received`) in the step that adds them, so
   * the SKU's merged ledger replays to the readers' totals at every instant, even while a send is pending. An
   * object's own counts are the sum of its other rows.
   */
  noteTransit(sku: string, location: string, quantity: number, reason: "sent" | "received", transferId: string, actor: string, now: number): void {
    this.ensureRow(sku, location, now);
    const own = this.raw(sku, location)!;
    const { seq } = this.sql.exec<{ seq: number }>("UPDATE skus SET seq = seq + 1 WHERE sku = ? RETURNING seq", sku).one();
    this.sql.exec(
      `INSERT INTO ledger (sku, location, seq, kind, delta_on_hand, delta_reserved, on_hand_after, reserved_after, reason, reservation_id, actor, event_id, at)
       VALUES (?, ?, ?, 'transit', ?, 0, ?, ?, ?, NULL, ?, ?, ?)`,
      sku, location, seq, reason === "sent" ? quantity : -quantity, own.on_hand, own.reserved, reason, actor, transferId, now,
    );
  }

  raw(sku: string, location: string): RawStock | undefined {
    return this.sql.exec<RawStock>("SELECT * FROM stock WHERE sku = ? AND location = ?", sku, location).toArray()[0];
  }

  ledger(sku: string, after: number, limit: number): LedgerEntry[] {
    return this.sql
      .exec<LedgerEntry>("SELECT * FROM ledger WHERE sku = ? AND id > ? ORDER BY id LIMIT ?", sku, after, limit)
      .toArray();
  }

  // --- internals ---------------------------------------------------------------------------------------------

  /** A reservation with no live hold left here no longer counts against its holder's cap. */
  private forgetOwner(reservationId: string): void {
    this.sql.exec(
      "DELETE FROM hold_owners WHERE reservation_id = ?1 AND NOT EXISTS (SELECT 1 FROM holds WHERE reservation_id = ?1 AND state = 'held')",
      reservationId,
    );
  }

  /** The first SKU on which the holder's live holds here plus `wanted` would pass the per-SKU cap. */
  /** Locations the home shard froze for `sku` (their count is below what is held overall). */
  private frozenLocations(sku: string): Set<string> {
    return new Set(this.sql.exec<{ location: string }>("SELECT location FROM escrow_frozen WHERE sku = ?", sku).toArray().map((f) => f.location));
  }

  private overCap(req: Pick<HoldRequest, "holder" | "perSkuCap">, wanted: Iterable<{ sku: string; quantity: number }>): HoldLimit | undefined {
    if (!req.holder || req.perSkuCap === undefined) return undefined;
    const perSku = new Map<string, number>();
    for (const w of wanted) perSku.set(w.sku, (perSku.get(w.sku) ?? 0) + w.quantity);
    for (const [sku, requested] of perSku) {
      const mine = this.sql
        .exec<{ held: number | null; first: number | null }>(
          // CROSS JOIN fixes the order: the holder's few reservations first (hold_owners_holder_idx), then their
          // holds by primary key. Left to choose, SQLite scanned every live hold of the shard (holds_live_idx),
          // which made each hold on a busy SKU cost as much as all of its live holds together.
          `SELECT SUM(h.quantity) AS held, MIN(h.expires_at) AS first FROM hold_owners o CROSS JOIN holds h ON h.reservation_id = o.reservation_id
           WHERE o.holder = ? AND h.sku = ? AND h.state = 'held'`,
          req.holder, sku,
        )
        .one();
      const held = mine.held ?? 0;
      if (held + requested > req.perSkuCap) {
        return { ok: false, error: "hold_limit", sku, limit: req.perSkuCap, held, requested, retry_at: mine.first ?? 0 };
      }
    }
    return undefined;
  }

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
      const found = this.raw(it.sku, it.location);
      const r = found && sellableRow(found, this.frozenLocations(it.sku));
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

  ensureRow(sku: string, location: string, now: number) {
    this.sql.exec("INSERT OR IGNORE INTO stock (sku, location, updated_at) VALUES (?, ?, ?)", sku, location, now);
  }

  seqOf(sku: string): number {
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
    const role = this.roleOf(sku);
    if (role.sub) {
      // A sub-shard holds a slice of the SKU: it reports its counts to the home shard (coalesced, sent by the
      // alarm), and the home publishes the sum. Publishing the slice would overwrite the projection.
      this.queueReport(sku, now);
      return row;
    }
    this.enqueueSnapshot(role.split ? { ...(this.totalsOf(sku).find((t) => t.location === location) ?? row), seq } : row, now);
    return row;
  }

  /**
   * Events are snapshots and consumers keep only the newest seq, so one pending event per (sku, location) is
   * enough. REPLACE gives the row a new id, so a flush already in flight never deletes the newer one.
   */
  private enqueueSnapshot(row: StockRow, now: number): void {
    this.sql.exec(
      "INSERT OR REPLACE INTO outbox (dedupe_key, body, attempts, next_attempt_at, created_at) VALUES (?, ?, 0, ?, ?)",
      `stock:${row.sku}\u0000${row.location}`, JSON.stringify(stockChangedEvent(row, now)), now, now,
    );
  }
}
