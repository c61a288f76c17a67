/**
 * Flash-sale protections on the reservation path. The Worker reads its colo's markers before calling the
 * coordinator; the coordinator's saga (src/stock/saga.ts) applies the caps once the idempotency record exists
 * (so a replay of an earlier answer is never changed by them):
 * - sold-out marker: a short-lived entry in this colo's Cache API per SKU found with nothing available. While it
 *   lives, a reservation for that SKU is answered 409 without a round trip to the SKU's (busy) shard.
 * - hoarding caps: a shopper of a storefront key (src/stock/shopper.ts) may hold at most `per_sku` units of one
 *   SKU (checked by the SKU's shard inside the hold) and `total` units overall (counted in a table of the stock
 *   shard the shopper hashes to, src/stock/shopper-tally.ts), so a bot cannot lock up a sale and no object but
 *   the stock shards sees the checkouts of more than one shopper.
 */
import { ApiError } from "../lib/errors";
import { withTimeout } from "../lib/resilience";
import { BoundedMap } from "../lib/isolate-memory";
import type { HoldAdmission } from "./shopper-tally";
import type { HoldLimit, HoldLine, Shortfall } from "./types";

export type HoldCaps = { perSku: number; total: number };

export const SOLD_OUT_TTL_SECONDS = 5;
const MARKER_ORIGIN = "https://sold-out.edgeshelf.internal/";
const MARKER_TIMEOUT_MS = 50;
const DEFAULT_CAPS: HoldCaps = { perSku: 500, total: 5000 };

const markerUrl = (sku: string) => MARKER_ORIGIN + encodeURIComponent(sku);

function colo(): Cache | undefined {
  return typeof caches === "undefined" ? undefined : caches.default;
}

/**
 * This isolate's last look at a SKU's marker, kept for MARKER_MEMO_MS of wall time: during a sale on one SKU the
 * Cache API is asked a few times a second per isolate instead of on every reservation (that lookup was about half
 * of the Worker's own work per reservation). A marker set or cleared by another isolate of the colo is seen up to
 * MARKER_MEMO_MS later, which only moves the point where that colo starts (or stops) answering from the edge; this
 * isolate's own marks and clears apply at once. Fixed-size entries, bounded like every per-isolate structure.
 */
const MARKER_MEMO_MS = 250;
const seen = new BoundedMap<{ until: number; soldOut: boolean }>("flash-gate.sold-out-seen", { maxBytes: 256 * 1024, maxKeyLength: 128, sizeOf: () => 24 });

/**
 * Bumped by this isolate's every mark and clear. A look-up that was waiting on the Cache API while one ran read a
 * marker from before it (a release's clear would otherwise be undone by a look-up that started just before it and
 * stored "sold out" for another MARKER_MEMO_MS): it defers to what the mark or clear left in the memo.
 */
let changes = 0;

async function lookUp(cache: Cache, sku: string, wall: number): Promise<boolean> {
  const memo = seen.get(sku);
  if (memo && memo.until > wall) return memo.soldOut;
  const before = changes;
  const res = await withTimeout(cache.match(markerUrl(sku)), MARKER_TIMEOUT_MS, "sold-out marker").catch(() => undefined);
  await res?.body?.cancel();
  if (changes !== before) return seen.get(sku)?.soldOut ?? false;
  seen.set(sku, { until: wall + MARKER_MEMO_MS, soldOut: !!res });
  return !!res;
}

/** SKUs (of lines that let any location serve them) that carry a live sold-out marker in this colo. */
export async function soldOutSkus(lines: HoldLine[]): Promise<string[]> {
  const cache = colo();
  if (!cache) return [];
  const skus = [...new Set(lines.filter((l) => l.location === undefined).map((l) => l.sku))];
  const wall = Date.now();
  const hits = await Promise.all(skus.map(async (sku) => ((await lookUp(cache, sku, wall)) ? sku : undefined)));
  return hits.filter((s): s is string => s !== undefined);
}

export async function markSoldOut(skus: string[]): Promise<void> {
  const cache = colo();
  if (!cache || !skus.length) return;
  const until = Date.now() + MARKER_MEMO_MS;
  changes++;
  for (const sku of skus) seen.set(sku, { until, soldOut: true });
  await Promise.all(
    skus.map((sku) =>
      withTimeout(
        cache.put(markerUrl(sku), new Response("sold out", { headers: { "cache-control": `max-age=${SOLD_OUT_TTL_SECONDS}` } })),
        MARKER_TIMEOUT_MS * 4,
        "sold-out marker",
      ).catch(() => undefined),
    ),
  );
}

/** Stock came back (a release): drop this colo's markers at once rather than wait for them to lapse. */
export async function clearSoldOut(skus: string[]): Promise<void> {
  const cache = colo();
  if (!cache) return;
  changes++;
  for (const sku of skus) seen.delete(sku);
  await Promise.all(skus.map((sku) => cache.delete(markerUrl(sku)).catch(() => false)));
}

/** SKUs a failed saga proved sold out: nothing available at any location. */
export function soldOutFrom(shortfalls: Shortfall[]): string[] {
  return [...new Set(shortfalls.filter((s) => s.location === undefined && s.available === 0).map((s) => s.sku))];
}

function parseCaps(text: string | undefined, into: HoldCaps): HoldCaps {
  const caps = { ...into };
  for (const part of (text ?? "").split(/[,\s]+/)) {
    const [k, v] = part.split("=");
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) continue;
    if (k === "per_sku") caps.perSku = n;
    if (k === "total") caps.total = n;
  }
  return caps;
}

/** `HOLD_CAPS = "per_sku=500,total=5000"`; `HOLD_CAP_OVERRIDES = "<api key id> per_sku=2 total=3; …"`. */
export function holdCaps(env: Env, keyId: string): HoldCaps {
  const base = parseCaps(env.HOLD_CAPS, DEFAULT_CAPS);
  for (const entry of (env.HOLD_CAP_OVERRIDES ?? "").split(";")) {
    const [id, ...rest] = entry.trim().split(/\s+/);
    if (id && id === keyId) return parseCaps(rest.join(","), base);
  }
  return base;
}

function holdLimitError(scope: "sku" | "total", limit: number, held: number, requested: number, retryAfter: number, sku?: string): ApiError {
  const what = scope === "sku" ? `${limit} units of ${sku}` : `${limit} units in total`;
  return new ApiError(
    429,
    "hold-limit",
    "Too Many Requests",
    `This shopper may hold at most ${what} at once (holds ${held}, asked for ${requested}). Commit or release holds first.`,
    { scope, limit, held, requested, ...(sku ? { sku } : {}) },
    { "Retry-After": String(retryAfter) },
  );
}

/** The 429 for a shard's per-SKU refusal (the first one, when several shards refused). */
export function skuHoldLimitError(refusal: HoldLimit, now: number): ApiError {
  const retryAfter = Math.max(1, Math.ceil((refusal.retry_at - now) / 1000));
  return holdLimitError("sku", refusal.limit, refusal.held, refusal.requested, retryAfter, refusal.sku);
}

/** The 429 for the total cap. */
export function totalHoldLimitError(a: Extract<HoldAdmission, { ok: false }>): ApiError {
  return holdLimitError("total", a.limit, a.held, a.requested, a.retry_after);
}

/** The 409 of a line the colo's sold-out marker answered for (first answer; replays carry the stored problem). */
export function soldOutError(shortfalls: Shortfall[]): ApiError {
  return new ApiError(409, "insufficient-stock", "Conflict", "Sold out; nothing was reserved.", { shortfalls, sold_out: true }, { "x-sold-out": "edge" });
}

/** Shortfalls of the lines whose SKU carries a sold-out marker in this colo (lines naming a location excluded). */
export async function soldOutShortfalls(lines: HoldLine[]): Promise<Shortfall[]> {
  const sold = await soldOutSkus(lines);
  return sold.map((sku) => ({ sku, requested: lines.filter((l) => l.sku === sku).reduce((n, l) => n + l.quantity, 0), available: 0 }));
}
