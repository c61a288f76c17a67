/**
 * Precomputed recommendation lists: D1 `recommendations` is the record (one versioned row per product and
 * intent), KV `recs:{id}` a global copy of both lists of a product for the read path. A list is rewritten,
 * and its version bumped, only when its content changed, so a rebuild that changes nothing writes nothing.
 */
import type { RecommendationPins } from "./pins";

export type PrecomputedIntent = "related" | "complementary";
export const PRECOMPUTED: PrecomputedIntent[] = ["related", "complementary"];
export type Reason = "similar" | "bought_together" | "pinned" | "substitute" | "best_seller";
export type ListItem = { id: string; score: number; reason: Reason };
export type StoredList = { version: number; computed_at: number; items: ListItem[] };
export type ProductLists = { id: string; related?: StoredList; complementary?: StoredList };

/** Items kept per list: the largest `limit` (20) plus room for items filtered out at read time (market, stock). */
export const LIST_SIZE = 40;

export const recsKey = (id: string) => `recs:${id}`;

/** Pinned items first (in the merchandiser's order), then computed ones; excluded ids and the product itself never. */
export function withPins(productId: string, computed: ListItem[], pinned: string[], pins: RecommendationPins | undefined): ListItem[] {
  const exclude = new Set([productId, ...(pins?.exclude ?? [])]);
  const out: ListItem[] = [];
  const seen = new Set<string>();
  pinned.forEach((id, i) => {
    if (exclude.has(id) || seen.has(id)) return;
    seen.add(id);
    out.push({ id, score: 2 - i / 100, reason: "pinned" });
  });
  for (const item of computed) {
    if (exclude.has(item.id) || seen.has(item.id)) continue;
    seen.add(item.id);
    out.push(item);
  }
  return out.slice(0, LIST_SIZE);
}

const sameItems = (a: ListItem[], b: ListItem[]) =>
  a.length === b.length && a.every((x, i) => x.id === b[i]!.id && x.score === b[i]!.score && x.reason === b[i]!.reason);

type Row = { product_id: string; intent: string; items: string; version: number; computed_at: number };

export async function readStoredLists(d1: D1Database, ids: string[]): Promise<Map<string, ProductLists>> {
  const out = new Map<string, ProductLists>();
  if (!ids.length) return out;
  const { results } = await d1
    .prepare("SELECT product_id, intent, items, version, computed_at FROM recommendations WHERE product_id IN (SELECT value FROM json_each(?))")
    .bind(JSON.stringify(ids))
    .all<Row>();
  for (const r of results) {
    const entry = out.get(r.product_id) ?? { id: r.product_id };
    entry[r.intent as PrecomputedIntent] = { version: r.version, computed_at: r.computed_at, items: JSON.parse(r.items) as ListItem[] };
    out.set(r.product_id, entry);
  }
  return out;
}

export type ComputedLists = { id: string; related: ListItem[]; complementary: ListItem[] };

/**
 * Upserts the lists that changed (version + 1) and copies each changed product's lists to KV.
 * Returns the ids whose lists changed: their cached answers must be purged.
 */
export async function storeLists(env: Pick<Env, "DB" | "CATALOG_KV">, computed: ComputedLists[], now: number): Promise<string[]> {
  if (!computed.length) return [];
  const current = await readStoredLists(env.DB, computed.map((c) => c.id));
  const rows: { product_id: string; intent: string; items: ListItem[]; version: number }[] = [];
  const changed: ProductLists[] = [];
  for (const c of computed) {
    const cur = current.get(c.id);
    const next: ProductLists = { id: c.id };
    let any = false;
    for (const intent of PRECOMPUTED) {
      const prev = cur?.[intent];
      if (prev && sameItems(prev.items, c[intent])) {
        next[intent] = prev;
        continue;
      }
      any = true;
      const version = (prev?.version ?? 0) + 1;
      next[intent] = { version, computed_at: now, items: c[intent] };
      rows.push({ product_id: c.id, intent, items: c[intent], version });
    }
    if (any) changed.push(next);
  }
  // One statement per ~200 rows, the rows as a single JSON parameter (D1 caps bound parameters at 100).
  const stmts: D1PreparedStatement[] = [];
  for (let i = 0; i < rows.length; i += 200) {
    stmts.push(
      env.DB.prepare(
        `INSERT INTO recommendations (product_id, intent, items, version, computed_at)
         SELECT json_extract(value, '$.product_id'), json_extract(value, '$.intent'), json_extract(value, '$.items'), json_extract(value, '$.version'), ?
         FROM json_each(?) WHERE true
         ON CONFLICT (product_id, intent) DO UPDATE SET items = excluded.items, version = excluded.version, computed_at = excluded.computed_at
         WHERE excluded.version > recommendations.version`,
      ).bind(now, JSON.stringify(rows.slice(i, i + 200))),
    );
  }
  // KV first: if D1 then fails, the retry still sees a difference and rewrites both; the other way round a
  // failed KV write would never be repaired, since D1 would already hold the "unchanged" list.
  await Promise.all(changed.map((l) => env.CATALOG_KV.put(recsKey(l.id), JSON.stringify(l))));
  if (stmts.length) await env.DB.batch(stmts);
  return changed.map((l) => l.id);
}

/** Both lists of one product: KV first (global, close to the reader), else D1. */
export async function readLists(env: Pick<Env, "DB" | "CATALOG_KV">, id: string): Promise<ProductLists> {
  const kv = await env.CATALOG_KV.get<ProductLists>(recsKey(id), "json").catch(() => null);
  if (kv) return kv;
  return (await readStoredLists(env.DB, [id])).get(id) ?? { id };
}
