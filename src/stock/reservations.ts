/**
 * The reservation saga, run by the Worker. Lines are grouped per owning shard and held in parallel; if any
 * shard refuses, the holds already placed are released before answering. Each hold carries the reservation's
 * deadline inside its shard, so even a Worker that dies mid-saga leaves nothing held past the TTL.
 */
import { marketOf } from "../lib/markets";
import { now as clockNow } from "../lib/clock";
import { ApiError } from "../lib/errors";
import { sha256Hex } from "../lib/crypto";
import { priceCart } from "../pricing/unit-prices";
import { activeLocations, preferredLocations, unknownLocations, type Region } from "./locations";
import { effectiveStatus } from "./reservation-store";
import { afterFailedHolds, clearSoldOut, endHolds, flashSaleGate, holdCaps, skuHoldLimitError } from "./flash-gate";
import { holdOnShard, hotShardFor, hotSkus } from "./hot";
import { coordinatorForScope, coordinatorOfReservation, groupByShard, holderOfReservation, newReservationId, shardName, stockStub } from "./routing";
import type { HeldItem, HoldLimit, HoldLine, ReservationHeader, ReservationView, ReservedItem, Shortfall, StoredOutcome } from "./types";

export type { ReservationView };

export const DEFAULT_TTL_SECONDS = 600;
export const MAX_TTL_SECONDS = 3600;
export const MAX_LINES = 100;
export const MAX_QUANTITY = 1000;

/** How long a duplicate request waits for the first request with its Idempotency-Key to finish. */
const IN_PROGRESS_WAIT_MS = 5_000;


const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());

export function toView(h: ReservationHeader, now = clockNow()): ReservationView {
  return {
    id: h.id,
    status: effectiveStatus(h, now),
    expires_at: new Date(h.expires_at).toISOString(),
    currency: h.currency,
    items: h.items,
    created_at: new Date(h.created_at).toISOString(),
    committed_at: iso(h.committed_at),
    released_at: iso(h.released_at),
  };
}

/** This saga ran past its lease and a retry of the same key took over: the retry's answer is the one that counts. */
function superseded(): ApiError {
  return new ApiError(409, "idempotency-in-progress", "Conflict", "A retry of this Idempotency-Key took over this request; repeat it to get the answer.", {}, { "Retry-After": "1" });
}

function problemFromOutcome(o: Extract<StoredOutcome, { problem: unknown }>): ApiError {
  return new ApiError(o.status, o.problem.slug, o.problem.title, o.problem.detail, o.problem.extensions);
}

export function coordinatorStub(env: Env, id: string) {
  const name = coordinatorOfReservation(env, id);
  if (!name) throw ApiError.notFound(`Reservation ${id} does not exist.`);
  return stockStub(env, name);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Same Idempotency-Key and same body ⇔ same hash; defaults are applied first so omitted = explicit default. */
export async function bodyHash(lines: HoldLine[], ttlSeconds: number, currency: string, market?: string): Promise<string> {
  const canonical = lines.map((l) => [l.sku, l.quantity, l.location ?? null]);
  // `market` only when given, so the hashes of requests without one stay what they always were.
  return sha256Hex(JSON.stringify({ items: canonical, ttl_seconds: ttlSeconds, currency, ...(market ? { market } : {}) }));
}

export type CreateInput = {
  keyId: string;
  idempotencyKey: string;
  lines: HoldLine[];
  ttlSeconds: number;
  currency: string;
  /** Upper-case market code the shopper named (market-limited promotions in the price snapshot). */
  market?: string;
  region: Region | undefined;
  /** The shopper's holder key (src/stock/shopper.ts): hoarding caps and hot-SKU sub-shard choice. */
  holder: string;
  /** Background work after the answer (writing SKU index entries found through the D1 fallback). */
  waitUntil?: (p: Promise<unknown>) => void;
};

export async function createReservation(env: Env, input: CreateInput): Promise<{ status: 201; body: ReservationView; replayed: boolean }> {
  const now = clockNow();
  const skus = [...new Set(input.lines.map((l) => l.sku))];
  const [priced, locations] = await Promise.all([priceCart(env, skus, input.currency, now, marketOf(input.market), input.waitUntil), activeLocations(env)]);
  const { prices, unknown, inactive } = priced;
  if (unknown.length) throw ApiError.unprocessable(`Unknown SKUs: ${unknown.join(", ")}.`, { unknown_skus: unknown });
  if (inactive.length) throw ApiError.unprocessable(`Not for sale (draft or archived): ${inactive.join(", ")}.`, { inactive_skus: inactive });
  const unpriced = skus.filter((s) => prices.get(s)!.unit_price === null);
  if (unpriced.length) {
    throw ApiError.unprocessable(`No ${input.currency} price for: ${unpriced.join(", ")}.`, { unpriced_skus: unpriced, currency: input.currency });
  }
  const badLocations = await unknownLocations(env, input.lines.flatMap((l) => (l.location !== undefined ? [l.location] : [])));
  if (badLocations.length) throw ApiError.unprocessable(`Unknown locations: ${badLocations.join(", ")}.`, { unknown_locations: badLocations });

  const scopeKey = `${input.keyId}\u0000${input.idempotencyKey}`;
  const coordIndex = coordinatorForScope(env, scopeKey);
  const coord = stockStub(env, shardName(coordIndex));
  const beginReq = {
    scopeKey,
    owner: input.keyId,
    bodyHash: await bodyHash(input.lines, input.ttlSeconds, input.currency, input.market),
    candidateId: newReservationId(coordIndex, input.holder),
    currency: input.currency,
    ttlMs: input.ttlSeconds * 1000,
  };
  let begin = await coord.beginReservation(beginReq);
  for (let waited = 0, step = 10; begin.kind === "in_progress" && waited < IN_PROGRESS_WAIT_MS; waited += step, step = Math.min(step * 2, 200)) {
    await sleep(step);
    begin = await coord.beginReservation(beginReq);
  }
  switch (begin.kind) {
    case "in_progress":
      throw new ApiError(409, "idempotency-in-progress", "Conflict", "A request with this Idempotency-Key is still being processed; retry shortly.", {}, { "Retry-After": "1" });
    case "mismatch":
      throw new ApiError(422, "idempotency-key-reused", "Unprocessable Content", "This Idempotency-Key was already used with a different request body.");
    case "replay":
      if (begin.outcome.status === 201) return { status: 201, body: begin.outcome.body, replayed: true };
      throw problemFromOutcome(begin.outcome);
  }

  const id = begin.id;
  // A retry resumes the first request's reservation: its holder is the one the id was issued for.
  const holder = holderOfReservation(id) ?? input.holder;
  const expiresAt = begin.expiresAt;
  const attempt = begin.attempt;
  const actor = `storefront:${input.keyId}`;
  const preferred = preferredLocations(locations, input.region);
  const perSkuCap = holdCaps(env, input.keyId).perSku;
  // Sold-out marker and the shopper's total hoarding cap (src/stock/flash-gate.ts); hot SKUs go to escrow
  // sub-shards, one per shopper, so the per-SKU cap that the shard checks covers all of a shopper's holds.
  await flashSaleGate(env, { coord, id, keyId: input.keyId, holder, lines: input.lines, expiresAt });
  const hot = await hotSkus(env);
  const groups = [...groupByShard(env, input.lines, (l) => l.sku, (l) => hotShardFor(hot, l.sku, holder))];
  const results = await Promise.all(
    groups.map(async ([name, lines]) => {
      try {
        return { name, res: await holdOnShard(env, name, { reservationId: id, expiresAt, lines, preferredLocations: preferred, actor, holder, perSkuCap, attempt }) };
      } catch (err) {
        return { name, res: { ok: false as const, error: "unavailable" as const, detail: String(err) } };
      }
    }),
  );

  if (results.some((r) => !r.res.ok)) {
    // Compensation: release every shard we touched, including ones whose answer we never got. Fenced by the
    // attempt: if a retry has taken this saga over meanwhile, its holds are left alone.
    await Promise.all(results.map((r) => (r.res.ok || r.res.error === "unavailable" ? stockStub(env, r.name).release(id, actor, attempt).catch(() => undefined) : undefined)));
    const failures = results.map((r) => r.res).filter((r) => !r.ok);
    await afterFailedHolds(env, input.keyId, id, failures.flatMap((f) => (f.error === "insufficient" ? f.shortfalls : [])));
    if (failures.some((f) => f.error === "unavailable")) {
      await coord.abandonReservation(id, attempt).catch(() => undefined);
      throw ApiError.unavailable("A stock shard did not answer; nothing is held. Retry with the same Idempotency-Key.");
    }
    const overCap = failures.find((f): f is HoldLimit => f.error === "hold_limit");
    if (overCap) {
      // Like the total cap: not stored as the key's answer, so a retry once holds have lapsed can succeed.
      await coord.abandonReservation(id, attempt).catch(() => undefined);
      throw skuHoldLimitError(overCap, Date.now());
    }
    const unknownSkus = failures.flatMap((f) => (f.error === "unknown_skus" ? f.skus : []));
    const shortfalls: Shortfall[] = failures.flatMap((f) => (f.error === "insufficient" ? f.shortfalls : []));
    const outcome: StoredOutcome = unknownSkus.length
      ? { status: 422, problem: { slug: "unprocessable", title: "Unprocessable Content", detail: `Unknown SKUs: ${unknownSkus.join(", ")}.`, extensions: { unknown_skus: unknownSkus } } }
      : { status: 409, problem: { slug: "insufficient-stock", title: "Conflict", detail: "Not enough stock for some lines; nothing was reserved.", extensions: { shortfalls } } };
    if (!(await coord.finishReservation(id, { status: "failed", items: [], outcome }, attempt))) throw superseded();
    throw problemFromOutcome(outcome);
  }

  const held: HeldItem[] = results.flatMap((r) => (r.res.ok ? r.res.items : []));
  const items: ReservedItem[] = held.map((h) => {
    const p = prices.get(h.sku)!;
    return { ...h, unit_price: p.unit_price!, currency: input.currency, regular_price: p.regular_price ?? p.unit_price!, promotion_id: p.promotion_id };
  });
  const body = toView({ id, owner: input.keyId, status: "held", items, currency: input.currency, expires_at: expiresAt, created_at: now, updated_at: now, committed_at: null, released_at: null }, now);
  if (!(await coord.finishReservation(id, { status: "held", items, outcome: { status: 201, body } }, attempt))) throw superseded();
  return { status: 201, body, replayed: false };
}

export async function getReservation(env: Env, id: string, owner: string): Promise<ReservationView> {
  const h = await coordinatorStub(env, id).getReservation(id, owner);
  if (!h || h.status === "failed") throw ApiError.notFound(`Reservation ${id} does not exist.`);
  return toView(h);
}

function refusal(h: ReservationHeader, action: string): ApiError {
  const status = effectiveStatus(h, clockNow());
  return new ApiError(409, `reservation-${status}`, "Conflict", `Cannot ${action} a reservation that is ${status}.`, { status });
}

function byShard(env: Env, items: HeldItem[]) {
  return [...groupByShard(env, items, (i) => i.sku, (i) => i.shard)];
}

/**
 * One call to the coordinator, which commits every shard object-to-object. 200 once every shard applied it;
 * 202 `committing` when a shard did not answer: the commit is accepted and cannot be undone, the coordinator's
 * alarm (or a retry of this call) completes it, and the shard keeps the hold meanwhile.
 */
export async function commitReservation(env: Env, id: string, owner: string): Promise<{ status: 200 | 202; view: ReservationView }> {
  const actor = `storefront:${owner}`;
  const out = await coordinatorStub(env, id).commitReservation(id, owner);
  if (out.kind === "not_found") throw ApiError.notFound(`Reservation ${id} does not exist.`);
  if (out.kind === "refused") throw refusal(out.header, "commit");
  if (out.kind === "pending") return { status: 202, view: toView(out.header) };
  await endHolds(env, actor, id);
  return { status: 200, view: toView(out.header) };
}

/** `actor` defaults to the storefront key; an admin's force-release passes its own, so the ledger says who. */
export async function releaseReservation(env: Env, id: string, owner: string, actor = `storefront:${owner}`): Promise<ReservationView> {
  const coord = coordinatorStub(env, id);
  const change = await coord.releaseReservation(id, owner);
  if (change.kind === "not_found" || (change.kind === "ok" && change.header.status === "failed")) {
    throw ApiError.notFound(`Reservation ${id} does not exist.`);
  }
  if (change.kind === "refused") throw refusal(change.header, "release");
  const items = change.header.items.map(({ sku, quantity, location, shard }) => ({ sku, quantity, location, shard }));
  // Idempotent on every shard; if one is unreachable its holds still lapse at their deadline.
  await Promise.all(byShard(env, items).map(([name]) => stockStub(env, name).release(id, actor).catch(() => undefined)));
  await Promise.all([endHolds(env, actor, id), clearSoldOut(items.map((i) => i.sku))]);
  return toView(change.header);
}

/**
 * One call to the coordinator: every shard moves its holds, then the header's deadline moves. If a shard did not
 * answer, the reservation keeps its old deadline (503, retry); a line that lapsed and is sold ends it (409).
 */
export async function extendReservation(env: Env, id: string, ttlSeconds: number, owner: string): Promise<ReservationView> {
  const change = await coordinatorStub(env, id).extendReservation(id, ttlSeconds * 1000, owner);
  if (change.kind === "not_found") throw ApiError.notFound(`Reservation ${id} does not exist.`);
  if (change.kind === "refused") throw refusal(change.header, "extend");
  if (change.kind === "unavailable") {
    throw ApiError.unavailable(`A stock shard did not answer; the reservation still expires at ${new Date(change.header.expires_at).toISOString()}. Retry the extend.`);
  }
  if (change.kind === "lapsed") {
    throw new ApiError(409, "reservation-expired", "Conflict", "The hold lapsed before it could be extended.", { shortfalls: change.shortfalls });
  }
  return toView(change.header);
}
