/**
 * Flash-sale protections on the reservation path, called from the saga in src/stock/reservations.ts
 * once the idempotency record exists (so a replay of an earlier answer is never changed by them):
 * - sold-out marker: a short-lived entry in this colo's Cache API per SKU found with nothing available. While it
 *   lives, a reservation for that SKU is answered 409 without a round trip to the SKU's (busy) shard.
 * - hoarding caps: a shopper of a storefront key (src/stock/shopper.ts) may hold at most `per_sku` units of one
 *   SKU (checked by the SKU's shard inside the hold) and `total` units overall (counted by the shopper's own
 *   ClientGuard object), so a bot cannot lock up a sale and no object sees every checkout of a shop.
 */
import { ApiError } from "../lib/errors";
import { withTimeout } from "../lib/resilience";
import type { HoldCaps, HoldAdmission } from "../../durable-objects/client-guard";
import { holderOfReservation } from "./routing";
import type { HoldLimit, HoldLine, Shortfall, StoredOutcome } from "./types";

export const SOLD_OUT_TTL_SECONDS = 5;
const MARKER_ORIGIN = "https://sold-out.edgeshelf.internal/";
const MARKER_TIMEOUT_MS = 50;
const GUARD_TIMEOUT_MS = 1_000;
const DEFAULT_CAPS: HoldCaps = { perSku: 500, total: 5000 };

const markerUrl = (sku: string) => MARKER_ORIGIN + encodeURIComponent(sku);

function colo(): Cache | undefined {
  return typeof caches === "undefined" ? undefined : caches.default;
}

/** SKUs (of lines that let any location serve them) that carry a live sold-out marker in this colo. */
export async function soldOutSkus(lines: HoldLine[]): Promise<string[]> {
  const cache = colo();
  if (!cache) return [];
  const skus = [...new Set(lines.filter((l) => l.location === undefined).map((l) => l.sku))];
  const hits = await Promise.all(
    skus.map(async (sku) => {
      const res = await withTimeout(cache.match(markerUrl(sku)), MARKER_TIMEOUT_MS, "sold-out marker").catch(() => undefined);
      await res?.body?.cancel();
      return res ? sku : undefined;
    }),
  );
  return hits.filter((s): s is string => s !== undefined);
}

export async function markSoldOut(skus: string[]): Promise<void> {
  const cache = colo();
  if (!cache || !skus.length) return;
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

function guard(env: Env, keyId: string, holder: string) {
  return env.CLIENT_GUARD.getByName(`holder:${keyId}:${holder}`);
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

type Coordinator = {
  finishReservation(id: string, result: { status: "failed"; items: []; outcome: StoredOutcome }): Promise<unknown>;
  abandonReservation(id: string): Promise<void>;
};

/** Runs before any stock shard is asked. Throws the answer (409 sold out, 429 hoarding cap) when it refuses. */
export async function flashSaleGate(
  env: Env,
  g: { coord: Coordinator; id: string; keyId: string; holder: string; lines: HoldLine[]; expiresAt: number },
): Promise<void> {
  const sold = await soldOutSkus(g.lines);
  if (sold.length) {
    const shortfalls: Shortfall[] = sold.map((sku) => ({
      sku,
      requested: g.lines.filter((l) => l.sku === sku).reduce((n, l) => n + l.quantity, 0),
      available: 0,
    }));
    const outcome: StoredOutcome = {
      status: 409,
      problem: { slug: "insufficient-stock", title: "Conflict", detail: "Sold out; nothing was reserved.", extensions: { shortfalls } },
    };
    await g.coord.finishReservation(g.id, { status: "failed", items: [], outcome });
    throw new ApiError(409, "insufficient-stock", "Conflict", "Sold out; nothing was reserved.", { shortfalls, sold_out: true }, { "x-sold-out": "edge" });
  }
  let admission: HoldAdmission;
  try {
    const pending = guard(env, g.keyId, g.holder).admitHold(g.id, g.lines, g.expiresAt, holdCaps(env, g.keyId).total) as unknown as Promise<HoldAdmission>;
    admission = await withTimeout(pending, GUARD_TIMEOUT_MS, "hold cap");
  } catch {
    // The cap is a safeguard, not a dependency: a guard that does not answer does not block checkouts.
    return;
  }
  if (!admission.ok) {
    await g.coord.abandonReservation(g.id);
    throw holdLimitError("total", admission.limit, admission.held, admission.requested, admission.retry_after);
  }
}

/** The saga failed: the client holds nothing for this reservation, and SKUs seen empty get a marker. */
export async function afterFailedHolds(env: Env, keyId: string, id: string, shortfalls: Shortfall[]): Promise<void> {
  await Promise.all([markSoldOut(soldOutFrom(shortfalls)), endHolds(env, keyId, id)]);
}

/** The reservation ended (commit, release). `actor` is `storefront:{key id}`; the holder is read off the id. */
export async function endHolds(env: Env, actorOrKeyId: string, id: string): Promise<void> {
  const keyId = actorOrKeyId.replace(/^storefront:/, "");
  const holder = holderOfReservation(id);
  if (!holder) return;
  await withTimeout(guard(env, keyId, holder).endHold(id), GUARD_TIMEOUT_MS, "hold cap").catch(() => undefined);
}
