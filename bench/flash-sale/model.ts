/**
 * Scaling model for one shop's reservations on Cloudflare, from a per-object service rate measured locally.
 *   npx tsx bench/flash-sale/model.ts 900        (per-object rate in ops/s; the benchmark passes its measurement)
 *
 * A Durable Object runs its requests one at a time on one thread, and Cloudflare documents a soft limit of about
 * 1,000 requests/s per object. Stateless Worker invocations scale out across machines, so on Cloudflare the
 * ceiling is set by the objects a reservation must visit, each divided by how many calls it makes there. Every
 * thing one `POST /v1/reservations` touches, for one shop (one storefront key) and one single-line cart:
 *
 * | what                                        | calls | objects that share the load                        |
 * |---------------------------------------------|-------|----------------------------------------------------|
 * | rate limit (RL_RESERVE binding)             | 0     | none: per colo, in the Worker                      |
 * | unit price (product document)               | 0     | none: isolate memo / KV, no D1                     |
 * | sold-out marker (Cache API)                 | 0     | none                                               |
 * | coordinator (idempotency record, shopper's  | C = 1 | STOCK_SHARDS stock shards, by hash of the shopper  |
 * |   total-cap tally in the same transaction,  |       | (x-shopper-id); no object per shopper              |
 * |   the saga)                                 |       |                                                    |
 * | the SKU's stock object (hold)               | 1     | its home shard, or one of K escrow sub-shards      |
 * |                                             |       | (in-process when the coordinator is that shard)    |
 * | borrowing when a sub-shard runs dry         | 2     | two sub-shards, for about K/stock of reservations  |
 * | `stock.changed` event to the queue          | ≤ 1   | coalesced per (SKU, location) per 100 ms flush     |
 *
 * The Worker makes ONE sequential object call (to the coordinator); the coordinator makes one object-to-object
 * call (the hold), none when the SKU's home shard is the coordinator (1 in S). Two objects are touched, one call
 * each (2 − 1/S on average for a SKU that is not split): C = 1. (Without x-shopper-id the IP's tally shard adds a
 * third object; not modelled: a shop's storefront sends its cart id.)
 *
 * One SKU, not split:         X    = μ / (1 + C/S)   (its home shard holds every line and coordinates 1/S of them)
 * One hot SKU, K sub-shards:   X(K) = min(K·μ, S·μ/C) / (1 + 2K/stock)   (sub-shards never coordinate)
 * A shop across many SKUs:     X    = min(S·μ / (1 + C − 1/S), Q)   (each reservation costs 1 + C calls on the S
 *                              stock shards, which also coordinate, one fewer when the two are the same shard;
 *                              Q = 5,000 queue messages/s bounds the events when every reservation touches a
 *                              different SKU, and is not reached while events coalesce, i.e. with fewer than Q/10
 *                              active SKUs)
 * with μ = min(measured, 1000) and S = STOCK_SHARDS. No term depends on the number of storefront keys or shoppers: a
 * shop with one key scales with its shoppers, and one shopper is bounded by one coordinator (μ) and, long before
 * that, by its rate limit.
 *
 * Counting calls treats every call as one do-noop's worth of object time. The calls of a reservation are heavier:
 * the coordinator runs two transactions (idempotency record + tally, then the answer) and calls out once; the SKU's
 * object runs the hold (about 15 SQL statements) and flushes the outbox. The weighted projection charges each object
 * a do-noop's service time plus the CPU its part takes beyond a do-noop's (MEASURED_OBJECT_COST, measured locally),
 * on the assumption that an object's fixed cost per call is what μ measures and its extra work adds to it:
 *
 *   t_c = 1/μ + Δc (coordinator, per reservation)     t_h = 1/μ + Δh (the SKU's stock object, per hold)
 *   One SKU, not split:         X    = 1 / (t_h + t_c·C/S)
 *   One hot SKU, K sub-shards:   X(K) = min(K/t_h, S/(t_c·C)) / (1 + 2K/stock)
 *   A shop across many SKUs:     X    = min(S / (t_h + t_c·C), Q)
 * With Δc = Δh = 0 these are the call-counting figures (up to the 1/S in-process hold, left out when weighted).
 */
export type Projection = {
  text: string;
  /** One hot SKU split over K sub-shards. */
  rows: { k: number; rate: number }[];
  /** One SKU that is not split: its home shard takes every hold. */
  coldSku: number;
  /** The whole shop across many SKUs. */
  shop: number;
  /** Objects one single-line reservation touches (each once), and sequential calls the Worker makes. */
  objectsTouched: number;
  workerCalls: number;
};

/** CPU ms per reservation that each object spends beyond a do-noop's (its RPC and one SQLite write). */
export type ObjectCost = { coordinatorMs: number; holdMs: number };

/**
 * Measured 2026-12-05 09:41 UTC under the quiet lock (bench/results/reserve.md, "Where a reservation's CPU goes"):
 * runtime CPU per request at successive cut points of a hot-SKU reservation. The coordinator: the begin transaction
 * (0.55), the hold call and the answer's transaction (0.60), with half of each RPC it takes part in, less the do-noop
 * object's 0.11; the stock object: the hold, its alarm and outbox flush (0.49, without the queue consumer's share)
 * and half of the hold call, less 0.11.
 */
export const MEASURED_OBJECT_COST: ObjectCost = { coordinatorMs: 1.03, holdMs: 0.45 };

export type ModelOptions = { shards: number; stock: number; coordinatorCalls: number; queueLimit: number };

const DEFAULTS: ModelOptions = { shards: 16, stock: 100_000, coordinatorCalls: 1, queueLimit: 5_000 };

/** The same three ceilings with each object's part weighed by its measured extra CPU (see the header). */
export function projectWeighted(perObjectRate: number, ks: number[], cost: ObjectCost, options: Partial<ModelOptions> = {}) {
  const o = { ...DEFAULTS, ...options };
  const mu = Math.min(perObjectRate, 1000);
  const tc = 1 / mu + cost.coordinatorMs / 1000;
  const th = 1 / mu + cost.holdMs / 1000;
  const rows = ks.map((k) => ({ k, rate: Math.min(k / th, o.shards / (tc * o.coordinatorCalls)) / (1 + (2 * k) / o.stock) }));
  return { rows, coldSku: 1 / (th + (tc * o.coordinatorCalls) / o.shards), shop: Math.min(o.shards / (th + tc * o.coordinatorCalls), o.queueLimit), cost };
}

export function project(perObjectRate: number, ks: number[], localK1: number, options: Partial<ModelOptions> = {}): Projection {
  const o = { ...DEFAULTS, ...options };
  const mu = Math.min(perObjectRate, 1000);
  const coordinatorCap = (o.shards * mu) / o.coordinatorCalls;
  const rows = ks.map((k) => ({ k, rate: Math.min(k * mu, coordinatorCap) / (1 + (2 * k) / o.stock) }));
  // The hold is in-process when the coordinator owns the SKU (1 in S): one call fewer on the shards.
  const shop = Math.min((o.shards * mu) / (1 + o.coordinatorCalls - 1 / o.shards), o.queueLimit);
  // Its home shard is also one of the S coordinators: it coordinates 1/S of those reservations besides every hold.
  const coldSku = mu / (1 + o.coordinatorCalls / o.shards);
  const objectsTouched = 2;
  const workerCalls = o.coordinatorCalls;
  const n = (x: number) => x.toLocaleString("en", { maximumFractionDigits: 0 });
  const text = [
    `Per-object service rate μ: measured ${perObjectRate.toFixed(0)} ops/s locally (one StockShard RPC + SQLite write,`,
    `the same unit of work as a hold), capped at Cloudflare's documented ~1,000 requests/s per object: **μ = ${mu.toFixed(0)}/s**.`,
    `Locally the whole reservation path (Worker + every object) shares one process, which is why the local K=1 rate`,
    `(${localK1.toFixed(0)}/s) is below μ and does not grow with K.`,
    ``,
    `On Cloudflare a single-line reservation of one shop (one storefront key) touches **${objectsTouched} objects, one call each**, and the`,
    `Worker waits for **${workerCalls} sequential object call${workerCalls === 1 ? "" : "s"}**: a coordinator (one of STOCK_SHARDS = ${o.shards} stock shards, by the shopper's`,
    `hash), which records the Idempotency-Key and admits the shopper's total cap in one transaction, then reaches the`,
    `SKU's stock object (its home shard, or one of K escrow sub-shards) object-to-object, or in-process when the`,
    `coordinator is that shard (1 in ${o.shards}); no object exists per shopper, and the rate limit, the price and the sold-out`,
    `marker cost no object call. One SKU that is not split is bounded by its home shard: **${n(coldSku)} reservations/s per SKU**. For one hot SKU,`,
    `X(K) = min(K·μ, ${o.shards}·μ/${o.coordinatorCalls}) / (1 + 2K/stock) with ${n(o.stock)} units (borrowing costs 2 extra calls for`,
    `roughly K/stock of the reservations): the sub-shards stop being the bottleneck at K = ${o.shards / o.coordinatorCalls}; beyond that, raise`,
    `STOCK_SHARDS too. Across SKUs, each reservation costs 1 + ${o.coordinatorCalls} calls on the ${o.shards} stock shards (one fewer when they coincide):`,
    `**${n(shop)} reservations/s for the shop** (= min(${o.shards}·μ/(${1 + o.coordinatorCalls} − 1/${o.shards}), ${n(o.queueLimit)} queue messages/s)), plus K·μ for`,
    `each hot SKU on its own sub-shards. None of it depends on the number of storefront keys. For comparison,`,
    `Shopify's flash-sale checkout throttle is about 4,000/minute ≈ 67/s.`,
  ].join("\n");
  return { text, rows, coldSku, shop, objectsTouched, workerCalls };
}

if (process.argv[1]?.endsWith("model.ts")) {
  const rate = Number(process.argv[2] ?? 1000);
  const p = project(rate, [1, 2, 4, 8, 16], rate);
  console.log(p.text);
  for (const r of p.rows) console.log(`K=${r.k}: ${r.rate.toFixed(0)} reservations/s`);
  console.log(`one SKU, not split: ${p.coldSku.toFixed(0)} reservations/s`);
  console.log(`one shop across SKUs: ${p.shop.toFixed(0)} reservations/s`);
  console.log(`objects touched per reservation: ${p.objectsTouched}; sequential object calls from the Worker: ${p.workerCalls}`);
  const w = projectWeighted(rate, [1, 2, 4, 8, 16], MEASURED_OBJECT_COST);
  console.log(`weighted by measured object cost (coordinator +${w.cost.coordinatorMs} ms, hold +${w.cost.holdMs} ms per reservation):`);
  for (const r of w.rows) console.log(`K=${r.k}: ${r.rate.toFixed(0)} reservations/s`);
  console.log(`one SKU, not split: ${w.coldSku.toFixed(0)} reservations/s; one shop across SKUs: ${w.shop.toFixed(0)} reservations/s`);
}
