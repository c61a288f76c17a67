/**
 * Brute-force expectations over the generated seed for listing and search tests: the FTS tokenizer's matching,
 * facet counts, and a walk of every page of a listing.
 */
import { expect } from "vitest";
import { priceBucketLabel } from "../../src/catalog/facets";
import { categories as seedCategories, type SeedProduct } from "../../src/seed/generate";
import { call } from "./http";

export type Item = { id: string; title: string; brand: string; category_id: string; price: { amount: number; currency: string } | null; in_stock: boolean; created_at: string };
export type Page = { items: Item[]; next_cursor: string | null };
export type FacetValue = { value: string; count: number };
export type Search = Page & {
  total: number;
  total_exact: boolean;
  facets_exact: boolean;
  facets: {
    brand: FacetValue[];
    category: { id: string; slug: string; name: string; count: number }[];
    attributes: Record<string, FacetValue[]>;
    price: { min: number; max: number | null; count: number; currency: string }[];
  };
};


export const minPrice = (p: SeedProduct, cur: string) => Math.min(...p.variants.map((v) => v.prices[cur]!));
export const tally = <T>(list: T[], key: (t: T) => string | undefined) => {
  const m: Record<string, number> = {};
  for (const t of list) {
    const k = key(t);
    if (k !== undefined) m[k] = (m[k] ?? 0) + 1;
  }
  return m;
};
export const asMap = (list: FacetValue[]) => Object.fromEntries(list.map((f) => [f.value, f.count]));

/** The FTS tokenizer's view of a text (unicode61, diacritics removed), for brute-force matching. */
export const tokens = (text: string) => text.normalize("NFD").replace(/\p{M}/gu, "").toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);
export const matches = (p: SeedProduct, q: string) => {
  const docTokens = [p.title, p.brand, p.description, JSON.stringify(p.attributes)].flatMap(tokens);
  return tokens(q).every((term) => docTokens.some((t) => t.startsWith(term)));
};

/** Expected facets by brute force over the generated seed. */
export function bruteFacets(list: SeedProduct[], currency: string) {
  const cats = seedCategories();
  const leaf = tally(list, (p) => p.categoryId);
  const category: Record<string, number> = {};
  for (const c of cats) {
    const n = cats.filter((o) => o.path.startsWith(c.path)).reduce((s, o) => s + (leaf[o.id] ?? 0), 0);
    if (n > 0) category[c.id] = n;
  }
  const attributes: Record<string, Record<string, number>> = {};
  for (const p of list) for (const [k, v] of Object.entries(p.attributes)) (attributes[k] ??= {})[v] = (attributes[k]![v] ?? 0) + 1;
  return { brand: tally(list, (p) => p.brand), category, attributes, price: tally(list, (p) => priceBucketLabel(minPrice(p, currency))) };
}

export function actualFacets(s: Search) {
  return {
    brand: asMap(s.facets.brand),
    category: Object.fromEntries(s.facets.category.map((c) => [c.id, c.count])),
    attributes: Object.fromEntries(Object.entries(s.facets.attributes).map(([k, v]) => [k, asMap(v)])),
    price: Object.fromEntries(s.facets.price.map((b) => [priceBucketLabel(b.min), b.count])),
  };
}

export async function pageAll(path: string, limit: number, during?: (page: number) => Promise<void>): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  let page = 0;
  do {
    const sep = path.includes("?") ? "&" : "?";
    // The writes race the page read (same moment), not just run between pages.
    const [res]: [Response, unknown] = await Promise.all([call(`${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`), during?.(page++)]);
    expect(res.status).toBe(200);
    const body = await res.json<Page>();
    ids.push(...body.items.map((i) => i.id));
    cursor = body.next_cursor;
  } while (cursor);
  return ids;
}
