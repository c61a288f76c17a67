import { DurableObject } from "cloudflare:workers";
import { loadCatalogSkusAcross } from "../src/stock/baseline";
import { allCatalogDbs } from "../src/db/partitions";
import { ReservationStore } from "../src/stock/reservation-store";
import { runSaga, type LocalHeaders, type SagaRequest, type SagaResult } from "../src/stock/saga";
import { ShopperTally, type HoldAdmission } from "../src/stock/shopper-tally";
import { admitRemote, tallyShardName, tallyShardOf, updateRemote } from "../src/stock/tally-link";
import { SHARD_DDL } from "../src/stock/shard-schema";
import { StockStore } from "../src/stock/shard-store";
import { guardEnv } from "../src/lib/guarded-env";
import { now as clockNow } from "../src/lib/clock";
import { EscrowStore, SEND_SWEEP_MS, type EscrowItem, type SendRow } from "../src/stock/escrow-store";
import { splitItems } from "../src/stock/split";
import { isSizeRefusal, packOutboxBatches } from "../src/stock/outbox-batches";
import { storeUnsendable } from "../src/events/dead-letters";
import { coordinatorOfReservation, groupByShard, holderOfReservation, hotSubShardName, shardNameForSku } from "../src/stock/routing";
import { holdCaps } from "../src/stock/flash-gate";
import type { Meta, PendingSend } from "../src/stock/shard-store";
import { BoundedMap } from "../src/lib/isolate-memory";
import { applyRetention, retentionHoldCandidates, retentionPolicy } from "../src/stock/retention";
import type {
  AdjustmentLine,
  AdjustmentOutcome,
  BeginReservation,
  CommitOutcome,
  CommitResult,
  ExtendOutcome,
  HoldVerdict,
  ExtendResult,
  HeaderChange,
  HeldItem,
  HoldRequest,
  HoldResult,
  LedgerEntry,
  LiveHold,
  ReservationHeader,
  StockRow,
  ReservedItem,
  SetStockRequest,
  SetStockResult,
  StaleSeq,
  StockReadResult,
  StoredOutcome,
  UnknownSkus,
} from "../src/stock/types";

function holdResult(r: ReturnType<StockStore["hold"]>): HoldResult {
  if (r.ok || "error" in r) return r;
  return { ok: false, error: "insufficient", shortfalls: r.shortfalls };
}

type OutboxRow = { id: number; dedupe_key: string | null; body: string; attempts: number };

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
/** While a hot SKU's location is frozen (home owes units), the home alarm retries the pay-back this often. */
const FROZEN_RETRY_MS = 1_000;
/** A shard that could not reach a reservation's coordinator asks again after this long, holding meanwhile. */
const VERDICT_RETRY_MS = 2_000;

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
  private readonly tally: ShopperTally;
  // Bounded: hostile reservations name any number of made-up SKUs; an evicted entry is only looked up again.
  private readonly known = new BoundedMap<true>("stock-shard.known-skus", { maxBytes: 512 * 1024, sizeOf: () => 8 });
  private readonly unknownUntil = new BoundedMap<number>("stock-shard.unknown-skus", { maxBytes: 64 * 1024, sizeOf: () => 8 });
  /** Last alarm time we set; undefined = not known since start-up, so the next schedule always writes it. */
  private alarmAt: number | null | undefined;
  private lastFlushAt = 0;
  private readonly serialQueue = new Map<string, Promise<unknown>>();
  private flushing = false;

  constructor(ctx: DurableObjectState, env: Env) {
    // Its own awaits on bindings (D1 baseline reads, outbox sends) are bounded and breaker-guarded too.
    super(ctx, guardEnv(env, "checkout"));
    ctx.storage.sql.exec(SHARD_DDL);
    this.stock = new StockStore(ctx.storage.sql);
    this.headers = new ReservationStore(ctx.storage.sql);
    this.escrow = new EscrowStore(ctx.storage.sql, this.stock);
    this.tally = new ShopperTally(ctx.storage.sql);
  }

  // --- stock -------------------------------------------------------------------------------------------------

  async hold(req: HoldRequest): Promise<HoldResult> {
    const unknown = await this.adopt(req.lines.map((l) => l.sku));
    if (unknown) return unknown;
    const now = clockNow();
    // Nothing this hold writes is due before its deadlines or the next outbox flush: an alarm armed no later
    // than those stays as it is, and the alarm's five look-ups are skipped.
    const earliest = Math.min(req.expiresAt, Math.max(now, this.lastFlushAt + OUTBOX_FLUSH_GAP_MS));
    return this.atomically(() => holdResult(this.stock.hold(req, now, { noneDue: this.alarmAhead(now) })), earliest);
  }

  /** `released` is -1 when `attempt` is older than the saga attempt that owns the holds: nothing was released. */
  async release(reservationId: string, actor: string, attempt?: number): Promise<{ ok: true; released: number }> {
    const released = this.atomically(() => this.stock.release(reservationId, actor, clockNow(), attempt));
    return { ok: true, released };
  }

  /** Idempotent; never refuses a line of a commit the coordinator accepted (a shortfall is reported as oversold). */
  async commit(reservationId: string, items: HeldItem[], actor: string): Promise<CommitResult> {
    this.atomically(() => this.stock.commit(reservationId, items, actor, clockNow()));
    return { ok: true, items };
  }

  /**
   * `guard`: the holder and its per-SKU cap, which a lapsed line re-held here must respect like a fresh hold. A
   * re-hold over the cap is refused as a shortfall: `available` is what the holder may still take of that SKU.
   */
  async extend(reservationId: string, items: HeldItem[], expiresAt: number, actor: string, guard?: { holder?: string; perSkuCap?: number }): Promise<ExtendResult> {
    const res = this.atomically(() => this.stock.extend(reservationId, items, expiresAt, actor, clockNow(), guard));
    if (res.ok) return res;
    if ("shortfalls" in res) return { ok: false, error: "insufficient", shortfalls: res.shortfalls };
    return { ok: false, error: "insufficient", shortfalls: [{ sku: res.sku, requested: res.requested, available: Math.max(0, res.limit - res.held) }] };
  }

  async read(skus: string[]): Promise<StockReadResult> {
    const unknown = await this.adopt(skus);
    if (unknown) return unknown;
    // Expire first so a strong read never counts a hold past its deadline, even if the alarm is late.
    this.atomically(() => this.stock.expireDue(clockNow()));
    await Promise.all(skus.filter((s) => this.stock.isSplit(s)).map((s) => this.refreshParts(s)));
    return { ok: true, rows: this.stock.rows(skus) };
  }

  async setStock(req: SetStockRequest): Promise<SetStockResult> {
    const unknown = await this.adopt([req.sku]);
    if (unknown) return unknown;
    // If-Match: checked with no await before the write starts, so nothing can change the SKU in between (a split
    // SKU's movement checks again where it starts, once the movements queued ahead of it are done).
    if (req.expected_seq !== undefined && this.stock.seqOf(req.sku) !== req.expected_seq) return this.stale(req.sku);
    if (!this.stock.isSplit(req.sku)) {
      const { row, oversold } = this.atomically(() => this.stock.set(req, clockNow()));
      return { ok: true, row, oversold };
    }
    const res = await this.splitMovement({ sku: req.sku, location: req.location, set: req.on_hand, limits: req, kind: "set", meta: { reason: "set", actor: req.actor }, expectedSeq: req.expected_seq });
    return "error" in res ? res : { ok: true, row: res.row, oversold: res.oversold };
  }

  private stale(sku: string): StaleSeq {
    return { ok: false, error: "stale", seq: this.stock.seqOf(sku), rows: this.stock.rows([sku]) };
  }

  async adjust(lines: AdjustmentLine[], actor: string): Promise<{ ok: true; results: AdjustmentOutcome[] } | UnknownSkus> {
    const unknown = await this.adopt(lines.map((l) => l.sku));
    if (unknown) return unknown;
    const results: AdjustmentOutcome[] = [];
    // In request order: a feed's lines on one SKU may depend on each other.
    for (const l of lines) {
      const outcome = await this.applyAdjustment(l, actor);
      if (!("error" in outcome)) results.push(outcome); // never stale: no seq was expected
    }
    return { ok: true, results };
  }

  /**
   * One movement applied only while the SKU is still at `expectedSeq` (If-Match, as for a set). A repeat of an
   * applied event id is still answered `duplicate` (the first apply moved the seq, so that check comes first).
   */
  async adjustIfMatch(line: AdjustmentLine, actor: string, expectedSeq: number): Promise<{ ok: true; outcome: AdjustmentOutcome } | StaleSeq | UnknownSkus> {
    const unknown = await this.adopt([line.sku]);
    if (unknown) return unknown;
    const seen = this.stock.seenAdjustment(line.event_id);
    if (seen) return { ok: true, outcome: seen };
    // Checked with no await before the movement starts, so nothing can change the SKU in between (a split SKU's
    // movement checks again where it starts, as for a set).
    if (this.stock.seqOf(line.sku) !== expectedSeq) return this.stale(line.sku);
    const outcome = await this.applyAdjustment(line, actor, expectedSeq);
    return "error" in outcome ? outcome : { ok: true, outcome };
  }

  private async applyAdjustment(l: AdjustmentLine, actor: string, expectedSeq?: number): Promise<AdjustmentOutcome | StaleSeq> {
    if (!this.stock.isSplit(l.sku)) return this.atomically(() => this.stock.adjust(l, actor, clockNow()));
    const res = await this.splitMovement({ sku: l.sku, location: l.location, delta: l.delta, kind: "adjust", meta: { reason: l.reason, actor, event_id: l.event_id }, expectedSeq });
    return "error" in res ? res : res.outcome;
  }

  /** With `adopt: false` (a sub-shard's part of a merged ledger) an unknown SKU is simply an empty ledger. */
  async ledger(sku: string, after: number, limit: number, adopt = true): Promise<{ ok: true; items: LedgerEntry[] } | UnknownSkus> {
    if (adopt) {
      const unknown = await this.adopt([sku]);
      if (unknown) return unknown;
    }
    return { ok: true, items: this.stock.ledger(sku, after, limit) };
  }

  /** Home shard: the objects whose ledgers together make the SKU's ledger (this one, then every sub-shard ever used). */
  async ledgerShards(sku: string): Promise<string[]> {
    const h = this.stock.hotState(sku);
    return [shardNameForSku(this.env, sku), ...Array.from({ length: h?.max_sub_shards ?? 0 }, (_, i) => hotSubShardName(sku, i))];
  }

  /** Live holds on `sku` in this object, soonest deadline first, with the storefront key that holds them. */
  async liveHolds(sku: string, limit: number): Promise<LiveHold[]> {
    this.atomically(() => this.stock.expireDue(Date.now()));
    return this.ctx.storage.sql
      .exec<LiveHold>(
        `SELECT h.reservation_id, h.sku, h.location, h.quantity, h.expires_at, h.created_at, o.holder FROM holds h
         LEFT JOIN hold_owners o ON o.reservation_id = h.reservation_id
         WHERE h.sku = ? AND h.state = 'held' ORDER BY h.expires_at LIMIT ?`,
        sku,
        limit,
      )
      .toArray();
  }

  /** Movements of `sku` in this object, newest first, older than row `before` (0: from the newest). */
  async ledgerTail(sku: string, limit: number, before = 0): Promise<LedgerEntry[]> {
    return this.ctx.storage.sql
      .exec<LedgerEntry>("SELECT * FROM ledger WHERE sku = ?1 AND (?2 = 0 OR id < ?2) ORDER BY id DESC LIMIT ?3", sku, before, limit)
      .toArray();
  }

  // --- hot-SKU escrow (src/stock/escrow-store.ts, src/stock/hot.ts) --------------------------------------------

  /**
   * Home shard: splits the SKU's free stock into `k` quotas sent to its sub-shards. The take and the K pending
   * sends are one atomic step; a retry with the same transfer id re-delivers the same sends, never takes more.
   */
  async hotSplit(sku: string, transferId: string, k: number, actor: string): Promise<{ ok: true; pending: number } | UnknownSkus> {
    const unknown = await this.adopt([sku]);
    if (unknown) return unknown;
    const sends = this.atomically(() => {
      const now = clockNow();
      this.ctx.storage.sql.exec(
        `INSERT INTO hot_home (sku, sub_shards, max_sub_shards, state, updated_at) VALUES (?, ?, ?, 'hot', ?)
         ON CONFLICT (sku) DO UPDATE SET sub_shards = excluded.sub_shards, max_sub_shards = MAX(max_sub_shards, excluded.sub_shards), state = 'hot', updated_at = excluded.updated_at`,
        sku, k, k, now,
      );
      const existing = Array.from({ length: k }, (_, i) => this.escrow.send(`${transferId}:${i}`));
      if (existing.every((x) => x !== undefined)) return existing.filter((x) => x.state === "pending");
      this.stock.expireDue(now);
      const free = this.escrow.free(sku);
      for (const f of free) this.stock.move(sku, f.location, -f.quantity, "escrow_out", `${transferId}:out:${f.location}`, actor, now);
      // Every sub-shard gets a send, even an empty one: it registers the sub-shard before any reservation reaches it.
      return splitItems(free, k).map((items, i) => this.escrow.record(`${transferId}:${i}`, sku, hotSubShardName(sku, i), "sub", items, "escrow_in", actor, now));
    });
    const delivered = await Promise.all(sends.map((s) => this.deliver(s, actor)));
    return { ok: true, pending: delivered.filter((d) => !d.delivered).length };
  }

  /**
   * Home shard: folds every sub-shard's free units back here. Each sub-shard first settles its own pending sends;
   * the SKU stops being split only once every sub-shard is empty and nothing is in transit anywhere.
   *
   * `foldId` names this fold round (the marking's split transfer id and the round number): its transfers are
   * deduplicated by id in this object, which is home to many SKUs and sees the same SKU marked again later, so
   * the id must never repeat across SKUs or markings (a repeated id was taken as already applied: units lost).
   */
  async hotFold(sku: string, foldId: string, actor: string): Promise<{ ok: true; done: boolean; in_transit: number }> {
    const h = this.stock.hotState(sku);
    if (!h || h.state === "cold") return { ok: true, done: true, in_transit: 0 };
    return this.serial(sku, async () => {
      this.atomically(() => this.ctx.storage.sql.exec("UPDATE hot_home SET state = 'folding', updated_at = ? WHERE sku = ?", clockNow(), sku));
      await this.settleSends(sku);
      const home = shardNameForSku(this.env, sku);
      const answers = await Promise.all(
        Array.from({ length: h.max_sub_shards }, (_, i) =>
          this.env.STOCK.getByName(hotSubShardName(sku, i))
            .escrowSend({ sku, transferId: `fold:${foldId}:${i}`, target: home, targetRole: "home", max: null, role: "sub", actor, settleFirst: true })
            .catch(() => undefined),
        ),
      );
      await this.refreshParts(sku);
      const parts = this.ctx.storage.sql
        .exec<{ n: number }>("SELECT COUNT(*) AS n FROM hot_parts WHERE sku = ? AND (on_hand != 0 OR reserved != 0)", sku)
        .one().n;
      const inTransit = answers.filter((a) => !a || !a.delivered).length + this.escrow.pending({ sku }).length;
      const done = parts === 0 && inTransit === 0;
      if (done) {
        this.atomically(() => {
          this.ctx.storage.sql.exec("UPDATE hot_home SET state = 'cold', updated_at = ? WHERE sku = ?", clockNow(), sku);
          this.ctx.storage.sql.exec("DELETE FROM hot_parts WHERE sku = ?", sku);
          this.ctx.storage.sql.exec("DELETE FROM hot_transit WHERE sku = ?", sku);
        });
      }
      return { ok: true as const, done, in_transit: inTransit };
    });
  }

  /**
   * Giving side of a transfer: takes up to `max` free units (of one location if given), records them as a
   * pending send and delivers them to `target`, optionally placing `hold` there in the same atomic step as
   * their arrival. Undelivered sends stay pending and are re-delivered by this object's alarm.
   */
  async escrowSend(req: {
    sku: string;
    transferId: string;
    target: string;
    targetRole: "home" | "sub";
    max: number | null;
    location?: string;
    role: "home" | "sub";
    actor: string;
    hold?: HoldRequest;
    settleFirst?: boolean;
  }): Promise<{ ok: true; items: EscrowItem[]; delivered: boolean; hold?: HoldResult }> {
    if (req.role === "home") {
      const unknown = await this.adopt([req.sku]);
      if (unknown) return { ok: true, items: [], delivered: true };
    } else if (!this.stock.isSub(req.sku)) {
      return { ok: true, items: [], delivered: true };
    }
    if (req.settleFirst) await this.settleSends(req.sku);
    const send = this.atomically(() => this.escrow.take(req.sku, req.transferId, req.target, req.targetRole, req.max, req.location, req.actor, clockNow()));
    if (!send.items.length && !req.hold) {
      this.atomically(() => this.escrow.settle(send.transfer_id, send.sku, clockNow()));
      return { ok: true, items: [], delivered: true };
    }
    const res = await this.deliver(send, req.actor, req.hold);
    return { ok: true, items: send.items, delivered: res.delivered, ...(res.hold ? { hold: res.hold } : {}) };
  }

  /** Receiving side: applies transfers (idempotent per id), then optionally places `hold` in the same atomic step. */
  async escrowGive(
    sku: string,
    transfers: { id: string; items: EscrowItem[]; reason?: string }[],
    role: "home" | "sub",
    actor: string,
    hold?: HoldRequest,
    self?: string,
  ): Promise<HoldResult> {
    if (role === "home") {
      const unknown = await this.adopt([sku]);
      if (unknown) return unknown;
    }
    const home = shardNameForSku(this.env, sku);
    const res = this.atomically((): HoldResult => {
      const now = clockNow();
      for (const t of transfers) this.escrow.give(sku, t.id, t.items, t.reason ?? "escrow_in", role, self ?? "", home, actor, now);
      if (!hold) return { ok: true, items: [] };
      return holdResult(this.stock.hold(hold, now));
    });
    if (role === "sub") this.known.set(sku, true);
    return res;
  }

  /** A sub-shard's own counts of `sku` (pending sends included) with its per-SKU seq, for the home's sums. */
  async escrowCounts(sku: string): Promise<{ ok: true; rows: { location: string; on_hand: number; reserved: number }[]; pending: PendingSend[]; seq: number }> {
    this.atomically(() => this.stock.expireDue(clockNow()));
    return { ok: true, rows: this.stock.localRows(sku), pending: this.stock.pendingSends(sku), seq: this.stock.seqOf(sku) };
  }

  /** The transfer ids among `ids` that this object has applied. */
  async escrowReceived(ids: string[]): Promise<string[]> {
    return this.stock.received(ids);
  }

  /** Home shard: a sub-shard's counts changed; store them and publish the new sums. */
  async escrowReport(sku: string, shard: string, rows: { location: string; on_hand: number; reserved: number }[], seq: number, pending: PendingSend[] = []): Promise<void> {
    const changed = this.atomically(() => {
      if (!this.stock.isSplit(sku)) return false;
      const stored = this.stock.upsertPart(sku, shard, rows, seq);
      // Units on their way home that already arrived here are not counted twice.
      if (stored) this.stock.setTransit(sku, shard, pending.filter((p) => !this.stock.received([p.id]).length));
      if (stored) this.stock.publishAll(sku, clockNow());
      return stored;
    });
    // Units freed at a sub-shard pay back a frozen location's shortfall before anything sells there again.
    if (changed) await this.rebalanceFrozen(sku);
  }

  /** Sub-shard: stop (or resume) selling `sku` at `location`; set by the home shard while it owes units there. */
  async escrowFreeze(sku: string, location: string, frozen: boolean): Promise<void> {
    this.atomically(() => {
      if (frozen) this.ctx.storage.sql.exec("INSERT OR IGNORE INTO escrow_frozen (sku, location) VALUES (?, ?)", sku, location);
      else this.ctx.storage.sql.exec("DELETE FROM escrow_frozen WHERE sku = ? AND location = ?", sku, location);
    });
  }

  async escrowTotals(sku: string) {
    return this.escrow.totals(sku);
  }

  /** Re-delivers this object's pending sends of `sku` (all SKUs when omitted) whatever their age. */
  async settleSends(sku?: string): Promise<number> {
    const pending = this.escrow.pending(sku ? { sku } : {});
    const done = await Promise.all(pending.map((s) => this.deliver(s, "system")));
    return done.filter((d) => !d.delivered).length;
  }

  private async deliver(send: SendRow, actor: string, hold?: HoldRequest): Promise<{ delivered: boolean; hold?: HoldResult }> {
    try {
      const res = await this.env.STOCK.getByName(send.target).escrowGive(
        send.sku,
        [{ id: send.transfer_id, items: send.items, reason: send.reason }],
        send.target_role,
        actor,
        hold,
        send.target,
      );
      this.atomically(() => {
        const now = clockNow();
        this.escrow.settle(send.transfer_id, send.sku, now);
        if (this.stock.isSub(send.sku)) this.stock.queueReport(send.sku, now);
        else if (this.stock.isSplit(send.sku)) this.stock.publishAll(send.sku, now);
      });
      return { delivered: true, hold: res };
    } catch (err) {
      this.atomically(() => this.escrow.failed(send.transfer_id));
      console.warn(JSON.stringify({ level: "warn", message: "escrow send not delivered; the alarm retries", transfer: send.transfer_id, error: String(err) }));
      return { delivered: false };
    }
  }

  /**
   * Home shard: asks every sub-shard for its counts and publishes the sums if they changed. Units in transit
   * count at their giver unless their receiver already applied them (an answer lost on the way back).
   */
  private async refreshParts(sku: string): Promise<void> {
    // Units that land here while the sub-shards are being asked would count twice: in the answer a sub-shard gave
    // before it sent them (a recall, a fold) and in this object's own rows. Ask again when the own count moved.
    const ownOnHand = () => JSON.stringify(this.stock.localRows(sku).map((r) => r.on_hand));
    for (let round = 1; ; round++) {
      const before = ownOnHand();
      const done = await this.refreshPartsOnce(sku, () => round >= 3 || ownOnHand() === before);
      if (done) return;
    }
  }

  /** One round of `refreshParts`; stores nothing and returns false when `consistent()` says to ask again. */
  private async refreshPartsOnce(sku: string, consistent: () => boolean): Promise<boolean> {
    const h = this.stock.hotState(sku);
    if (!h) return true;
    const home = shardNameForSku(this.env, sku);
    const names = Array.from({ length: h.max_sub_shards }, (_, i) => hotSubShardName(sku, i));
    const answers = await Promise.all(names.map((n) => this.env.STOCK.getByName(n).escrowCounts(sku).catch(() => undefined)));
    const transit = new Map<string, PendingSend[]>([[home, this.stock.pendingSends(sku)]]);
    answers.forEach((a, i) => {
      if (a) transit.set(names[i]!, a.pending);
    });
    const byTarget = new Map<string, string[]>();
    for (const sends of transit.values()) for (const t of sends) byTarget.set(t.target, [...(byTarget.get(t.target) ?? []), t.id]);
    const arrived = new Set<string>();
    await Promise.all(
      [...byTarget].map(async ([target, ids]) => {
        const got = target === home ? this.stock.received(ids) : await this.env.STOCK.getByName(target).escrowReceived(ids).catch(() => [] as string[]);
        for (const id of got) arrived.add(id);
      }),
    );
    if (!consistent()) return false;
    this.atomically(() => {
      let changed = false;
      answers.forEach((a, i) => {
        if (a) changed = this.stock.upsertPart(sku, names[i]!, a.rows, a.seq) || changed;
      });
      for (const [shard, sends] of transit) changed = this.stock.setTransit(sku, shard, sends.filter((t) => !arrived.has(t.id))) || changed;
      if (changed) this.stock.publishAll(sku, clockNow());
    });
    return true;
  }

  /** Runs admin movements of one split SKU one at a time (they span several awaits). */
  private serial<T>(sku: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.serialQueue.get(sku) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.then(
      () => undefined,
      () => undefined,
    );
    this.serialQueue.set(sku, tail);
    void tail.then(() => {
      if (this.serialQueue.get(sku) === tail) this.serialQueue.delete(sku);
    });
    return next;
  }

  /**
   * A recount (`set`) or warehouse movement (`delta`) of a SKU split over sub-shards, at one location. The
   * physical count is the sum over every object; the change lands here at home when home has the units free.
   * A decrease beyond home's free units first recalls free quota units from the sub-shards, then debits the
   * sub-shards' counts (their holds stay: promises), so no object can sell a unit that no longer exists. An
   * increase is spread over the sub-shards. Held units beyond the new count are reported as oversold.
   */
  private async splitMovement(req: {
    sku: string;
    location: string;
    set?: number;
    delta?: number;
    limits?: { safety_stock?: number; low_stock?: number; backorder_limit?: number | null };
    kind: "set" | "adjust";
    meta: Meta;
    /** If-Match: the movement applies only if the SKU is still at this seq when its turn comes. */
    expectedSeq?: number;
  }): Promise<{ row: StockRow; oversold: number; outcome: AdjustmentOutcome } | StaleSeq> {
    const { sku, location } = req;
    const eventId = req.meta.event_id ?? null;
    return this.serial(sku, async (): Promise<{ row: StockRow; oversold: number; outcome: AdjustmentOutcome } | StaleSeq> => {
      const base = { event_id: eventId ?? "", sku, location };
      if (eventId) {
        const seen = this.stock.seenAdjustment(eventId);
        if (seen) return { row: this.stock.rowAt(sku, location), oversold: seen.oversold ?? 0, outcome: seen };
      }
      // The caller's If-Match check ran before the movements queued ahead of this one: checked again here, before
      // this movement's first await, where movements of this SKU run one at a time.
      if (req.expectedSeq !== undefined && this.stock.seqOf(sku) !== req.expectedSeq) return this.stale(sku);
      await this.settleSends(sku);
      await this.refreshParts(sku);
      this.atomically(() => this.stock.setLimits({ sku, location, ...req.limits }, clockNow()));
      const before = this.stock.rowAt(sku, location);
      const delta = req.set !== undefined ? req.set - before.on_hand : req.delta!;
      if (before.on_hand + delta < 0) {
        const detail = `on_hand would go below zero (is ${before.on_hand})`;
        return { row: before, oversold: 0, outcome: { ...base, status: "rejected" as const, detail, on_hand: before.on_hand } };
      }
      const home = shardNameForSku(this.env, sku);
      if (delta < 0) {
        const own = this.stock.raw(sku, location)!;
        const homeFree = Math.max(0, own.on_hand - own.reserved - own.safety_stock);
        const subFree = this.ctx.storage.sql
          .exec<{ n: number | null }>("SELECT SUM(MAX(0, on_hand - reserved)) AS n FROM hot_parts WHERE sku = ? AND location = ?", sku, location)
          .one().n ?? 0;
        // More units gone than are free anywhere: stop every sub-shard selling at this location first, so no
        // unit freed meanwhile is sold again before the shortfall is paid back.
        if (-delta > homeFree + subFree) await this.freeze(sku, location);
        if (-delta > homeFree) await this.recall(sku, location, -delta - homeFree, home, req.meta.actor ?? "admin");
        // The whole decrease lands here: home may go below its own holds (the shortfall is owed here).
        this.atomically(() => this.stock.applyMovement(sku, location, delta, req.kind, req.meta, clockNow()));
      } else {
        this.atomically(() => this.stock.applyMovement(sku, location, delta, req.kind, req.meta, clockNow()));
      }
      await this.rebalanceLocation(sku, location, req.meta.actor ?? "admin");
      await this.refreshParts(sku);
      return this.atomically(() => {
        const now = clockNow();
        const oversold = this.stock.reportOversold(sku, location, req.kind, req.meta, now);
        const row = this.stock.rowAt(sku, location);
        const outcome: AdjustmentOutcome = { ...base, status: "applied", on_hand: row.on_hand, ...(oversold ? { oversold } : {}) };
        if (eventId) this.stock.rememberAdjustment(outcome, now);
        return { row, oversold, outcome };
      });
    });
  }

  /** Pulls up to `want` free units at `location` home from the sub-shards, largest free quota first. */
  private async recall(sku: string, location: string, want: number, home: string, actor: string): Promise<number> {
    const parts = this.ctx.storage.sql
      .exec<{ shard: string; free: number }>("SELECT shard, on_hand - reserved AS free FROM hot_parts WHERE sku = ? AND location = ? AND on_hand - reserved > 0 ORDER BY free DESC, shard", sku, location)
      .toArray();
    const batch = crypto.randomUUID();
    let got = 0;
    for (const p of parts) {
      if (got >= want) break;
      const res = await this.env.STOCK.getByName(p.shard)
        .escrowSend({ sku, transferId: `recall:${batch}:${p.shard}`, target: home, targetRole: "home", max: Math.min(p.free, want - got), location, role: "sub", actor })
        .catch(() => undefined);
      if (res?.delivered) got += res.items.reduce((n, i) => n + i.quantity, 0);
    }
    return got;
  }

  /** Stops every sub-shard of `sku` selling at `location` (remembered here until thawed). */
  private async freeze(sku: string, location: string): Promise<void> {
    const h = this.stock.hotState(sku);
    if (!h) return;
    this.atomically(() => this.ctx.storage.sql.exec("INSERT OR IGNORE INTO hot_frozen (sku, location) VALUES (?, ?)", sku, location));
    await Promise.all(
      Array.from({ length: h.max_sub_shards }, (_, i) => this.env.STOCK.getByName(hotSubShardName(sku, i)).escrowFreeze(sku, location, true).catch(() => undefined)),
    );
  }

  /**
   * Home shard: while a location is frozen, pulls the sub-shards' freed units home until home owes nothing, then
   * thaws the sub-shards; a location that is not frozen gets home's free units spread to the sub-shards.
   */
  private async rebalanceLocation(sku: string, location: string, actor: string): Promise<void> {
    const frozen = this.ctx.storage.sql.exec("SELECT 1 FROM hot_frozen WHERE sku = ? AND location = ?", sku, location).toArray().length > 0;
    if (frozen) {
      const free = () => {
        const r = this.stock.raw(sku, location);
        return r ? r.on_hand - r.reserved - r.safety_stock : 0;
      };
      if (free() < 0) {
        await this.refreshParts(sku);
        await this.recall(sku, location, -free(), shardNameForSku(this.env, sku), actor);
      }
      if (free() < 0) return;
      const h = this.stock.hotState(sku);
      const thawed = await Promise.all(
        Array.from({ length: h?.max_sub_shards ?? 0 }, (_, i) =>
          this.env.STOCK.getByName(hotSubShardName(sku, i))
            .escrowFreeze(sku, location, false)
            .then(() => true)
            .catch(() => false),
        ),
      );
      if (thawed.includes(false)) return; // the home alarm tries again
      this.atomically(() => this.ctx.storage.sql.exec("DELETE FROM hot_frozen WHERE sku = ? AND location = ?", sku, location));
    }
    await this.spread(sku, location, actor);
  }

  /** Home alarm and sub-shard reports: retries every frozen location of `sku` (all SKUs when omitted). */
  private async rebalanceFrozen(sku?: string): Promise<void> {
    const rows = this.ctx.storage.sql
      .exec<{ sku: string; location: string }>("SELECT sku, location FROM hot_frozen WHERE ? IS NULL OR sku = ?", sku ?? null, sku ?? null)
      .toArray();
    for (const r of rows) await this.serial(r.sku, () => this.rebalanceLocation(r.sku, r.location, "system"));
  }

  /** Sends this object's free units of `sku` at `location` out to the sub-shards, evenly. */
  private async spread(sku: string, location: string, actor: string): Promise<void> {
    const h = this.stock.hotState(sku);
    if (!h || h.state !== "hot") return;
    const id = `spread:${crypto.randomUUID()}`;
    const sends = this.atomically(() => {
      const now = clockNow();
      const free = this.escrow.free(sku, location);
      for (const f of free) this.stock.move(sku, f.location, -f.quantity, "escrow_out", `${id}:out:${f.location}`, actor, now);
      return splitItems(free, h.sub_shards)
        .map((items, i) => ({ items, i }))
        .filter((p) => p.items.length)
        .map((p) => this.escrow.record(`${id}:${p.i}`, sku, hotSubShardName(sku, p.i), "sub", p.items, "escrow_in", actor, now));
    });
    await Promise.all(sends.map((s) => this.deliver(s, actor)));
  }

  // --- reservation headers (this shard as coordinator) -------------------------------------------------------

  /** Creates a reservation: the whole saga in this coordinator, holds reached object-to-object (src/stock/saga.ts). */
  async reserve(req: SagaRequest): Promise<SagaResult> {
    const headers: LocalHeaders = {
      // The idempotency record and, when this shard keeps the shopper's tally, the total cap: one transaction.
      begin: (r) =>
        this.ctx.storage.transactionSync(() => {
          const now = clockNow();
          const begin = this.headers.begin(r, now);
          if (begin.kind !== "started") return { begin };
          // A retry resumes the first request's reservation: its holder is the one the id was issued for.
          const holder = holderOfReservation(begin.id) ?? r.holder;
          if (tallyShardName(this.env, holder) !== this.ctx.id.name) return { begin, holder };
          const admission = this.tally.admit(holder, begin.id, r.lines, begin.expiresAt, r.caps.total, now);
          // Refused: not stored as the key's answer, so a retry once holds have lapsed can succeed.
          if (!admission.ok) this.headers.abandon(begin.id, now, begin.attempt);
          return { begin, holder, admission };
        }),
      finish: (id, result, attempt) =>
        this.ctx.storage.transactionSync(() => {
          const done = this.headers.finish(id, result, clockNow(), attempt);
          if (done && result.status === "failed") this.tally.end(id);
          return done;
        }),
      abandon: (id, attempt) =>
        this.ctx.storage.transactionSync(() => {
          if (this.headers.abandon(id, clockNow(), attempt)) this.tally.end(id);
        }),
      admitRemote: (holder, id, r, expiresAt) => admitRemote(this.env, holder, id, r.lines, expiresAt, r.caps.total),
      endRemote: (holder, id, admittedUntil) => updateRemote(this.env, tallyShardName(this.env, holder), id, undefined, admittedUntil),
    };
    return runSaga(this.env, { headers, hold: (h) => this.hold(h) }, req);
  }

  /** Tally shard role, for a coordinator that does not keep the holder's tally itself (IP fallback). */
  async tallyAdmit(holder: string, reservationId: string, lines: { sku: string; quantity: number }[], expiresAt: number, total: number): Promise<HoldAdmission> {
    return this.ctx.storage.transactionSync(() => this.tally.admit(holder, reservationId, lines, expiresAt, total, clockNow()));
  }

  /** Tally shard role: the reservation ended (`expiresAt` null; with `onlyUntil`, only a row at that deadline) or its deadline moved. */
  async tallyUpdate(reservationId: string, expiresAt: number | null, onlyUntil?: number): Promise<void> {
    this.ctx.storage.transactionSync(() => (expiresAt === null ? this.tally.end(reservationId, onlyUntil) : this.tally.extend(reservationId, expiresAt)));
  }

  /** The reservation's tally row ended or moved: here in the caller's transaction, or in the tally shard. */
  private async updateTally(id: string, expiresAt?: number): Promise<void> {
    const name = tallyShardOf(this.env, id);
    if (name && name !== this.ctx.id.name) await updateRemote(this.env, name, id, expiresAt);
  }

  async beginReservation(req: { scopeKey: string; owner: string; bodyHash: string; candidateId: string; currency: string; ttlMs: number }): Promise<BeginReservation> {
    return this.ctx.storage.transactionSync(() => this.headers.begin(req, clockNow()));
  }

  /** False when a newer saga attempt owns the header (this attempt's answer is dropped). */
  async finishReservation(id: string, result: { status: "held" | "failed"; items: ReservedItem[]; outcome: StoredOutcome }, attempt?: number): Promise<boolean> {
    return this.ctx.storage.transactionSync(() => this.headers.finish(id, result, clockNow(), attempt));
  }

  async abandonReservation(id: string, attempt?: number): Promise<void> {
    this.ctx.storage.transactionSync(() => this.headers.abandon(id, clockNow(), attempt));
  }

  async getReservation(id: string, owner: string): Promise<ReservationHeader | undefined> {
    return this.headers.get(id, owner);
  }

  /**
   * Commits a reservation: marks it `committing` (with the reconciler's deadline), commits every shard's lines
   * object-to-object, then marks it committed and queues `reservation.committed` once. A shard that does not
   * answer leaves the reservation `committing`: a retry or this object's alarm completes it, and no shard
   * releases a hold of a `committing` reservation meanwhile (shards ask here before letting a hold go).
   */
  async commitReservation(id: string, owner: string): Promise<CommitOutcome> {
    const begin = this.atomically(() => this.headers.beginCommit(id, owner, clockNow()));
    if (begin.kind !== "proceed") return begin;
    return this.driveCommit(begin.header);
  }

  private async driveCommit(header: ReservationHeader): Promise<CommitOutcome> {
    const actor = `storefront:${header.owner}`;
    const items = header.items.map(({ sku, quantity, location, shard }) => ({ sku, quantity, location, ...(shard ? { shard } : {}) }));
    const groups = [...groupByShard(this.env, items, (i) => i.sku, (i) => i.shard)];
    const answers = await Promise.all(
      groups.map(([name, lines]) =>
        this.env.STOCK.getByName(name)
          .commit(header.id, lines, actor)
          .then(() => true)
          .catch(() => false),
      ),
    );
    if (answers.includes(false)) {
      const h = this.atomically(() => {
        this.headers.commitDeferred(header.id, clockNow());
        return this.headers.get(header.id)!;
      });
      return { kind: "pending", header: h };
    }
    const done = this.finishCommitNow(header.id);
    await this.updateTally(header.id);
    return done ? { kind: "already", header: done } : { kind: "not_found" };
  }

  /** Marks committed and queues `reservation.committed` in the same step, so the event exists iff the commit does. */
  private finishCommitNow(id: string): ReservationHeader | undefined {
    return this.atomically(() => {
      const now = clockNow();
      const done = this.headers.finishCommit(id, now);
      // Committed units are sold, not held: they leave the shopper's total (a no-op when the tally is elsewhere).
      this.tally.end(id);
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
  }

  /** The storefront key that owns a reservation coordinated here, for an admin's force-release. */
  async reservationOwner(id: string): Promise<string | null> {
    return this.headers.get(id)?.owner ?? null;
  }

  async releaseReservation(id: string, owner: string): Promise<HeaderChange> {
    const change = this.ctx.storage.transactionSync(() => {
      const c = this.headers.release(id, owner, clockNow());
      if (c.kind === "ok") this.tally.end(id);
      return c;
    });
    if (change.kind === "ok") await this.updateTally(id);
    return change;
  }

  /**
   * Extends a reservation: every shard moves its holds first; the header's deadline moves only when all of them
   * confirmed. A shard that did not answer leaves the header at the old deadline (the earliest one in force);
   * a line that lapsed and cannot be re-held ends the reservation.
   */
  async extendReservation(id: string, ttlMs: number, owner: string): Promise<ExtendOutcome> {
    const check = this.headers.canExtend(id, owner, clockNow());
    if (check.kind !== "ok") return check;
    const header = check.header;
    const actor = `storefront:${owner}`;
    const expiresAt = clockNow() + ttlMs;
    const items = header.items.map(({ sku, quantity, location, shard }) => ({ sku, quantity, location, ...(shard ? { shard } : {}) }));
    const groups = [...groupByShard(this.env, items, (i) => i.sku, (i) => i.shard)];
    // A lapsed line is re-held as a fresh hold would be: within the holder's per-SKU cap for this key.
    const guard = { holder: holderOfReservation(id), perSkuCap: holdCaps(this.env, owner).perSku };
    const answers = await Promise.all(groups.map(([name, lines]) => this.env.STOCK.getByName(name).extend(id, lines, expiresAt, actor, guard).catch(() => undefined)));
    if (answers.some((a) => a === undefined)) return { kind: "unavailable", header: await this.keepDeadline(id, groups) };
    const shortfalls = answers.flatMap((a) => (a && !a.ok ? a.shortfalls : []));
    if (answers.some((a) => a && !a.ok)) {
      // A shard answers "committed" when a commit racing this extend got there first: the header is `committing`
      // then, and the lines the commit has not reached yet are its promise. Only an extend that itself ended the
      // reservation may let its holds go.
      const ended = this.atomically(() => this.headers.markExpired(id, clockNow()));
      if (!ended) return { kind: "refused", header: await this.keepDeadline(id, groups) };
      await Promise.all(groups.map(([name]) => this.env.STOCK.getByName(name).release(id, actor).catch(() => undefined)));
      return { kind: "lapsed", shortfalls, header: this.headers.get(id)! };
    }
    const moved = this.atomically(() => {
      const c = this.headers.setDeadline(id, expiresAt, clockNow());
      // The units keep counting toward the shopper's total until the new deadline.
      if (c.kind === "ok") this.tally.extend(id, expiresAt);
      return c;
    });
    if (moved.kind === "ok") await this.updateTally(id, expiresAt);
    else if (moved.kind === "refused") await this.keepDeadline(id, groups);
    return moved;
  }

  /**
   * The header's deadline did not move, but shards may already have moved their holds to the new one. A hold asks
   * this coordinator only at its own deadline, so such holds would keep their units (up to a whole TTL) after the
   * reservation ended: every shard puts them back to the header's deadline. Best effort: a shard that cannot be
   * told still asks, only later. Returns the header as it is now.
   */
  private async keepDeadline(id: string, groups: [string, unknown][]): Promise<ReservationHeader> {
    const h = this.headers.get(id)!;
    await Promise.all(groups.map(([name]) => this.env.STOCK.getByName(name).capDeadline(id, h.expires_at).catch(() => undefined)));
    return h;
  }

  /** Shard role: no hold of `reservationId` here outlives `until` (its coordinator's deadline); earlier ones stay. */
  async capDeadline(reservationId: string, until: number): Promise<void> {
    this.atomically(() => this.stock.capDeadline(reservationId, until));
  }

  /**
   * Shards ask before letting go of a reservation's holds at their deadline. A commit names the header's lines with
   * their shards: a shard sells only the holds the header lists on it.
   */
  async holdVerdicts(ids: string[]): Promise<Record<string, HoldVerdict>> {
    const now = clockNow();
    return Object.fromEntries(
      ids.map((id) => {
        const v = this.headers.verdict(id, now);
        if (v.kind !== "commit") return [id, v];
        // Each line with the shard it was held on (its escrow sub-shard, else the SKU's home): shards look their holds up in it.
        const items = this.headers.get(id)!.items.map((i) => ({ sku: i.sku, location: i.location, shard: i.shard ?? shardNameForSku(this.env, i.sku) }));
        return [id, { kind: "commit", items }];
      }),
    );
  }

  /** This object's name as a reservation line of `sku` names it (a sub-shard's own; else the SKU's home). */
  private selfFor(sku: string): string {
    return this.escrow.subOf(sku)?.shard ?? shardNameForSku(this.env, sku);
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
      while (this.stock.expireDue(clockNow()) > 0) {
        // expireDue works in slices; loop until nothing is due.
      }
    });
    await this.askVerdicts();
    await this.reconcileCommits();
    const due = this.escrow.pending({ before: clockNow() - SEND_SWEEP_MS });
    await Promise.all(due.map((s) => this.deliver(s, "system")));
    await this.rebalanceFrozen();
    for (let i = 0; i < 20; i++) {
      const more = await this.flushOutbox();
      if (!more) break;
    }
    // Housekeeping last: it must never hold up or break expiry and the outbox.
    try {
      await this.retain(clockNow());
    } catch (err) {
      console.warn(JSON.stringify({ level: "warn", message: "stock retention failed; the next alarm retries", error: String(err) }));
    }
    // The handler always writes its successor itself: a time cached by a request that ran while it awaited may
    // belong to an alarm the runtime has just consumed, and skipping on it left the shard with no alarm at all.
    this.alarmAt = undefined;
    this.scheduleAlarm();
  }

  /** Holds that reached their deadline: their coordinators decide (commit, keep until, or let go). */
  private async askVerdicts(): Promise<void> {
    const due = this.stock.dueForVerdict(clockNow());
    if (!due.length) return;
    const byCoordinator = new Map<string, string[]>();
    for (const id of due) {
      const name = coordinatorOfReservation(this.env, id);
      // An id naming a coordinator that does not exist (shard count changed) has no one to ask: it ends.
      if (!name) {
        this.atomically(() => this.stock.applyVerdict(id, { kind: "end" }, clockNow()));
        continue;
      }
      byCoordinator.set(name, [...(byCoordinator.get(name) ?? []), id]);
    }
    await Promise.all(
      [...byCoordinator].map(async ([name, ids]) => {
        try {
          const verdicts = await this.env.STOCK.getByName(name).holdVerdicts(ids);
          this.atomically(() => {
            for (const id of ids) this.stock.applyVerdict(id, verdicts[id] ?? { kind: "end" }, clockNow(), (sku) => this.selfFor(sku));
          });
        } catch (err) {
          // Never let a hold go without its coordinator's word: ask again shortly.
          this.atomically(() => this.stock.postponeDue(ids, clockNow() + VERDICT_RETRY_MS));
          console.warn(JSON.stringify({ level: "warn", message: "hold verdicts unavailable; retrying", coordinator: name, holds: ids.length, error: String(err) }));
        }
      }),
    );
  }

  /** Commits still `committing` past their deadline: drive them to the end on every shard. */
  private async reconcileCommits(): Promise<void> {
    for (const id of this.headers.dueCommits(clockNow())) {
      const h = this.headers.get(id);
      if (h?.status === "committing") await this.driveCommit(h);
      else this.atomically(() => this.headers.finishCommit(id, clockNow()));
    }
  }

  /** History retention (src/stock/retention.ts), at most once per policy period; a slice per run. */
  private async retain(now: number): Promise<void> {
    const policy = retentionPolicy(this.env.STOCK_RETENTION);
    const sql = this.ctx.storage.sql;
    const last = sql.exec<{ value: number }>("SELECT value FROM counters WHERE name = 'retention_at'").toArray()[0]?.value ?? 0;
    if (now - last < policy.everyMs) return;
    const candidates = retentionHoldCandidates(sql, now, policy);
    // A coordinator that does not answer: all of its candidates stay until the next run.
    const unfinished = candidates.length ? await this.unfinishedAmong(candidates) : [];
    this.ctx.storage.transactionSync(() => {
      applyRetention(sql, now, policy, unfinished);
      sql.exec("INSERT INTO counters (name, value) VALUES ('retention_at', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value", now);
    });
  }

  /** The reservations among `ids` that their coordinators have not finished (all of a coordinator's when it does not answer). */
  private async unfinishedAmong(ids: string[]): Promise<string[]> {
    const byCoordinator = new Map<string, string[]>();
    for (const id of ids) {
      const name = coordinatorOfReservation(this.env, id);
      if (name) byCoordinator.set(name, [...(byCoordinator.get(name) ?? []), id]);
    }
    const answers = await Promise.all(
      [...byCoordinator].map(([name, list]) =>
        name === this.ctx.id.name ? this.unfinishedReservations(list) : this.env.STOCK.getByName(name).unfinishedReservations(list).catch(() => list),
      ),
    );
    return answers.flat();
  }

  /** Coordinator: the reservations among `ids` that are not finished here (held, pending or committing). */
  async unfinishedReservations(ids: string[]): Promise<string[]> {
    return ids.filter((id) => {
      const h = this.headers.get(id);
      return h !== undefined && !["committed", "released", "expired", "failed"].includes(h.status);
    });
  }

  /** Sends one batch; true when it sent a full batch and more may be waiting. Failures back off, never drop. */
  private async flushOutbox(): Promise<boolean> {
    // Two alarm runs can overlap (a delivery retried while the first still awaits its send): only one flushes,
    // or both would send the same rows.
    if (this.flushing) return false;
    this.flushing = true;
    try {
      return await this.flushOutboxOnce();
    } finally {
      this.flushing = false;
    }
  }

  private async flushOutboxOnce(): Promise<boolean> {
    const all = this.ctx.storage.sql.exec<OutboxRow>("SELECT id, dedupe_key, body, attempts FROM outbox ORDER BY id LIMIT ?", OUTBOX_BATCH).toArray();
    if (!all.length) return false;
    this.lastFlushAt = Date.now();
    // A sub-shard's count reports go to its home shard over RPC, not to the queue.
    const reports = all.filter((r) => r.dedupe_key?.startsWith("report:"));
    const rows = all.filter((r) => !r.dedupe_key?.startsWith("report:"));
    const failedReports = (await Promise.all(reports.map(async (r) => ((await this.sendReport(JSON.parse(r.body) as { sku: string })) ? undefined : r)))).filter(
      (r): r is OutboxRow => r !== undefined,
    );
    this.deleteRows(reports.filter((r) => !failedReports.includes(r)));
    if (failedReports.length) this.backOff(failedReports);
    if (!rows.length) return all.length === OUTBOX_BATCH;
    const { batches, oversized } = packOutboxBatches(rows);
    let sentAll = await this.deadLetterRows(oversized, "larger than a queue message may be");
    for (const batch of batches) sentAll = (await this.sendRows(batch)) && sentAll;
    return sentAll && all.length === OUTBOX_BATCH;
  }

  /**
   * Sends one batch and deletes its rows. A batch the queue refuses for its size is halved until each part goes
   * through, and a single message it refuses for its size is dead-lettered, so it never holds up the rows behind
   * it. Any other failure backs the rows off. False when some rows are still waiting.
   */
  private async sendRows(rows: OutboxRow[]): Promise<boolean> {
    try {
      await this.env.EVENTS.sendBatch(rows.map((r) => ({ body: JSON.parse(r.body) as unknown, contentType: "json" as const })));
    } catch (err) {
      if (isSizeRefusal(err)) {
        if (rows.length === 1) return this.deadLetterRows(rows, `refused by the queue: ${String(err)}`);
        const half = Math.ceil(rows.length / 2);
        const first = await this.sendRows(rows.slice(0, half));
        return (await this.sendRows(rows.slice(half))) && first;
      }
      this.backOff(rows);
      console.warn(JSON.stringify({ level: "warn", message: "stock outbox flush failed; will retry", rows: rows.length, error: String(err) }));
      return false;
    }
    this.deleteRows(rows);
    return true;
  }

  /** Rows the queue can never take go to D1 `dead_letters` (listed and kept like any dead letter), then leave the outbox. */
  private async deadLetterRows(rows: OutboxRow[], why: string): Promise<boolean> {
    let stored = true;
    for (const r of rows) {
      try {
        await storeUnsendable(this.env, `stock-outbox:${this.ctx.id.name ?? this.ctx.id.toString()}:${r.id}`, r.body, r.attempts, `stock outbox: ${why}`);
        this.deleteRows([r]);
        console.error(JSON.stringify({ level: "error", message: "stock outbox event dead-lettered", row: r.id, dedupe_key: r.dedupe_key, why }));
      } catch (err) {
        // Kept in the outbox: never dropped, only tried again later.
        this.backOff([r]);
        stored = false;
        console.warn(JSON.stringify({ level: "warn", message: "stock outbox dead letter not stored; will retry", row: r.id, error: String(err) }));
      }
    }
    return stored;
  }

  /** Only the rows that were sent: a row replaced meanwhile has a new id and stays for the next flush. */
  private deleteRows(rows: OutboxRow[]): void {
    if (!rows.length) return;
    const ids = rows.map((r) => r.id);
    this.ctx.storage.sql.exec(`DELETE FROM outbox WHERE id IN (${ids.map(() => "?").join(",")})`, ...ids);
  }

  private backOff(rows: { id: number; attempts: number }[]): void {
    const now = Date.now();
    this.ctx.storage.transactionSync(() => {
      for (const r of rows) {
        const delay = Math.min(OUTBOX_MAX_BACKOFF_MS, 500 * 2 ** Math.min(r.attempts, 10));
        this.ctx.storage.sql.exec("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?", now + delay, r.id);
      }
    });
  }

  /** Sends this sub-shard's current counts of `sku` to its home shard; false when the home did not answer. */
  private async sendReport(body: { sku: string }): Promise<boolean> {
    const me = this.escrow.subOf(body.sku);
    if (!me) return true;
    try {
      await this.env.STOCK.getByName(me.home).escrowReport(body.sku, me.shard, this.stock.localRows(body.sku), this.stock.seqOf(body.sku), this.stock.pendingSends(body.sku));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * True while an alarm this object set is still ahead. Every deadline is written through `atomically`, which keeps
   * that alarm no later than the earliest of them, so nothing is due yet (the alarm handler clears it while it runs).
   */
  private alarmAhead(now: number): boolean {
    return this.alarmAt !== undefined && this.alarmAt !== null && this.alarmAt > now;
  }

  /**
   * One alarm serves both deadlines: the earliest live hold and the earliest pending outbox send. `earliest`: no
   * deadline the caller wrote is before it, so an alarm already due by then (and still ahead) is kept unread.
   */
  private scheduleAlarm(earliest?: number): void {
    if (earliest !== undefined && this.alarmAhead(clockNow()) && this.alarmAt! <= earliest) return;
    const hold = this.stock.nextExpiry();
    const pending = this.ctx.storage.sql.exec<{ t: number | null }>("SELECT MIN(next_attempt_at) AS t FROM outbox").one().t;
    const ob = pending === null ? null : Math.max(pending, this.lastFlushAt + OUTBOX_FLUSH_GAP_MS);
    const oldestSend = this.escrow.oldestPending();
    const sweep = oldestSend === null ? null : Math.max(oldestSend + SEND_SWEEP_MS, clockNow() + 200);
    const frozen = this.ctx.storage.sql.exec("SELECT 1 FROM hot_frozen LIMIT 1").toArray().length ? clockNow() + FROZEN_RETRY_MS : null;
    const reconcile = this.headers.nextReconcile();
    const candidates = [hold, ob, sweep, frozen, reconcile].filter((t): t is number => t !== null);
    const next = candidates.length ? Math.min(...candidates) : null;
    if (next === this.alarmAt) return;
    // An alarm already due no later than needed stays: it finds what is due then and schedules the next one. Only
    // an earlier deadline moves it, so a stream of holds (each re-queuing the SKU's snapshot) does not rewrite
    // the alarm on every request.
    // A cached time already past is not trusted: that alarm has fired (or is firing), so it is written again.
    if (next !== null && this.alarmAt !== undefined && this.alarmAt !== null && this.alarmAt <= next && this.alarmAt > clockNow()) return;
    if (next === null) void this.ctx.storage.deleteAlarm();
    else void this.ctx.storage.setAlarm(Math.max(next, 1));
    this.alarmAt = next;
  }

  /** Runs a synchronous mutation as one transaction, then re-arms the alarm for whatever it changed. */
  private atomically<T>(fn: () => T, earliest?: number): T {
    const out = this.ctx.storage.transactionSync(fn);
    this.scheduleAlarm(earliest);
    return out;
  }

  /** Adopts D1 baselines for SKUs this shard has never seen; returns the SKUs that are not in the catalog. */
  private async adopt(skus: string[]): Promise<UnknownSkus | undefined> {
    let missing = [...new Set(skus)].filter((s) => !this.known.has(s));
    if (!missing.length) return undefined;
    for (const s of this.stock.knownSkus(missing)) this.known.set(s, true);
    missing = missing.filter((s) => !this.known.has(s));
    if (!missing.length) return undefined;
    const now = Date.now();
    const unknown = missing.filter((s) => (this.unknownUntil.get(s) ?? 0) > now);
    const toLoad = missing.filter((s) => !unknown.includes(s));
    if (toLoad.length) {
      const { found, baselines } = await loadCatalogSkusAcross(allCatalogDbs(this.env), toLoad);
      const foundSet = new Set(found);
      this.atomically(() => this.stock.adopt(found, baselines, clockNow()));
      for (const s of toLoad) {
        if (foundSet.has(s)) this.known.set(s, true);
        else {
          unknown.push(s);
          this.unknownUntil.set(s, now + UNKNOWN_SKU_TTL_MS);
        }
      }
    }
    return unknown.length ? { ok: false, error: "unknown_skus", skus: unknown } : undefined;
  }
}
