import { DurableObject } from "cloudflare:workers";
import { loadCatalogSkus } from "../src/stock/baseline";
import { ReservationStore } from "../src/stock/reservation-store";
import { SHARD_DDL } from "../src/stock/shard-schema";
import { StockStore } from "../src/stock/shard-store";
import { guardEnv } from "../src/lib/guarded-env";
import { EscrowStore, type EscrowItem } from "../src/stock/escrow-store";
import type {
  AdjustmentLine,
  AdjustmentOutcome,
  BeginCommit,
  BeginReservation,
  CommitResult,
  ExtendResult,
  HeaderChange,
  HeldItem,
  HoldRequest,
  HoldResult,
  LedgerEntry,
  ReservationHeader,
  ReservedItem,
  SetStockRequest,
  SetStockResult,
  StockReadResult,
  StoredOutcome,
  UnknownSkus,
} from "../src/stock/types";

/** A catalog miss is remembered briefly so a flood of bogus SKUs does not become a flood of D1 reads. */
const UNKNOWN_SKU_TTL_MS = 2_000;
const OUTBOX_BATCH = 100;
const OUTBOX_MAX_BACKOFF_MS = 60_000;
/**
 * Minimum gap between two flushes. Stock events are snapshots coalesced per (sku, location), so under a
 * burst a short gap turns hundreds of events into one per location, sparing the consumer, while keeping
 * propagation well under a second.
 */
const OUTBOX_FLUSH_GAP_MS = 100;

/**
 * Owns the stock of the SKUs whose stable hash falls in its shard (src/stock/routing.ts), and acts as the
 * coordinator holding the headers of the reservations whose idempotency scope hashes to it. Tables: see
 * src/stock/shard-schema.ts and docs/storage.md. Every state change is one synchronous `transactionSync`
 * step; the only awaits are the D1 catalog read before adopting a new SKU and the queue send in `alarm()`.
 * Business outcomes are returned as typed results, never thrown.
 */
export class StockShard extends DurableObject<Env> {
  private readonly stock: StockStore;
  private readonly headers: ReservationStore;
  private readonly escrow: EscrowStore;
  private readonly known = new Set<string>();
  private readonly unknownUntil = new Map<string, number>();
  /** Last alarm time we set; undefined = not known since start-up, so the next schedule always writes it. */
  private alarmAt: number | null | undefined;
  private lastFlushAt = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    // Its own awaits on bindings (D1 baseline reads, outbox sends) are bounded and breaker-guarded too.
    super(ctx, guardEnv(env));
    ctx.storage.sql.exec(SHARD_DDL);
    this.stock = new StockStore(ctx.storage.sql);
    this.headers = new ReservationStore(ctx.storage.sql);
    this.escrow = new EscrowStore(ctx.storage.sql, this.stock);
  }

  // --- stock -------------------------------------------------------------------------------------------------

  async hold(req: HoldRequest): Promise<HoldResult> {
    const unknown = await this.adopt(req.lines.map((l) => l.sku));
    if (unknown) return unknown;
    const res = this.atomically(() => this.stock.hold(req, Date.now()));
    return res.ok ? res : { ok: false, error: "insufficient", shortfalls: res.shortfalls };
  }

  async release(reservationId: string, actor: string): Promise<{ ok: true; released: number }> {
    const released = this.atomically(() => this.stock.release(reservationId, actor, Date.now()));
    return { ok: true, released };
  }

  async commit(reservationId: string, items: HeldItem[], actor: string): Promise<CommitResult> {
    const res = this.atomically(() => this.stock.commit(reservationId, items, actor, Date.now()));
    return res.ok ? { ok: true, items } : { ok: false, error: "insufficient", shortfalls: res.shortfalls };
  }

  async extend(reservationId: string, items: HeldItem[], expiresAt: number, actor: string): Promise<ExtendResult> {
    const res = this.atomically(() => this.stock.extend(reservationId, items, expiresAt, actor, Date.now()));
    return res.ok ? res : { ok: false, error: "insufficient", shortfalls: res.shortfalls };
  }

  async read(skus: string[]): Promise<StockReadResult> {
    const unknown = await this.adopt(skus);
    if (unknown) return unknown;
    // Expire first so a strong read never counts a hold past its deadline, even if the alarm is late.
    this.atomically(() => this.stock.expireDue(Date.now()));
    return { ok: true, rows: this.stock.rows(skus) };
  }

  async setStock(req: SetStockRequest): Promise<SetStockResult> {
    const unknown = await this.adopt([req.sku]);
    if (unknown) return unknown;
    const row = this.atomically(() => this.stock.set(req, Date.now()));
    return { ok: true, row };
  }

  async adjust(lines: AdjustmentLine[], actor: string): Promise<{ ok: true; results: AdjustmentOutcome[] } | UnknownSkus> {
    const unknown = await this.adopt(lines.map((l) => l.sku));
    if (unknown) return unknown;
    const results = this.atomically(() => lines.map((l) => this.stock.adjust(l, actor, Date.now())));
    return { ok: true, results };
  }

  async ledger(sku: string, after: number, limit: number): Promise<{ ok: true; items: LedgerEntry[] } | UnknownSkus> {
    const unknown = await this.adopt([sku]);
    if (unknown) return unknown;
    return { ok: true, items: this.stock.ledger(sku, after, limit) };
  }

  // --- hot-SKU escrow (issue 7: src/stock/escrow-store.ts, src/stock/hot.ts) ----------------------------------

  /** Moves up to `max` free units (all when null) out of this object, once per transfer id. */
  async escrowTake(sku: string, transferId: string, max: number | null, role: "home" | "sub", actor: string): Promise<{ ok: true; items: EscrowItem[] }> {
    // Only the home shard may adopt the D1 baseline; a sub-shard's stock arrives by transfer alone.
    if (role === "home") {
      const unknown = await this.adopt([sku]);
      if (unknown) return { ok: true, items: [] };
    } else if (!this.escrow.isSub(sku)) {
      return { ok: true, items: [] };
    }
    const items = this.atomically(() => this.escrow.take(sku, transferId, max, actor, Date.now()));
    return { ok: true, items };
  }

  /** Applies transfers (idempotent per id), then optionally places `hold` in the same atomic step. */
  async escrowGive(sku: string, transfers: { id: string; items: EscrowItem[] }[], role: "home" | "sub", actor: string, hold?: HoldRequest): Promise<HoldResult> {
    if (role === "home") {
      const unknown = await this.adopt([sku]);
      if (unknown) return unknown;
    }
    const res = this.atomically((): HoldResult => {
      const now = Date.now();
      for (const t of transfers) this.escrow.give(sku, t.id, t.items, role, actor, now);
      if (!hold) return { ok: true, items: [] };
      const r = this.stock.hold(hold, now);
      return r.ok ? r : { ok: false, error: "insufficient", shortfalls: r.shortfalls };
    });
    if (role === "sub") this.known.add(sku);
    return res;
  }

  async escrowTotals(sku: string) {
    return this.escrow.totals(sku);
  }

  // --- reservation headers (this shard as coordinator) -------------------------------------------------------

  async beginReservation(req: { scopeKey: string; owner: string; bodyHash: string; candidateId: string; currency: string; ttlMs: number }): Promise<BeginReservation> {
    return this.ctx.storage.transactionSync(() => this.headers.begin(req, Date.now()));
  }

  async finishReservation(id: string, result: { status: "held" | "failed"; items: ReservedItem[]; outcome: StoredOutcome }): Promise<void> {
    this.ctx.storage.transactionSync(() => this.headers.finish(id, result, Date.now()));
  }

  async abandonReservation(id: string): Promise<void> {
    this.ctx.storage.transactionSync(() => this.headers.abandon(id, Date.now()));
  }

  async getReservation(id: string, owner: string): Promise<ReservationHeader | undefined> {
    return this.headers.get(id, owner);
  }

  async beginCommit(id: string, owner: string): Promise<BeginCommit> {
    return this.ctx.storage.transactionSync(() => this.headers.beginCommit(id, owner, Date.now()));
  }

  /** Marks committed and queues `reservation.committed` in the same step, so the event exists iff the commit does. */
  async finishCommit(id: string): Promise<ReservationHeader | undefined> {
    const header = this.atomically(() => {
      const now = Date.now();
      const done = this.headers.finishCommit(id, now);
      if (done?.first) {
        const body = {
          type: "reservation.committed",
          id,
          items: done.header.items.map((i) => ({ sku: i.sku, quantity: i.quantity, location: i.location, unit_price: i.unit_price, currency: i.currency })),
          occurred_at: now,
        };
        this.ctx.storage.sql.exec(
          "INSERT OR IGNORE INTO outbox (dedupe_key, body, attempts, next_attempt_at, created_at) VALUES (?, ?, 0, ?, ?)",
          `reservation:${id}`, JSON.stringify(body), now, now,
        );
      }
      return done?.header;
    });
    return header;
  }

  async releaseReservation(id: string, owner: string): Promise<HeaderChange> {
    return this.ctx.storage.transactionSync(() => this.headers.release(id, owner, Date.now()));
  }

  async extendReservation(id: string, ttlMs: number, owner: string): Promise<HeaderChange> {
    return this.ctx.storage.transactionSync(() => this.headers.extend(id, ttlMs, owner, Date.now()));
  }

  async expireReservation(id: string): Promise<void> {
    this.ctx.storage.transactionSync(() => this.headers.markExpired(id, Date.now()));
  }

  // --- benchmark baseline ------------------------------------------------------------------------------------

  /** The cheapest real round trip: one RPC and one durable SQLite write. Used by bench/reserve as the unit. */
  async benchIncrement(): Promise<number> {
    return this.ctx.storage.sql
      .exec<{ value: number }>("INSERT INTO counters (name, value) VALUES ('bench', 1) ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value")
      .one().value;
  }

  // --- alarm: hold expiry + outbox flush ---------------------------------------------------------------------

  override async alarm(): Promise<void> {
    this.alarmAt = undefined;
    this.atomically(() => {
      while (this.stock.expireDue(Date.now()) > 0) {
        // expireDue works in slices; loop until nothing is due.
      }
    });
    for (let i = 0; i < 20; i++) {
      const more = await this.flushOutbox();
      if (!more) break;
    }
    this.scheduleAlarm();
  }

  /** Sends one batch; true when it sent a full batch and more may be waiting. Failures back off, never drop. */
  private async flushOutbox(): Promise<boolean> {
    const rows = this.ctx.storage.sql
      .exec<{ id: number; body: string; attempts: number }>("SELECT id, body, attempts FROM outbox ORDER BY id LIMIT ?", OUTBOX_BATCH)
      .toArray();
    if (!rows.length) return false;
    this.lastFlushAt = Date.now();
    try {
      await this.env.EVENTS.sendBatch(rows.map((r) => ({ body: JSON.parse(r.body) as unknown, contentType: "json" as const })));
    } catch (err) {
      const now = Date.now();
      this.ctx.storage.transactionSync(() => {
        for (const r of rows) {
          const delay = Math.min(OUTBOX_MAX_BACKOFF_MS, 500 * 2 ** Math.min(r.attempts, 10));
          this.ctx.storage.sql.exec("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?", now + delay, r.id);
        }
      });
      console.warn(JSON.stringify({ level: "warn", message: "stock outbox flush failed; will retry", rows: rows.length, error: String(err) }));
      return false;
    }
    // Only the rows that were sent: a row replaced meanwhile has a new id and stays for the next flush.
    const ids = rows.map((r) => r.id);
    this.ctx.storage.sql.exec(`DELETE FROM outbox WHERE id IN (${ids.map(() => "?").join(",")})`, ...ids);
    return rows.length === OUTBOX_BATCH;
  }

  /** One alarm serves both deadlines: the earliest live hold and the earliest pending outbox send. */
  private scheduleAlarm(): void {
    const hold = this.stock.nextExpiry();
    const pending = this.ctx.storage.sql.exec<{ t: number | null }>("SELECT MIN(next_attempt_at) AS t FROM outbox").one().t;
    const ob = pending === null ? null : Math.max(pending, this.lastFlushAt + OUTBOX_FLUSH_GAP_MS);
    const candidates = [hold, ob].filter((t): t is number => t !== null);
    const next = candidates.length ? Math.min(...candidates) : null;
    if (next === this.alarmAt) return;
    if (next === null) void this.ctx.storage.deleteAlarm();
    else void this.ctx.storage.setAlarm(next);
    this.alarmAt = next;
  }

  /** Runs a synchronous mutation as one transaction, then re-arms the alarm for whatever it changed. */
  private atomically<T>(fn: () => T): T {
    const out = this.ctx.storage.transactionSync(fn);
    this.scheduleAlarm();
    return out;
  }

  /** Adopts D1 baselines for SKUs this shard has never seen; returns the SKUs that are not in the catalog. */
  private async adopt(skus: string[]): Promise<UnknownSkus | undefined> {
    let missing = [...new Set(skus)].filter((s) => !this.known.has(s));
    if (!missing.length) return undefined;
    for (const s of this.stock.knownSkus(missing)) this.known.add(s);
    missing = missing.filter((s) => !this.known.has(s));
    if (!missing.length) return undefined;
    const now = Date.now();
    const unknown = missing.filter((s) => (this.unknownUntil.get(s) ?? 0) > now);
    const toLoad = missing.filter((s) => !unknown.includes(s));
    if (toLoad.length) {
      const { found, baselines } = await loadCatalogSkus(this.env.DB, toLoad);
      const foundSet = new Set(found);
      this.atomically(() => this.stock.adopt(found, baselines, Date.now()));
      for (const s of toLoad) {
        if (foundSet.has(s)) this.known.add(s);
        else {
          unknown.push(s);
          this.unknownUntil.set(s, now + UNKNOWN_SKU_TTL_MS);
        }
      }
    }
    return unknown.length ? { ok: false, error: "unknown_skus", skus: unknown } : undefined;
  }
}
