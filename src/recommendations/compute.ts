/**
 * Computes both precomputed lists for a set of products: `related` from the product's block (leaf category)
 * and `complementary` from co-purchase counts, each with the merchandiser's pins applied.
 */
import { activeAmong, everyPartitionById, partitioned, productRows, type CatalogEnv } from "./catalog-reads";
import type { SimilarityInput } from "./features";
import { LIST_SIZE, withPins, type ComputedLists, type ListItem } from "./lists";
import { readPins } from "./pins";
import { buildBlock, relatedInBlock, round, type Block } from "./related";

type ProductRow = { id: string; title: string; brand: string; attributes: string; min_prices: string };

/** Blocks loaded during one invocation, by category id (a chunked rebuild reuses the block across chunks). */
export type BlockCache = Map<string, Block>;

const BLOCK_SQL = "SELECT id, title, brand, attributes, min_prices FROM products WHERE category_id = ? AND +status = 'active' ORDER BY id"; // category index, not status

/** A leaf category's active products, from every partition (a block is compared as a whole). */
export async function loadBlock(env: CatalogEnv, categoryId: string, cache?: BlockCache): Promise<Block> {
  const hit = cache?.get(categoryId);
  if (hit) return hit;
  const results = partitioned(env)
    ? await everyPartitionById<ProductRow>(env, BLOCK_SQL, [categoryId])
    : (await env.DB.prepare(BLOCK_SQL).bind(categoryId).all<ProductRow>()).results;
  const block = buildBlock(results.map(toInput));
  cache?.set(categoryId, block);
  return block;
}

export function toInput(r: ProductRow): SimilarityInput {
  return { id: r.id, title: r.title, brand: r.brand, attributes: JSON.parse(r.attributes) as Record<string, string>, minPrices: JSON.parse(r.min_prices) as Record<string, number> };
}

/** Co-purchase partners (directory) of `ids` that are active products, best first. */
async function partners(env: CatalogEnv, ids: string[]): Promise<{ a: string; b: string; n: number }[]> {
  if (partitioned(env)) {
    // The counts are in the directory, the partners' status in their partitions: read both, filter here.
    const { results } = await env.DB.prepare(
      "SELECT c.product_a AS a, c.product_b AS b, c.count AS n FROM co_purchases c WHERE c.product_a IN (SELECT value FROM json_each(?)) ORDER BY c.product_a, c.count DESC, c.product_b",
    )
      .bind(JSON.stringify(ids))
      .all<{ a: string; b: string; n: number }>();
    const active = await activeAmong(env, [...new Set(results.map((r) => r.b))]);
    return results.filter((r) => active.has(r.b));
  }
  const { results } = await env.DB
    .prepare(
      // CROSS JOIN pins the join order: left to itself SQLite walks every active product (products_status_idx)
      // and probes co_purchases for each, a full scan per chunk that made a rebuild quadratic in the catalog.
      `SELECT c.product_a AS a, c.product_b AS b, c.count AS n FROM co_purchases c CROSS JOIN products p ON p.id = c.product_b
       WHERE c.product_a IN (SELECT value FROM json_each(?)) AND p.status = 'active' ORDER BY c.product_a, c.count DESC, c.product_b`,
    )
    .bind(JSON.stringify(ids))
    .all<{ a: string; b: string; n: number }>();
  return results;
}

/** Co-purchase partners of each product, scored by count relative to the product's strongest partner. */
export async function complementaryFor(env: CatalogEnv, ids: string[]): Promise<Map<string, ListItem[]>> {
  const out = new Map<string, ListItem[]>();
  if (!ids.length) return out;
  const results = await partners(env, ids);
  const grouped = new Map<string, { b: string; n: number }[]>();
  for (const r of results) grouped.set(r.a, [...(grouped.get(r.a) ?? []), { b: r.b, n: r.n }]);
  for (const [a, partners] of grouped) {
    const top = partners[0]!.n;
    out.set(a, partners.slice(0, LIST_SIZE).map((p) => ({ id: p.b, score: round(p.n / top), reason: "bought_together" as const })));
  }
  return out;
}

/**
 * Both lists for `ids` (products that are not active get empty lists, so stale answers disappear).
 * Blocks are loaded once per category through `blocks`.
 */
export async function computeLists(env: CatalogEnv, ids: string[], blocks: BlockCache = new Map()): Promise<ComputedLists[]> {
  if (!ids.length) return [];
  const results = await productRows<{ id: string; category_id: string; status: string }>(env, "id, category_id, status", ids);
  const [pins, complementary] = await Promise.all([readPins(env.DB, ids), complementaryFor(env, ids)]);
  const out: ComputedLists[] = [];
  for (const r of results) {
    if (r.status !== "active") {
      out.push({ id: r.id, related: [], complementary: [] });
      continue;
    }
    const block = await loadBlock(env, r.category_id, blocks);
    const p = pins.get(r.id);
    out.push({
      id: r.id,
      related: withPins(r.id, relatedInBlock(block, r.id, LIST_SIZE), p?.related ?? [], p),
      complementary: withPins(r.id, complementary.get(r.id) ?? [], p?.complementary ?? [], p),
    });
  }
  return out;
}
