/**
 * The one place that decides which Durable Object owns what, hot-SKU sub-shards included:
 * everything else groups work by the shard *name* returned from these functions.
 */
import { stableHash } from "../lib/stable-hash";

export { stableHash };

export const DEFAULT_STOCK_SHARDS = 16;
const MAX_STOCK_SHARDS = 1024;

export function shardCount(env: Pick<Env, "STOCK_SHARDS">): number {
  const n = Number.parseInt(env.STOCK_SHARDS ?? "", 10);
  if (!Number.isFinite(n) || n < 1) return DEFAULT_STOCK_SHARDS;
  return Math.min(n, MAX_STOCK_SHARDS);
}

export function shardForSku(sku: string, shards: number): number {
  return stableHash(sku) % shards;
}

export function shardName(n: number): string {
  return `stock:${n}`;
}

export function shardNameForSku(env: Pick<Env, "STOCK_SHARDS">, sku: string): string {
  return shardName(shardForSku(sku, shardCount(env)));
}

export function stockStub(env: Env, name: string) {
  return env.STOCK.getByName(name);
}

/** Groups SKUs (or anything carrying one) by owning shard name, so each shard is asked once. */
export function groupByShard<T>(
  env: Env,
  items: readonly T[],
  skuOf: (item: T) => string,
  /** A shard chosen elsewhere (a hot SKU's escrow sub-shard), when there is one. */
  shardOf?: (item: T) => string | undefined,
): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const name = shardOf?.(item) ?? shardNameForSku(env, skuOf(item));
    const list = groups.get(name);
    if (list) list.push(item);
    else groups.set(name, [item]);
  }
  return groups;
}

/**
 * Hot SKUs (src/stock/hot.ts): a hot SKU's free stock is split into K escrow quotas held by the
 * sub-shard objects `stock:hot:{sku}:{i}`. A reservation uses sub-shard `hash(holder key) % K`: all of one
 * shopper's holds of the SKU meet in one object, whose hold transaction enforces the per-SKU hoarding cap, while
 * many shoppers spread over all K. The holder is fixed by the reservation id, so every retry of an
 * Idempotency-Key lands on the same sub-shard. Held items remember their sub-shard, so commit/release/extend
 * find it even after the SKU has been un-marked.
 */
export function hotSubShardName(sku: string, index: number): string {
  return `stock:hot:${sku}:${index}`;
}

export function parseHotSubShard(name: string): { sku: string; index: number } | undefined {
  const m = /^stock:hot:(.+):(\d{1,3})$/.exec(name);
  return m ? { sku: m[1]!, index: Number(m[2]) } : undefined;
}

export function hotSubShardIndex(holder: string, subShards: number): number {
  return stableHash(`hot:${holder}`) % subShards;
}

/**
 * Reservation headers (status, items, idempotency record) live in a coordinator shard: for a request that names
 * its shopper, the shopper's tally shard (`tallyShardIndex`); otherwise the shard picked here by hashing the
 * idempotency scope. Either way every retry of one key meets the same strongly consistent object. The shard number is
 * embedded in the reservation id, so later reads find the header without a lookup table.
 */
export function coordinatorForScope(env: Env, scopeKey: string): number {
  return stableHash(`reservation:${scopeKey}`) % shardCount(env);
}

/**
 * The stock shard that keeps a holder's total-cap tally (src/stock/shopper-tally.ts), and coordinates every
 * reservation that names its shopper (`x-shopper-id`): a hash of the holder key, so one shopper's reservations
 * meet in one object while a shop's shoppers spread over all shards. Never one object per shopper.
 */
export function tallyShardIndex(env: Pick<Env, "STOCK_SHARDS">, holder: string): number {
  return stableHash(`tally:${holder}`) % shardCount(env);
}

/**
 * `rsv_{coordinator}_{holder}{random}`: the 32 hex digits start with the holder key (src/stock/shopper.ts) when
 * there is one, so commit and release find the shopper's hold tally from the id alone, whoever calls them.
 */
export function newReservationId(coordinator: number, holder?: string): string {
  const hex = crypto.randomUUID().replace(/-/g, "");
  const h = holder && /^[0-9a-f]{16}$/.test(holder) ? holder : hex.slice(16);
  return `rsv_${coordinator}_${h}${hex.slice(0, 16)}`;
}

/** The holder key embedded in a reservation id (see `newReservationId`), or undefined for ids we never issued. */
export function holderOfReservation(id: string): string | undefined {
  return /^rsv_\d{1,4}_([0-9a-f]{16})[0-9a-f]{16}$/.exec(id)?.[1];
}

/** The shape of the reservation ids this API issues (each names its coordinator). */
export const COORDINATED_ID = /^rsv_(\d{1,4})_[0-9a-f]{32}$/;

/** The coordinator shard name of a reservation id, or undefined for ids we never issued. */
export function coordinatorOfReservation(env: Env, id: string): string | undefined {
  const m = COORDINATED_ID.exec(id);
  if (!m) return undefined;
  const n = Number(m[1]);
  return n < shardCount(env) ? shardName(n) : undefined;
}
