/**
 * What recommendations read of the catalog, over catalog partitions (src/db/partitions.ts). The recommendation
 * tables (lists, pins, co-purchases, sales) live in the directory `DB`; products live in their partitions. With one
 * partition every function here issues exactly the statement it replaced, on `DB`; with more, each product is read
 * in its own partition, and a category's products (a related block, a rebuild page) are gathered from all of them
 * in id order.
 */
import { allCatalogDbs, groupByPartition, partitionCount, partitionDb } from "../db/partitions";
import { loadDocs, type CardScope, type LoadedDoc } from "./cards";

export type CatalogEnv = Pick<Env, "DB" | "CATALOG_PARTITIONS">;

export const partitioned = (env: CatalogEnv) => partitionCount(env) > 1;

/** Runs `read` once per partition holding some of `ids`, with that partition's ids; results concatenated. */
async function perPartition<T>(env: CatalogEnv, ids: readonly string[], read: (db: D1Database, ids: string[]) => Promise<T[]>): Promise<T[]> {
  const groups = groupByPartition(env, [...new Set(ids)], (id) => id);
  return (await Promise.all(groups.map(([p, group]) => read(partitionDb(env, p), group)))).flat();
}

/** Card documents of `ids`, each from its partition (one D1 batch per partition touched). */
export async function loadCards(env: CatalogEnv, ids: string[], scope: CardScope): Promise<Map<string, LoadedDoc>> {
  if (!partitioned(env)) return loadDocs(env.DB, ids, scope);
  return new Map(await perPartition(env, ids, async (db, group) => [...(await loadDocs(db, group, scope))]));
}

/** `SELECT columns FROM products WHERE id IN ids`, each id in its partition. */
export async function productRows<T>(env: CatalogEnv, columns: string, ids: readonly string[]): Promise<T[]> {
  if (ids.length === 0) return [];
  return perPartition(env, ids, async (db, group) =>
    (await db.prepare(`SELECT ${columns} FROM products WHERE id IN (SELECT value FROM json_each(?))`).bind(JSON.stringify(group)).all<T>()).results,
  );
}

/** The active products among `ids`. */
export async function activeAmong(env: CatalogEnv, ids: readonly string[]): Promise<Set<string>> {
  const rows = await productRows<{ id: string; status: string }>(env, "id, status", ids);
  return new Set(rows.filter((r) => r.status === "active").map((r) => r.id));
}

const byId = <T extends { id: string }>(a: T, b: T) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** The same query in every partition, rows merged in id order (each partition's rows are in id order). */
export async function everyPartitionById<T extends { id: string }>(env: CatalogEnv, sql: string, params: unknown[], limit?: number): Promise<T[]> {
  const all = (await Promise.all(allCatalogDbs(env).map(async (db) => (await db.prepare(sql).bind(...params).all<T>()).results))).flat().sort(byId);
  return limit === undefined ? all : all.slice(0, limit);
}

/** Rebuild scope: leaf categories holding an active product in any partition, and the number of active products. */
export async function rebuildScope(env: CatalogEnv): Promise<{ categories: string[]; total: number }> {
  const parts = await Promise.all(
    allCatalogDbs(env).map(async (db) => {
      const [cats, total] = await db.batch([
        // Per category an indexed probe for one active product, instead of a DISTINCT over every product.
        db.prepare("SELECT c.id AS category_id FROM categories c WHERE EXISTS (SELECT 1 FROM products p WHERE p.category_id = c.id AND +p.status = 'active') ORDER BY c.id"),
        db.prepare("SELECT count(*) AS n FROM products WHERE status = 'active'"),
      ]);
      return { categories: (cats!.results as { category_id: string }[]).map((r) => r.category_id), total: (total!.results[0] as { n: number }).n };
    }),
  );
  return { categories: [...new Set(parts.flatMap((p) => p.categories))].sort(), total: parts.reduce((n, p) => n + p.total, 0) };
}
