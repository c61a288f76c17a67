/**
 * The admin's product list: every status (drafts and archived included), newest id order with a keyset cursor,
 * or a search (an exact product id or SKU, else full-text over title, brand, description and attributes).
 * Over catalog partitions (src/db/partitions.ts) each partition answers and the pages are merged: by id for the
 * list (the cursor is the last id, valid in every partition), partition by partition for a search.
 */
import { asList } from "../db/partitions";

export type AdminProductRow = {
  id: string;
  slug: string;
  title: string;
  brand: string;
  category_id: string;
  status: string;
  in_stock: number;
  version: number;
  updated_at: number;
  min_prices: Record<string, number>;
  variants: number;
};

type RawRow = Omit<AdminProductRow, "min_prices"> & { min_prices: string | null };

const COLUMNS = `p.id, p.slug, p.title, p.brand, p.category_id, p.status, p.in_stock, p.version, p.updated_at, p.min_prices,
  (SELECT count(*) FROM variants v WHERE v.product_id = p.id) AS variants`;

/** Each term quoted (raw input in MATCH can be an fts5 syntax error) and prefix-matched. */
function ftsQuery(q: string): string | undefined {
  const terms = q
    .split(/\s+/)
    .map((t) => t.replace(/"/g, ""))
    .filter(Boolean)
    .slice(0, 8);
  return terms.length ? terms.map((t) => `"${t}"*`).join(" ") : undefined;
}

function toRow(r: RawRow): AdminProductRow {
  return { ...r, min_prices: r.min_prices ? (JSON.parse(r.min_prices) as Record<string, number>) : {} };
}

type ListOptions = { q?: string; status?: "active" | "draft" | "archived"; after?: string; limit: number };

export async function listAdminProducts(dbs: D1Database | readonly D1Database[], opts: ListOptions): Promise<{ items: AdminProductRow[]; next_cursor: string | null }> {
  const list = asList(dbs);
  if (list.length === 1) return listIn(list[0]!, opts);
  const pages = await Promise.all(list.map((db) => listIn(db, opts)));
  const all = pages.flatMap((p) => p.items);
  if (opts.q?.trim()) return { items: all.slice(0, opts.limit), next_cursor: null };
  all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const items = all.slice(0, opts.limit);
  // More exists when another page holds ids beyond this page, or any partition said it had more.
  const more = all.length > opts.limit || pages.some((p) => p.next_cursor !== null);
  return { items, next_cursor: more && items.length ? items.at(-1)!.id : null };
}

async function listIn(
  db: D1Database,
  opts: ListOptions,
): Promise<{ items: AdminProductRow[]; next_cursor: string | null }> {
  const q = opts.q?.trim();
  if (q) {
    const exact = await db
      .prepare(`SELECT ${COLUMNS} FROM products p WHERE p.id = ?1 OR p.id = (SELECT product_id FROM variants WHERE sku = ?1)`)
      .bind(q)
      .all<RawRow>();
    if (exact.results.length) return { items: exact.results.map(toRow), next_cursor: null };
    const match = ftsQuery(q);
    if (!match) return { items: [], next_cursor: null };
    const { results } = await db
      .prepare(
        `SELECT ${COLUMNS} FROM products_fts f JOIN products p ON p.rowid = f.rowid
         WHERE products_fts MATCH ?1 AND (?2 IS NULL OR p.status = ?2) ORDER BY f.rank LIMIT ?3`,
      )
      .bind(match, opts.status ?? null, opts.limit)
      .all<RawRow>();
    return { items: results.map(toRow), next_cursor: null };
  }
  const { results } = await db
    .prepare(
      opts.status
        ? `SELECT ${COLUMNS} FROM products p WHERE p.status = ?1 AND p.id > ?2 ORDER BY p.id LIMIT ?3`
        : `SELECT ${COLUMNS} FROM products p WHERE p.id > ?2 AND ?1 IS NULL ORDER BY p.id LIMIT ?3`,
    )
    .bind(opts.status ?? null, opts.after ?? "", opts.limit + 1)
    .all<RawRow>();
  const items = results.slice(0, opts.limit).map(toRow);
  return { items, next_cursor: results.length > opts.limit ? items.at(-1)!.id : null };
}

export type ImportSummary = { import_id: string; status: string; format: string; total_lines: number; accepted: number; rejected_count: number; created_at: number; finished_at: number | null };

export async function listImports(db: D1Database, limit: number): Promise<ImportSummary[]> {
  const { results } = await db
    .prepare(
      `SELECT id AS import_id, status, format, total_lines, accepted, rejected AS rejected_count, created_at, finished_at
       FROM imports ORDER BY created_at DESC LIMIT ?`,
    )
    .bind(limit)
    .all<ImportSummary>();
  return results;
}
