/**
 * The reservation saga, run by the Worker. Lines are grouped per owning shard and held in parallel; if any
 * shard refuses, the holds already placed are released before answering. Each hold carries the reservation's
 * deadline inside its shard, so even a Worker that dies mid-saga leaves nothing held past the TTL.
 */
import { marketOf } from "../lib/markets";
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

export function toView(h: ReservationHeader, now = Date.now()): ReservationView {
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

function problemFromOutcome(o: Extract<StoredOutcome, { problem: unknown }>): ApiError {
  return new ApiError(o.status, o.problem.slug, o.problem.title, o.problem.detail, o.problem.extensions);
}

function coordinatorStub(env: Env, id: string) {
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
  const now = Date.now();
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
        return { name, res: await holdOnShard(env, name, { reservationId: id, expiresAt, lines, preferredLocations: preferred, actor, holder, perSkuCap }) };
      } catch (err) {
        return { name, res: { ok: false as const, error: "unavailable" as const, detail: String(err) } };
      }
    }),
  );

  if (results.some((r) => !r.res.ok)) {
    // Compensation: release every shard we touched, including ones whose answer we never got.
    await Promise.all(results.map((r) => (r.res.ok || r.res.error === "unavailable" ? stockStub(env, r.name).release(id, actor).catch(() => undefined) : undefined)));
    const failures = results.map((r) => r.res).filter((r) => !r.ok);
    await afterFailedHolds(env, input.keyId, id, failures.flatMap((f) => (f.error === "insufficient" ? f.shortfalls : [])));
    if (failures.some((f) => f.error === "unavailable")) {
      await coord.abandonReservation(id).catch(() => undefined);
      throw ApiError.unavailable("A stock shard did not answer; nothing is held. Retry with the same Idempotency-Key.");
    }
    const overCap = failures.find((f): f is HoldLimit => f.error === "hold_limit");
    if (overCap) {
      // Like the total cap: not stored as the key's answer, so a retry once holds have lapsed can succeed.
      await coord.abandonReservation(id).catch(() => undefined);
      throw skuHoldLimitError(overCap, Date.now());
    }
    const unknownSkus = failures.flatMap((f) => (f.error === "unknown_skus" ? f.skus : []));
    const shortfalls: Shortfall[] = failures.flatMap((f) => (f.error === "insufficient" ? f.shortfalls : []));
    const outcome: StoredOutcome = unknownSkus.length
      ? { status: 422, problem: { slug: "unprocessable", title: "Unprocessable Content", detail: `Unknown SKUs: ${unknownSkus.join(", ")}.`, extensions: { unknown_skus: unknownSkus } } }
      : { status: 409, problem: { slug: "insufficient-stock", title: "Conflict", detail: "Not enough stock for some lines; nothing was reserved.", extensions: { shortfalls } } };
    await coord.finishReservation(id, { status: "failed", items: [], outcome });
    throw problemFromOutcome(outcome);
  }

  const held: HeldItem[] = results.flatMap((r) => (r.res.ok ? r.res.items : []));
  const items: ReservedItem[] = held.map((h) => {
    const p = prices.get(h.sku)!;
    return { ...h, unit_price: p.unit_price!, currency: input.currency, regular_price: p.regular_price ?? p.unit_price!, promotion_id: p.promotion_id };
  });
  const body = toView({ id, owner: input.keyId, status: "held", items, currency: input.currency, expires_at: expiresAt, created_at: now, updated_at: now, committed_at: null, released_at: null }, now);
  await coord.finishReservation(id, { status: "held", items, outcome: { status: 201, body } });
  return { status: 201, body, replayed: false };
}

export async function getReservation(env: Env, id: string, owner: string): Promise<ReservationView> {
  const h = await coordinatorStub(env, id).getReservation(id, owner);
  if (!h || h.status === "failed") throw ApiError.notFound(`Reservation ${id} does not exist.`);
  return toView(h);
}

function refusal(h: ReservationHeader, action: string): ApiError {
  const status = effectiveStatus(h, Date.now());
  return new ApiError(409, `reservation-${status}`, "Conflict", `Cannot ${action} a reservation that is ${status}.`, { status });
}

function byShard(env: Env, items: HeldItem[]) {
  return [...groupByShard(env, items, (i) => i.sku, (i) => i.shard)];
}

export async function commitReservation(env: Env, id: string, owner: string): Promise<ReservationView> {
  const actor = `storefront:${owner}`;
  const coord = coordinatorStub(env, id);
  const begin = await coord.beginCommit(id, owner);
  if (begin.kind === "not_found") throw ApiError.notFound(`Reservation ${id} does not exist.`);
  if (begin.kind === "already") return toView(begin.header);
  if (begin.kind === "refused") throw refusal(begin.header, "commit");
  const items = begin.header.items.map(({ sku, quantity, location, shard }) => ({ sku, quantity, location, shard }));
  const results = await Promise.all(byShard(env, items).map(([name, lines]) => stockStub(env, name).commit(id, lines, actor)));
  const shortfalls = results.flatMap((r) => (r.ok ? [] : r.shortfalls));
  if (shortfalls.length) {
    // Only reachable when a hold lapsed between the coordinator accepting the commit and the shard applying
    // it, and the stock was taken meanwhile. The header stays `committing`; a retry resumes the commit.
    throw new ApiError(409, "commit-incomplete", "Conflict", "Some lines could not be committed; retry the commit.", { shortfalls });
  }
  const header = await coord.finishCommit(id);
  await endHolds(env, actor, id);
  if (!header) throw ApiError.notFound(`Reservation ${id} does not exist.`);
  return toView(header);
}

export async function releaseReservation(env: Env, id: string, owner: string): Promise<ReservationView> {
  const actor = `storefront:${owner}`;
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

export async function extendReservation(env: Env, id: string, ttlSeconds: number, owner: string): Promise<ReservationView> {
  const actor = `storefront:${owner}`;
  const coord = coordinatorStub(env, id);
  const change = await coord.extendReservation(id, ttlSeconds * 1000, owner);
  if (change.kind === "not_found") throw ApiError.notFound(`Reservation ${id} does not exist.`);
  if (change.kind === "refused") throw refusal(change.header, "extend");
  const items = change.header.items.map(({ sku, quantity, location, shard }) => ({ sku, quantity, location, shard }));
  const groups = byShard(env, items);
  const results = await Promise.all(groups.map(([name, lines]) => stockStub(env, name).extend(id, lines, change.header.expires_at, actor)));
  const shortfalls = results.flatMap((r) => (r.ok ? [] : r.shortfalls));
  if (shortfalls.length) {
    // A line lapsed in the instant before the extend reached its shard and the stock is gone: end the whole
    // reservation rather than leave a partial hold.
    await coord.expireReservation(id);
    await Promise.all(groups.map(([name]) => stockStub(env, name).release(id, actor).catch(() => undefined)));
    throw new ApiError(409, "reservation-expired", "Conflict", "The hold lapsed before it could be extended.", { shortfalls });
  }
  return toView(change.header);
}
