/**
 * The reservation saga, run inside the coordinator shard (`StockShard.reserve`): the Worker makes one call, and the
 * coordinator records the idempotency key, admits the shopper's total hoarding cap (in the same transaction when
 * it keeps the shopper's tally, which it does whenever the request named its shopper; else object-to-object),
 * places the holds on the owning shards object-to-object (in parallel, all or nothing: holds already placed are
 * released when any shard refuses) and stores the answer. Each hold carries the reservation's deadline inside its shard, so a saga that dies half-way
 * leaves nothing held past the TTL; its lease lets a retry of the same key take over.
 *
 * Everything the Worker can decide without the coordinator (prices, preferred locations, hot SKUs, sold-out
 * markers of its colo) arrives in the request, so the coordinator never reads D1 on this path.
 */
import { soldOutFrom } from "./flash-gate";
import { holdOnShard, hotShardFor } from "./hot";
import { groupByShard, stockStub } from "./routing";
import { toView } from "./reservation-store";
import type { HoldAdmission } from "./shopper-tally";
import type { BeginReservation, HeldItem, HoldLimit, HoldLine, HoldRequest, HoldResult, ReservationView, ReservedItem, Shortfall, StoredOutcome } from "./types";

export type SagaPrice = { unit_price: number; regular_price: number; promotion_id: string | null };

export type SagaRequest = {
  /** The coordinator's own shard name: holds on it are placed in-process. */
  coordinator: string;
  scopeKey: string;
  /** Storefront key id. */
  owner: string;
  bodyHash: string;
  candidateId: string;
  currency: string;
  ttlMs: number;
  lines: HoldLine[];
  /** Unit prices at `now`, per SKU (the snapshot the reservation keeps). */
  prices: Record<string, SagaPrice>;
  preferredLocations: string[];
  /** SKU → K for the hot SKUs among the lines. */
  hot: [string, number][];
  /** The shopper's holder key, used unless the id was issued to another holder (a retry). */
  holder: string;
  caps: { perSku: number; total: number };
  /** Lines the Worker's colo already knows to be sold out: answered 409 without asking any shard. */
  soldOut: Shortfall[];
  now: number;
};

export type SagaResult =
  | { kind: "held"; body: ReservationView; replayed: boolean }
  /** A retry of the key took this saga over (a newer attempt owns the header); the retry will answer. */
  | { kind: "superseded" }
  | { kind: "refused"; outcome: Extract<StoredOutcome, { problem: unknown }>; replayed: boolean; soldOutEdge?: boolean; soldOut?: string[] }
  | { kind: "in_progress" }
  | { kind: "mismatch" }
  | { kind: "unavailable" }
  | { kind: "hold_limit"; refusal: HoldLimit }
  | { kind: "total_limit"; admission: Extract<HoldAdmission, { ok: false }> };

/** What `begin` settled in its one transaction. */
export type BeginStep = {
  begin: BeginReservation;
  /** The holder whose tally counts this reservation (a retry keeps the one its id was issued for). */
  holder?: string;
  /** Set when this coordinator keeps that holder's tally: admitted (or refused) in the same transaction. */
  admission?: HoldAdmission;
};

/** The coordinator's own operations, called in-process (no round trip). */
export type LocalHeaders = {
  begin(req: SagaRequest): BeginStep;
  /** False when a newer saga attempt owns the header. A failed finish also drops a local tally row. */
  finish(id: string, result: { status: "held" | "failed"; items: ReservedItem[]; outcome: StoredOutcome }, attempt: number): boolean;
  /** Gives the key back for a retry; also drops a local tally row. */
  abandon(id: string, attempt: number): void;
  /** The total cap in another shard's tally (IP fallback); undefined when it did not answer. */
  admitRemote(holder: string, id: string, req: SagaRequest, expiresAt: number): Promise<HoldAdmission | undefined>;
  /**
   * Drops the reservation's row from a tally kept by another shard (none when it is kept here), only if it is still
   * the row this attempt admitted (its deadline `admittedUntil`): a retry that took over re-admitted its own.
   */
  endRemote(holder: string, id: string, admittedUntil: number): Promise<void>;
};

/**
 * Runs one reservation in the coordinator: `self` gives its header operations and its own hold, placed
 * in-process; every other shard is reached object-to-object through `env.STOCK`.
 */
export async function runSaga(env: Env, self: { headers: LocalHeaders; hold: (req: HoldRequest) => Promise<HoldResult> }, req: SagaRequest): Promise<SagaResult> {
  const step = self.headers.begin(req);
  const begin = step.begin;
  if (begin.kind === "in_progress" || begin.kind === "mismatch") return begin;
  if (begin.kind === "replay") {
    return begin.outcome.status === 201 ? { kind: "held", body: begin.outcome.body, replayed: true } : { kind: "refused", outcome: begin.outcome, replayed: true };
  }
  const id = begin.id;
  const expiresAt = begin.expiresAt;
  // Fences this run of the saga: holds, compensating releases and the final answer all carry it, so an older
  // attempt can never release a newer one's holds or overwrite its answer.
  const attempt = begin.attempt;
  const holder = step.holder ?? req.holder;
  const actor = `storefront:${req.owner}`;

  if (req.soldOut.length) {
    const outcome: Extract<StoredOutcome, { problem: unknown }> = {
      status: 409,
      problem: { slug: "insufficient-stock", title: "Conflict", detail: "Sold out; nothing was reserved.", extensions: { shortfalls: req.soldOut } },
    };
    if (!self.headers.finish(id, { status: "failed", items: [], outcome }, attempt)) return { kind: "superseded" };
    return { kind: "refused", outcome, replayed: false, soldOutEdge: true };
  }

  const admission = step.admission ?? (await self.headers.admitRemote(holder, id, req, expiresAt));
  if (admission && !admission.ok) {
    if (!step.admission) self.headers.abandon(id, attempt);
    return { kind: "total_limit", admission };
  }

  const hot = new Map(req.hot);
  const groups = [...groupByShard(env, req.lines, (l) => l.sku, (l) => hotShardFor(hot, l.sku, holder))];
  const results = await Promise.all(
    groups.map(async ([name, lines]) => {
      const hold: HoldRequest = { reservationId: id, expiresAt, lines, preferredLocations: req.preferredLocations, actor, holder, perSkuCap: req.caps.perSku, attempt };
      try {
        return { name, res: name === req.coordinator ? await self.hold(hold) : await holdOnShard(env, name, hold) };
      } catch (err) {
        return { name, res: { ok: false as const, error: "unavailable" as const, detail: String(err) } };
      }
    }),
  );

  if (results.some((r) => !r.res.ok)) {
    // Compensation: release every shard we touched, including ones whose answer we never got.
    await Promise.all(results.map((r) => (r.res.ok || r.res.error === "unavailable" ? stockStub(env, r.name).release(id, actor, attempt).catch(() => undefined) : undefined)));
    const failures = results.map((r) => r.res).filter((r) => !r.ok);
    if (!step.admission) await self.headers.endRemote(holder, id, expiresAt);
    const shortfalls: Shortfall[] = failures.flatMap((f) => (f.error === "insufficient" ? f.shortfalls : []));
    if (failures.some((f) => f.error === "unavailable")) {
      self.headers.abandon(id, attempt);
      return { kind: "unavailable" };
    }
    const overCap = failures.find((f): f is HoldLimit => f.error === "hold_limit");
    if (overCap) {
      // Like the total cap: not stored as the key's answer, so a retry once holds have lapsed can succeed.
      self.headers.abandon(id, attempt);
      return { kind: "hold_limit", refusal: overCap };
    }
    const unknownSkus = failures.flatMap((f) => (f.error === "unknown_skus" ? f.skus : []));
    const outcome: Extract<StoredOutcome, { problem: unknown }> = unknownSkus.length
      ? { status: 422, problem: { slug: "unprocessable", title: "Unprocessable Content", detail: `Unknown SKUs: ${unknownSkus.join(", ")}.`, extensions: { unknown_skus: unknownSkus } } }
      : { status: 409, problem: { slug: "insufficient-stock", title: "Conflict", detail: "Not enough stock for some lines; nothing was reserved.", extensions: { shortfalls } } };
    if (!self.headers.finish(id, { status: "failed", items: [], outcome }, attempt)) return { kind: "superseded" };
    return { kind: "refused", outcome, replayed: false, soldOut: soldOutFrom(shortfalls) };
  }

  const held: HeldItem[] = results.flatMap((r) => (r.res.ok ? r.res.items : []));
  const items: ReservedItem[] = held.map((h) => {
    const p = req.prices[h.sku]!;
    return { ...h, unit_price: p.unit_price, currency: req.currency, regular_price: p.regular_price, promotion_id: p.promotion_id };
  });
  const now = req.now;
  const body = toView({ id, owner: req.owner, status: "held", items, currency: req.currency, expires_at: expiresAt, created_at: now, updated_at: now, committed_at: null, released_at: null }, now);
  if (!self.headers.finish(id, { status: "held", items, outcome: { status: 201, body } }, attempt)) return { kind: "superseded" };
  return { kind: "held", body, replayed: false };
}
