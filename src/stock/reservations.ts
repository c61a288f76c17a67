/**
 * Reservations from the Worker's side. Creating one is a single call to its coordinator shard, which runs the
 * saga object-to-object (src/stock/saga.ts); what the Worker can settle alone (validation, prices, locations, hot
 * SKUs, its colo's sold-out markers) is settled first and sent along.
 *
 * The coordinator is the shard that keeps the shopper's total-cap tally when the request names its shopper
 * (`x-shopper-id`): the Idempotency-Key is then scoped to (storefront key, shopper), so every retry of that shopper
 * meets the same header, and the cap is admitted in the header's own transaction. Without a shopper id the client
 * IP stands in, which may change between retries, so the coordinator follows the Idempotency-Key alone (scope:
 * the storefront key) and reaches the IP's tally object-to-object.
 */
import { marketOf } from "../lib/markets";
import { now as clockNow } from "../lib/clock";
import { ApiError } from "../lib/errors";
import { sha256Hex } from "../lib/crypto";
import { priceCart } from "../pricing/unit-prices";
import { activeLocations, preferredLocations, unknownLocations, type Region } from "./locations";
import { effectiveStatus, toView } from "./reservation-store";
import { clearSoldOut, holdCaps, markSoldOut, skuHoldLimitError, soldOutError, soldOutShortfalls, totalHoldLimitError } from "./flash-gate";
import { hotSkus } from "./hot";
import { coordinatorForScope, coordinatorOfReservation, groupByShard, newReservationId, shardName, stockStub, tallyShardIndex } from "./routing";
import type { SagaRequest, SagaResult } from "./saga";
import type { HeldItem, HoldLine, ReservationHeader, ReservationView, StoredOutcome } from "./types";

export { toView };

export type { ReservationView };

export const DEFAULT_TTL_SECONDS = 600;
export const MAX_TTL_SECONDS = 3600;
export const MAX_LINES = 100;
export const MAX_QUANTITY = 1000;

/** How long a duplicate request waits for the first request with its Idempotency-Key to finish. */
const IN_PROGRESS_WAIT_MS = 5_000;



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
  /** The request named its shopper (`x-shopper-id`), not only an IP: the key is scoped to that shopper. */
  shopperNamed: boolean;
  /** Background work after the answer (writing SKU index entries found through the D1 fallback). */
  waitUntil?: (p: Promise<unknown>) => void;
};

export async function createReservation(env: Env, input: CreateInput): Promise<{ status: 201; body: ReservationView; replayed: boolean }> {
  const now = clockNow();
  const skus = [...new Set(input.lines.map((l) => l.sku))];
  const [priced, locations, hot, soldOut] = await Promise.all([
    priceCart(env, skus, input.currency, now, marketOf(input.market), input.waitUntil),
    activeLocations(env),
    hotSkus(env),
    soldOutShortfalls(input.lines),
  ]);
  const { prices, unknown, inactive } = priced;
  if (unknown.length) throw ApiError.unprocessable(`Unknown SKUs: ${unknown.join(", ")}.`, { unknown_skus: unknown });
  if (inactive.length) throw ApiError.unprocessable(`Not for sale (draft or archived): ${inactive.join(", ")}.`, { inactive_skus: inactive });
  const unpriced = skus.filter((s) => prices.get(s)!.unit_price === null);
  if (unpriced.length) {
    throw ApiError.unprocessable(`No ${input.currency} price for: ${unpriced.join(", ")}.`, { unpriced_skus: unpriced, currency: input.currency });
  }
  const badLocations = await unknownLocations(env, input.lines.flatMap((l) => (l.location !== undefined ? [l.location] : [])));
  if (badLocations.length) throw ApiError.unprocessable(`Unknown locations: ${badLocations.join(", ")}.`, { unknown_locations: badLocations });

  const scopeKey = input.shopperNamed ? `${input.keyId}\u0000shopper:${input.holder}\u0000${input.idempotencyKey}` : `${input.keyId}\u0000${input.idempotencyKey}`;
  const coordIndex = input.shopperNamed ? tallyShardIndex(env, input.holder) : coordinatorForScope(env, scopeKey);
  const coordinator = shardName(coordIndex);
  const req: SagaRequest = {
    coordinator,
    scopeKey,
    owner: input.keyId,
    bodyHash: await bodyHash(input.lines, input.ttlSeconds, input.currency, input.market),
    candidateId: newReservationId(coordIndex, input.holder),
    currency: input.currency,
    ttlMs: input.ttlSeconds * 1000,
    lines: input.lines,
    prices: Object.fromEntries(
      [...prices].map(([sku, p]) => [sku, { unit_price: p.unit_price!, regular_price: p.regular_price ?? p.unit_price!, promotion_id: p.promotion_id }]),
    ),
    preferredLocations: preferredLocations(locations, input.region),
    hot: [...hot].filter(([sku]) => skus.includes(sku)),
    holder: input.holder,
    caps: holdCaps(env, input.keyId),
    soldOut,
    now,
  };
  const coord = stockStub(env, coordinator);
  let result: SagaResult;
  try {
    result = await coord.reserve(req);
    for (let waited = 0, step = 10; result.kind === "in_progress" && waited < IN_PROGRESS_WAIT_MS; waited += step, step = Math.min(step * 2, 200)) {
      await sleep(step);
      result = await coord.reserve(req);
    }
  } catch {
    // The coordinator did not answer; its saga (if it ran) keeps its lease and answer for the retry.
    throw ApiError.unavailable("The reservation could not be confirmed; retry with the same Idempotency-Key.");
  }
  switch (result.kind) {
    case "held":
      return { status: 201, body: result.body, replayed: result.replayed };
    case "refused":
      if (result.soldOutEdge) throw soldOutError(soldOut);
      if (result.soldOut?.length) input.waitUntil?.(markSoldOut(result.soldOut));
      throw problemFromOutcome(result.outcome);
    case "in_progress":
      throw new ApiError(409, "idempotency-in-progress", "Conflict", "A request with this Idempotency-Key is still being processed; retry shortly.", {}, { "Retry-After": "1" });
    case "mismatch":
      throw new ApiError(422, "idempotency-key-reused", "Unprocessable Content", "This Idempotency-Key was already used with a different request body.");
    case "superseded":
      throw superseded();
    case "unavailable":
      throw ApiError.unavailable("A stock shard did not answer; nothing is held. Retry with the same Idempotency-Key.");
    case "hold_limit":
      throw skuHoldLimitError(result.refusal, Date.now());
    case "total_limit":
      throw totalHoldLimitError(result.admission);
  }
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
  const out = await coordinatorStub(env, id).commitReservation(id, owner);
  if (out.kind === "not_found") throw ApiError.notFound(`Reservation ${id} does not exist.`);
  if (out.kind === "refused") throw refusal(out.header, "commit");
  if (out.kind === "pending") return { status: 202, view: toView(out.header) };
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
  await clearSoldOut(items.map((i) => i.sku));
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
