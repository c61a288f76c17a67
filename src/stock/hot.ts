/**
 * Hot-SKU escrow (demarcation). Marking a SKU hot moves its free stock out of the home shard into K disjoint
 * quotas, each owned by a sub-shard object (`stock:hot:{sku}:{i}`), so K objects serve the SKU in parallel.
 * A reservation goes to its shopper's sub-shard (hash of the holder key, see routing.ts); a sub-shard that runs dry
 * borrows from its siblings one pair at a time (take from a sibling, then give-and-hold in one step at the
 * borrower): no global lock and no coordinator on the hot path. Un-marking folds the free quotas back home.
 * Registry: D1 `hot_skus`, read through a 1 s per-isolate cache.
 */
import { allCatalogDbs } from "../db/partitions";
import { now as clockNow } from "../lib/clock";
import { ApiError } from "../lib/errors";
import { hotSubShardIndex, hotSubShardName, parseHotSubShard, shardNameForSku, stockStub } from "./routing";
import type { HeldItem, HoldRequest, HoldResult } from "./types";
import { registerAccounted } from "../lib/isolate-memory";

export const MAX_SUB_SHARDS = 64;
const CACHE_MS = 1_000;

type HotRow = { sku: string; sub_shards: number; state: string; transfer_id: string; generation: number };

let cache: { until: number; hot: Map<string, number> } | undefined;
// Hot SKUs are set by admins (a handful); the budget only flags a runaway configuration.
registerAccounted("stock.hot-skus", { bytes: () => (cache ? [...cache.hot.keys()].reduce((n, k) => n + k.length * 2 + 72, 64) : 0), entries: () => cache?.hot.size ?? 0, budget: () => 256 * 1024 });

/** SKU → K for every SKU currently routed to sub-shards. */
export async function hotSkus(env: Env, now = clockNow()): Promise<Map<string, number>> {
  if (cache && cache.until > now) return cache.hot;
  const rows = await env.DB.prepare("SELECT sku, sub_shards FROM hot_skus WHERE state = 'hot'").all<{ sku: string; sub_shards: number }>();
  const hot = new Map(rows.results.map((r) => [r.sku, r.sub_shards]));
  cache = { until: now + CACHE_MS, hot };
  return hot;
}

function forgetCache() {
  cache = undefined;
}

/** The sub-shard of a line on a hot SKU for this shopper (holder key), or undefined (normal routing). */
export function hotShardFor(hot: Map<string, number>, sku: string, holder: string): string | undefined {
  const k = hot.get(sku);
  return k ? hotSubShardName(sku, hotSubShardIndex(holder, k)) : undefined;
}

/**
 * Holds `req` on shard `name`. On a hot sub-shard that is short, asks its siblings (each once, in ring order) to
 * send the missing units; each send lands here and tries the hold in the same atomic step as the arrival.
 * Items held on a sub-shard carry `shard`, so later steps of the reservation find them.
 */
export async function holdOnShard(env: Env, name: string, req: HoldRequest): Promise<HoldResult> {
  const first = await stockStub(env, name).hold(req);
  const sub = parseHotSubShard(name);
  if (!sub) return first;
  const tag = (r: HoldResult): HoldResult => (r.ok ? { ok: true, items: r.items.map((i) => ({ ...i, shard: name })) } : r);
  if (first.ok || first.error !== "insufficient") return tag(first);

  const hot = await hotSkus(env);
  const k = hot.get(sub.sku);
  if (!k) return first;
  let need = first.shortfalls.reduce((n, s) => n + Math.max(0, s.requested - s.available), 0);
  // A line that names its location can only use units at that location: borrow those.
  const named = [...new Set(first.shortfalls.map((s) => s.location))];
  const location = named.length === 1 ? named[0] : undefined;
  let borrowed = false;
  for (let step = 1; step < k && need > 0; step++) {
    const j = (sub.index + step) % k;
    const sent = await stockStub(env, hotSubShardName(sub.sku, j)).escrowSend({
      sku: sub.sku,
      transferId: `borrow:${req.reservationId}:${sub.index}:${j}`,
      target: name,
      targetRole: "sub",
      max: need,
      ...(location ? { location } : {}),
      role: "sub",
      actor: req.actor,
      hold: req,
    });
    const got = sent.items.reduce((n, i) => n + i.quantity, 0);
    if (got > 0) borrowed = true;
    if (sent.hold?.ok) return tag(sent.hold);
    need -= got;
  }
  if (!borrowed) return first;
  // The borrowed units landed here even if the hold still fell short (or a send is still in transit).
  return tag(await stockStub(env, name).hold(req));
}

async function readRow(env: Env, sku: string): Promise<HotRow | null> {
  return env.DB.prepare("SELECT sku, sub_shards, state, transfer_id, generation FROM hot_skus WHERE sku = ?").bind(sku).first<HotRow>();
}

export type HotStatus = {
  sku: string;
  hot: boolean;
  state: string | null;
  sub_shards: number;
  home: ShardTotals;
  sub_shard_totals: ShardTotals[];
  /** Summed over every object, units in transit included (the one definition of stock every reader uses). */
  totals: { on_hand: number; reserved: number; available: number; committed: number; quotas: number };
  /** Of those, units taken from one object whose arrival at the other is not (yet) recorded: 0 unless a transfer failed mid-way. */
  in_transit: number;
};
type ShardTotals = { shard: string; on_hand: number; reserved: number; available: number; committed: number; escrow_out: number; escrow_in: number; pending: number };

export async function hotStatus(env: Env, sku: string): Promise<HotStatus> {
  const row = await readRow(env, sku);
  const k = row?.sub_shards ?? 0;
  const home = shardNameForSku(env, sku);
  const names = [home, ...Array.from({ length: k }, (_, i) => hotSubShardName(sku, i))];
  const totals = await Promise.all(names.map(async (n) => ({ shard: n, ...(await stockStub(env, n).escrowTotals(sku)) })));
  const [h, ...subs] = totals as [ShardTotals, ...ShardTotals[]];
  const sum = (f: (t: ShardTotals) => number) => totals.reduce((n, t) => n + f(t), 0);
  const inTransit = sum((t) => t.escrow_out) - sum((t) => t.escrow_in);
  return {
    sku,
    hot: row?.state === "hot",
    state: row?.state ?? null,
    sub_shards: k,
    home: h,
    sub_shard_totals: subs,
    // Units on their way between objects are still on the shelf: counted here as every other reader counts them.
    totals: {
      on_hand: sum((t) => t.on_hand) + inTransit,
      reserved: sum((t) => t.reserved),
      available: sum((t) => t.available) + inTransit,
      committed: sum((t) => t.committed),
      quotas: subs.reduce((n, t) => n + Math.max(0, t.available), 0),
    },
    in_transit: inTransit,
  };
}

/** Marks `sku` hot with `k` sub-shards. Resumable: a retry after a crash finishes the same transfer. */
export async function markHot(env: Env, sku: string, k: number, actor: string): Promise<HotStatus> {
  if (!Number.isInteger(k) || k < 1 || k > MAX_SUB_SHARDS) throw ApiError.badRequest(`sub_shards must be an integer from 1 to ${MAX_SUB_SHARDS}.`);
  let row = await readRow(env, sku);
  if (row && row.state !== "marking") {
    if (row.state === "hot" && row.sub_shards === k) return hotStatus(env, sku);
    throw ApiError.conflict(`SKU ${sku} is already ${row.state} with ${row.sub_shards} sub-shards; un-mark it first.`, { state: row.state, sub_shards: row.sub_shards });
  }
  if (!row) {
    // The SKU's product may be in any catalog partition (one look-up each; one with a single database).
    const known = (await Promise.all(allCatalogDbs(env).map((db) => db.prepare("SELECT 1 AS one FROM variants WHERE sku = ?").bind(sku).first()))).some(Boolean);
    if (!known) throw ApiError.notFound(`SKU ${sku} does not exist.`);
    const transferId = `split:${sku}:${crypto.randomUUID()}`;
    await env.DB.prepare("INSERT INTO hot_skus (sku, sub_shards, state, transfer_id) VALUES (?, ?, 'marking', ?) ON CONFLICT (sku) DO NOTHING")
      .bind(sku, k, transferId)
      .run();
    row = (await readRow(env, sku))!;
    if (row.state !== "marking" || row.sub_shards !== k) return markHot(env, sku, k, actor);
  }
  // The home shard takes the free stock and sends the K quotas itself; every sub-shard is registered (even with
  // an empty quota) before any reservation can be routed to it. A send that did not arrive is retried here.
  const split = await stockStub(env, shardNameForSku(env, sku)).hotSplit(sku, row.transfer_id, row.sub_shards, actor);
  if (!split.ok) throw ApiError.notFound(`SKU ${sku} does not exist.`);
  if (split.pending) throw ApiError.unavailable(`A sub-shard of ${sku} did not answer; retry the mark to finish the split.`);
  await env.DB.prepare("UPDATE hot_skus SET state = 'hot', updated_at = ?, version = version + 1 WHERE sku = ? AND state = 'marking'").bind(Date.now(), sku).run();
  forgetCache();
  return hotStatus(env, sku);
}

/**
 * Un-marks `sku`: routing goes home at once, then each sub-shard's free quota is folded back. Units still held
 * in a sub-shard stay there until their reservation ends (commit/release find them through the item's shard);
 * calling un-mark again sweeps whatever has been freed since. The row is removed once the sub-shards are empty.
 */
export async function unmarkHot(env: Env, sku: string, actor: string): Promise<HotStatus> {
  const row = await readRow(env, sku);
  if (!row) throw ApiError.notFound(`SKU ${sku} is not hot.`);
  if (row.state === "marking") throw ApiError.conflict(`SKU ${sku} is still being marked hot; retry the mark first.`);
  await env.DB.prepare("UPDATE hot_skus SET state = 'folding', updated_at = ?, version = version + 1 WHERE sku = ?").bind(Date.now(), sku).run();
  forgetCache();
  const fold = await stockStub(env, shardNameForSku(env, sku)).hotFold(sku, `${row.transfer_id}:${row.generation}`, actor);
  const status = await hotStatus(env, sku);
  if (fold.done) {
    await env.DB.prepare("DELETE FROM hot_skus WHERE sku = ? AND state = 'folding'").bind(sku).run();
    return { ...status, state: null, hot: false };
  }
  await env.DB.prepare("UPDATE hot_skus SET generation = generation + 1 WHERE sku = ?").bind(sku).run();
  return status;
}

export type { HeldItem };
