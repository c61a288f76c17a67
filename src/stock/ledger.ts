/**
 * A SKU's ledger merged over every object that ever held it (home shard, hot sub-shards), paged with a cursor
 * that keeps one position per object, so paging never skips or repeats a row. The admin API and the console
 * both read it here.
 */
import { ApiError } from "../lib/errors";
import { shardNameForSku, stockStub } from "./routing";
import type { LedgerEntry } from "./types";

export type MergedLedgerRow = LedgerEntry & { shard: string };
export type LedgerOrder = "asc" | "desc";

/**
 * One page of the merged ledger. Each object's rows are in time order; a page takes the `limit` oldest (`asc`)
 * or newest (`desc`) rows over all of them (ties: home first, then sub-shard order, then row id; `desc` is the
 * exact reverse). The cursor holds, per object, the last row id taken: rows after it (`asc`) or before it
 * (`desc`; row ids start at 1, so 0 can mean "from the newest") come next. 404 for an unknown SKU.
 */
export async function mergedLedger(env: Env, sku: string, cursor: string | undefined, limit: number, order: LedgerOrder = "asc"): Promise<{ items: MergedLedgerRow[]; next_cursor: string | null }> {
  const home = stockStub(env, shardNameForSku(env, sku));
  const first = await home.ledger(sku, 0, 0);
  if (!first.ok) throw ApiError.notFound(`Unknown SKU: ${sku}.`);
  const shards = await home.ledgerShards(sku);
  const at = (cursor ?? "0").split(".").map(Number);
  const pages = await Promise.all(
    shards.map(async (name, i) => {
      const stub = stockStub(env, name);
      if (order === "desc") return (await stub.ledgerTail(sku, limit, at[i] ?? 0)).map((r) => ({ ...r, shard: name, order: i }));
      const res = await stub.ledger(sku, at[i] ?? 0, limit, i === 0);
      return res.ok ? res.items.map((r) => ({ ...r, shard: name, order: i })) : [];
    }),
  );
  const sign = order === "desc" ? -1 : 1;
  const merged = pages
    .flat()
    .sort((a, b) => sign * (a.at - b.at || a.order - b.order || a.id - b.id))
    .slice(0, limit);
  const next = shards.map((_, i) => merged.filter((r) => r.order === i).at(-1)?.id ?? at[i] ?? 0);
  // More may follow when any object filled its page: those rows were fetched but not all were taken.
  const more = pages.some((p) => p.length === limit) || merged.length === limit;
  return { items: merged.map(({ order: _, ...r }) => r), next_cursor: more && merged.length ? next.join(".") : null };
}
