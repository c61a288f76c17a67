/**
 * Query text → FTS5 MATCH expression, forgiving one typo. A query word of TYPO_MIN_LENGTH letters or more that no catalog term starts
 * with (so neither a finished word nor one still being typed) is replaced by the catalog terms one edit away
 * from it: a letter dropped, added, changed, or two neighbours swapped. Candidates are generated here and looked
 * up by exact term in products_fts_vocab (fts5vocab: the index's own term list), so a lookup costs the same at
 * 10k products as at 10M. A word the catalog contains is never corrected: exact matches always win.
 */
import { sql } from "drizzle-orm";
import type { OriginSession } from "./origin";
import { ApiError } from "../lib/errors";

/** The query's words (at most 8): letters and digits only, so no FTS5 operator can come from the shopper. */
export function searchTerms(q: string): string[] {
  const terms = q.split(/[^\p{L}\p{N}]+/u).filter(Boolean).slice(0, 8);
  if (terms.length === 0) throw ApiError.badRequest("q must contain at least one letter or digit.", { errors: [{ location: "query", path: "q", message: "no searchable term" }] });
  return terms;
}

/**
 * FTS5 MATCH expression, all terms required: each quoted and prefix-matched, or, for a corrected word, any of its
 * corrections (whole terms). A word with no correction matches nothing (`"word"` alone), like before.
 */
export function ftsQuery(terms: { term: string; corrections?: string[] }[]): string {
  return terms
    .map(({ term, corrections }) => (corrections?.length ? `(${corrections.map((c) => `"${c}"`).join(" OR ")})` : `"${term}"*`))
    // Explicit AND: FTS5 rejects an implicit AND next to a parenthesised group.
    .join(" AND ");
}

/** Letters typed from which a word is corrected: a five-letter word with one letter dropped has four. */
export const TYPO_MIN_LENGTH = 4;
/** Words corrected per query: each costs one lookup of a few hundred candidates. */
const MAX_CORRECTED = 3;
/** Letters tried for insertions and substitutions: what the unicode61 tokenizer leaves after removing diacritics. */
const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** The index's form of a word: lower case, diacritics removed (unicode61 remove_diacritics 2). */
export const indexForm = (word: string) => word.normalize("NFD").replace(/\p{M}/gu, "").toLowerCase();

/** Every string one edit (deletion, transposition, substitution, insertion) away from `word`. */
export function oneEditAway(word: string): string[] {
  const out = new Set<string>();
  for (let i = 0; i < word.length; i++) out.add(word.slice(0, i) + word.slice(i + 1));
  for (let i = 0; i + 1 < word.length; i++) out.add(word.slice(0, i) + word[i + 1] + word[i] + word.slice(i + 2));
  for (let i = 0; i <= word.length; i++) {
    for (const c of ALPHABET) {
      out.add(word.slice(0, i) + c + word.slice(i));
      if (i < word.length) out.add(word.slice(0, i) + c + word.slice(i + 1));
    }
  }
  out.delete(word);
  return [...out];
}

/** Catalog terms a word may stand for before it is left to FTS5 as a prefix query. */
const MAX_EXPANSIONS = 16;

/**
 * The query's terms, each with the catalog terms it matches: the terms it is a prefix of (up to
 * MAX_EXPANSIONS), or, for a word no catalog term starts with, its one-edit corrections. FTS5 answers a
 * `"word"*` longer than its prefix indexes (2, 3) by merging every matching term's full doclist before the
 * first row (89 ms for "black" at 1M products, 0 at 10k), while `("black" OR "blacks")` is read lazily and stops
 * at the candidate limit (1 ms): spelling the prefix out is what keeps broad queries flat. No read for a query
 * of short words, one otherwise, two when a word must be corrected.
 */
export async function correctTerms(
  origin: OriginSession,
  q: string,
  { scope = "", now = Date.now() }: { scope?: string; now?: number } = {},
): Promise<{ term: string; corrections?: string[] }[]> {
  const terms = searchTerms(q).map((t) => ({ term: t, form: indexForm(t) }));
  const long = [...new Set(terms.filter((t) => t.form.length >= TYPO_MIN_LENGTH && /^[a-z0-9]+$/.test(t.form)).map((t) => t.form))];
  const alternatives = new Map<string, string[] | null>();
  for (const w of long) {
    const hit = vocabularyCache.get(`${scope}:${w}`);
    if (hit && now - hit.at < VOCABULARY_TTL_MS) alternatives.set(w, hit.terms);
  }
  const unknown = long.filter((w) => !alternatives.has(w));
  if (unknown.length > 0) {
    for (const [w, list] of await lookUpVocabulary(origin, unknown)) {
      alternatives.set(w, list);
      remember(`${scope}:${w}`, list, now);
    }
  }
  return terms.map((t) => {
    const list = alternatives.get(t.form);
    return list ? { term: t.term, corrections: list } : { term: t.term };
  });
}

/**
 * Reading a term from fts5vocab costs time in proportion to how many products hold it (the vocabulary counts
 * the term's documents as it reads it): "black" took 26 ms at 1M products, against 1 ms at 10k. Shoppers reuse
 * words far more than whole queries, so each word's expansion is kept per isolate for VOCABULARY_TTL_MS. A word
 * that first appears in the catalog meanwhile is found by prefix once the entry expires, as a KV document
 * reaches other locations within a minute. `scope` keeps apart vocabularies that differ (one per catalog partition).
 */
const VOCABULARY_TTL_MS = 30_000;
const VOCABULARY_CACHE_WORDS = 5_000;
/** `scope:word` → catalog terms the word stands for, or null (too many: left to FTS5 as a prefix query). */
const vocabularyCache = new Map<string, { at: number; terms: string[] | null }>();

function remember(key: string, terms: string[] | null, now: number) {
  vocabularyCache.delete(key);
  vocabularyCache.set(key, { at: now, terms });
  // A Map iterates in insertion order: the first key is the oldest entry.
  while (vocabularyCache.size > VOCABULARY_CACHE_WORDS) vocabularyCache.delete(vocabularyCache.keys().next().value!);
}

/** Each word's expansion (null when more than MAX_EXPANSIONS terms start with it) or, when none does, its corrections. */
async function lookUpVocabulary(origin: OriginSession, words: string[]): Promise<Map<string, string[] | null>> {
  // A range read on the term (fts5vocab supports it): the catalog terms that start with the word.
  const [found] = await origin.batch<[{ t: string; terms: string }[]]>([
    sql`SELECT j.value AS t, (SELECT json_group_array(term) FROM (SELECT v.term FROM products_fts_vocab v
        WHERE v.term >= j.value AND v.term < j.value || char(1114111) LIMIT ${MAX_EXPANSIONS + 1})) AS terms
      FROM json_each(${JSON.stringify(words)}) j`,
  ]);
  const out = new Map<string, string[] | null>();
  for (const r of found) {
    const list = JSON.parse(r.terms) as string[];
    if (list.length > 0) out.set(r.t, list.length <= MAX_EXPANSIONS ? list : null);
  }
  const missing = found.filter((r) => r.terms === "[]").map((r) => r.t).slice(0, MAX_CORRECTED);
  if (missing.length > 0) {
    const [hits] = await origin.batch<[{ w: string; term: string }[]]>([
      sql`SELECT j.key AS w, v.term AS term FROM json_each(${JSON.stringify(Object.fromEntries(missing.map((m) => [m, oneEditAway(m)])))}) j,
          json_each(j.value) c JOIN products_fts_vocab v ON v.term = c.value`,
    ]);
    for (const m of missing) out.set(m, []);
    for (const h of hits) out.get(h.w)!.push(h.term);
  }
  return out;
}
