/**
 * SKU uniqueness over catalog partitions. Within one database the variants primary key makes a SKU unique; two
 * products in different partitions could still both take one (each partition's check passes before the other
 * writes). So with more than one partition, a writer first claims its SKUs in the directory (`sku_owners`,
 * partition 0) in one transaction: the directory serialises the claims, and of two writers of the same SKU the
 * second sees the first's claim and gets 409 (or its import line is rejected).
 *
 * A claim is made before the partition write and released if that write fails. A crash in between leaves a claim
 * with no variant behind it: after ORPHAN_AFTER_MS, a writer finding such a claim (its owner holds no variant of
 * that SKU in its partition) takes it over with a compare-and-set. With one partition nothing is claimed.
 */
import { catalogDb, partitionCount } from "../db/partitions";

type ClaimEnv = Pick<Env, "DB"> & { CATALOG_PARTITIONS?: string };
export type TakenSku = { sku: string; product_id: string };

/** A claim this old whose owner holds no such variant is an orphan of a crashed write. */
export const ORPHAN_AFTER_MS = 60 * 60_000;

/**
 * Claims `skus` for `productId` (keeping those it owns already). Returns the SKUs newly claimed (to release if the
 * write then fails) and those owned by other products.
 */
export async function claimSkus(env: ClaimEnv, productId: string, skus: string[], now = Date.now()): Promise<{ claimed: string[]; taken: TakenSku[] }> {
  if (partitionCount(env) === 1 || skus.length === 0) return { claimed: [], taken: [] };
  const db = env.DB;
  const list = JSON.stringify(skus);
  const [inserted, others] = await db.batch([
    db.prepare("INSERT INTO sku_owners (sku, product_id, claimed_at) SELECT value, ?2, ?3 FROM json_each(?1) WHERE 1 ON CONFLICT (sku) DO NOTHING RETURNING sku").bind(list, productId, now),
    db.prepare("SELECT sku, product_id, claimed_at FROM sku_owners WHERE sku IN (SELECT value FROM json_each(?1)) AND product_id <> ?2").bind(list, productId),
  ]);
  const claimed = (inserted!.results as { sku: string }[]).map((r) => r.sku);
  const taken: TakenSku[] = [];
  for (const other of others!.results as (TakenSku & { claimed_at: number })[]) {
    if (other.claimed_at < now - ORPHAN_AFTER_MS && !(await holds(env, other.product_id, other.sku))) {
      const moved = await db
        .prepare("UPDATE sku_owners SET product_id = ?3, claimed_at = ?4 WHERE sku = ?1 AND product_id = ?2 AND claimed_at = ?5")
        .bind(other.sku, other.product_id, productId, now, other.claimed_at)
        .run();
      if (moved.meta.changes === 1) {
        claimed.push(other.sku);
        continue;
      }
    }
    taken.push({ sku: other.sku, product_id: other.product_id });
  }
  if (taken.length > 0) await releaseSkus(env, productId, claimed);
  return { claimed: taken.length > 0 ? [] : claimed, taken };
}

/** Gives back claims made for a write that did not happen. */
export async function releaseSkus(env: ClaimEnv, productId: string, skus: string[]): Promise<void> {
  if (skus.length === 0) return;
  await env.DB.prepare("DELETE FROM sku_owners WHERE product_id = ?2 AND sku IN (SELECT value FROM json_each(?1))").bind(JSON.stringify(skus), productId).run();
}

/**
 * Claims the SKUs of an import's chunk, line by line: returns the lines whose SKUs another product owns (their
 * other claims given back). Claims carry the import, so an aborted import releases them (`releaseImportClaims`).
 */
export async function claimImportSkus(env: ClaimEnv, importId: string, rows: { line: number; id: string; skus: string[] }[], now = Date.now()): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  if (partitionCount(env) === 1 || rows.length === 0) return out;
  const db = env.DB;
  const pairs = JSON.stringify(rows.flatMap((r) => r.skus.map((sku) => [r.line, sku, r.id])));
  const [, others] = await db.batch([
    db.prepare(
      // A SKU another import claimed for the same product: both rely on that claim now, so it becomes no import's
      // (import_id NULL): neither one's rejection or abort may release it (an unused one ends by the orphan takeover).
      `INSERT INTO sku_owners (sku, product_id, claimed_at, import_id)
       SELECT json_extract(value, '$[1]'), json_extract(value, '$[2]'), ?2, ?3 FROM json_each(?1) WHERE 1
       ON CONFLICT (sku) DO UPDATE SET import_id = NULL WHERE sku_owners.product_id = excluded.product_id AND sku_owners.import_id <> excluded.import_id`,
    ).bind(pairs, now, importId),
    db.prepare(
      `SELECT json_extract(x.value, '$[0]') AS line, o.sku, o.product_id FROM json_each(?1) x
       JOIN sku_owners o ON o.sku = json_extract(x.value, '$[1]') WHERE o.product_id <> json_extract(x.value, '$[2]')`,
    ).bind(pairs),
  ]);
  for (const r of others!.results as { line: number; sku: string; product_id: string }[]) if (!out.has(r.line)) out.set(r.line, `sku ${r.sku} belongs to product ${r.product_id}`);
  if (out.size > 0) {
    const lost = rows.filter((r) => out.has(r.line)).flatMap((r) => r.skus.map((sku) => [sku, r.id]));
    await db
      .prepare("DELETE FROM sku_owners WHERE import_id = ?2 AND (sku, product_id) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1))")
      .bind(JSON.stringify(lost), importId)
      .run();
  }
  return out;
}

/**
 * Gives back the claims an import made for `productIds` (lines rejected after their chunk claimed them). An import
 * stages one line per product, and a claim carries the import that made it, so no other line's claim is touched.
 */
export async function releaseImportProductClaims(env: ClaimEnv, importId: string, productIds: string[]): Promise<void> {
  if (partitionCount(env) === 1 || productIds.length === 0) return;
  await env.DB.prepare("DELETE FROM sku_owners WHERE import_id = ?1 AND product_id IN (SELECT value FROM json_each(?2))").bind(importId, JSON.stringify(productIds)).run();
}

/** Gives back, a bounded number at a time, the claims of an aborted import; true once none is left. */
export async function releaseImportClaims(env: ClaimEnv, importId: string, limit = 5_000): Promise<boolean> {
  const res = await env.DB.prepare("DELETE FROM sku_owners WHERE rowid IN (SELECT rowid FROM sku_owners WHERE import_id = ? LIMIT ?)").bind(importId, limit).run();
  return res.meta.changes < limit;
}

async function holds(env: ClaimEnv, productId: string, sku: string): Promise<boolean> {
  return !!(await catalogDb(env, productId).prepare("SELECT 1 AS ok FROM variants WHERE sku = ? AND product_id = ?").bind(sku, productId).first());
}
