/**
 * Similarity between products from what the catalog says about them: brand, attributes and title words.
 * Each product becomes a set of features; two products are as similar as the IDF-weighted share of the
 * features they have in common (weighted Jaccard), so a rare shared feature (a model line) counts far more
 * than a common one (colour black). IDF is computed within the block being compared (a leaf category).
 */

export type SimilarityInput = {
  id: string;
  title: string;
  brand: string;
  attributes: Record<string, string>;
  /** Minimum price per currency, minor units (for price closeness). */
  minPrices: Record<string, number>;
};

const STOP = new Set(["the", "a", "an", "and", "of", "for", "with", "&", "-", "in", "by"]);

export function titleTokens(title: string): string[] {
  return title
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((t) => t.length > 1 && !STOP.has(t));
}

/** Brand and attribute features weigh more than a title word: they are curated, words are not. */
const WEIGHT = { brand: 1.5, attr: 1.5, line: 2, token: 1 };

export type FeatureVector = Map<string, number>;

export function features(p: SimilarityInput): FeatureVector {
  const out: FeatureVector = new Map();
  out.set(`b:${p.brand.toLowerCase()}`, WEIGHT.brand);
  for (const [name, value] of Object.entries(p.attributes)) {
    out.set(`a:${name}=${String(value).toLowerCase()}`, name === "line" ? WEIGHT.line : WEIGHT.attr);
  }
  for (const t of titleTokens(p.title)) if (!out.has(`t:${t}`)) out.set(`t:${t}`, WEIGHT.token);
  return out;
}

/** Inverse document frequency of every feature across `vectors` (smoothed, always > 0). */
export function idf(vectors: FeatureVector[]): Map<string, number> {
  const df = new Map<string, number>();
  for (const v of vectors) for (const f of v.keys()) df.set(f, (df.get(f) ?? 0) + 1);
  const n = vectors.length;
  const out = new Map<string, number>();
  for (const [f, d] of df) out.set(f, Math.log(1 + n / d));
  return out;
}

/** Weighted Jaccard: Σ shared weight / Σ union weight, each feature weighted by its kind × IDF. In [0, 1]. */
export function similarity(a: FeatureVector, b: FeatureVector, weights: Map<string, number>, fallbackIdf = 1): number {
  let shared = 0;
  let total = 0;
  for (const [f, w] of a) {
    const x = w * (weights.get(f) ?? fallbackIdf);
    total += x;
    if (b.has(f)) shared += x;
  }
  for (const [f, w] of b) if (!a.has(f)) total += w * (weights.get(f) ?? fallbackIdf);
  return total > 0 ? shared / total : 0;
}

/** 1 when the prices are equal, falling towards 0 as they diverge (ratio-based, so it works at any price level). */
export function priceCloseness(a: number | undefined, b: number | undefined): number {
  if (a === undefined || b === undefined || a <= 0 || b <= 0) return 0;
  return Math.min(a, b) / Math.max(a, b);
}
