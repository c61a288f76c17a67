/**
 * `related`: the products most similar to each product of a block (its leaf category). Comparing every pair
 * of a 5,000-product block is 25 M comparisons, so candidates come from an inverted index instead: a
 * product is compared only with the products sharing its rarest features (model line, brand, rare words),
 * widening to commoner features until there are enough candidates.
 */
import { features, idf, similarity, type FeatureVector, type SimilarityInput } from "./features";
import type { ListItem } from "./lists";

/** Candidates scored per product; more only costs CPU, fewer risks missing a close match. */
const CANDIDATES = 150;
/** Features shared by more products than this are too common to generate candidates (they still score). */
const MAX_POSTING = 2_000;

export type Block = {
  products: SimilarityInput[];
  vectors: FeatureVector[];
  weights: Map<string, number>;
  postings: Map<string, number[]>;
  index: Map<string, number>;
};

export function buildBlock(products: SimilarityInput[]): Block {
  const vectors = products.map(features);
  const weights = idf(vectors);
  const postings = new Map<string, number[]>();
  vectors.forEach((v, i) => {
    for (const f of v.keys()) {
      const list = postings.get(f);
      if (list) list.push(i);
      else postings.set(f, [i]);
    }
  });
  return { products, vectors, weights, postings, index: new Map(products.map((p, i) => [p.id, i])) };
}

/** The `k` most similar products of the block to `id` (never `id` itself), best first. */
export function relatedInBlock(block: Block, id: string, k: number): ListItem[] {
  const i = block.index.get(id);
  if (i === undefined) return [];
  const own = block.vectors[i]!;
  const byRarity = [...own.keys()].sort((a, b) => (block.postings.get(a)?.length ?? 0) - (block.postings.get(b)?.length ?? 0));
  const candidates = new Set<number>();
  for (const f of byRarity) {
    const posting = block.postings.get(f) ?? [];
    if (posting.length > MAX_POSTING && candidates.size > 0) break;
    for (const j of posting) if (j !== i) candidates.add(j);
    if (candidates.size >= CANDIDATES) break;
  }
  const scored: ListItem[] = [];
  for (const j of candidates) {
    const s = similarity(own, block.vectors[j]!, block.weights);
    if (s > 0) scored.push({ id: block.products[j]!.id, score: round(s), reason: "similar" });
  }
  scored.sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1));
  return scored.slice(0, k);
}

export const round = (x: number) => Math.round(x * 10_000) / 10_000;
