/**
 * Which products a feed page holds.
 *
 * Full sync (no `since`): active products in scope by id (keyset), limited to those whose change_seq is at
 * or below the high-water mark captured on the first page. A product changed during a multi-page sync is
 * thus left out of the listing and shows up in the next delta instead: every change appears exactly once.
 *
 * Delta (`since`): every product with since < change_seq <= hwm, in change_seq order. Active products in
 * scope come back as items; archived products in scope as `archived` tombstones (naming only the SKUs the
 * affiliate's allow-list admits), and active products a change took out of scope (new brand or category,
 * narrower affiliate scope) as `out_of_scope` ones. Drafts are never named, and neither are archived products
 * outside the scope: an affiliate must not learn of products it may not show, unreleased ones least of all.
 * (A live product moved back to draft therefore stays in an affiliate's copy until its next full sync;
 * archiving is the way to withdraw one.) Nothing records what an affiliate was shown before, so out-of-scope
 * tombstones also name products it never had: deleting an unknown id is a no-op.
 * change_seq is global and bumped by every product write (one D1 transaction each), so a product changed
 * twice between syncs appears once, in its latest state, and paging by change_seq can neither skip nor
 * repeat an entry.
 *
 * With N catalog partitions (src/db/partitions.ts) change_seq is per partition: tokens hold one position per
 * partition, each partition answers the same query from its own position (one batch each, in parallel), and the
 * page merges them: a delta takes a prefix of each partition's changes (so no partition's position skips one) in
 * order of time, a full sync merges by id. A product's changes are all in its partition's sequence, so they keep
 * their order.
 */
import type { AffiliateScope } from "../affiliates/account";
import { loadProductDocuments, type LoadedDocument } from "../catalog/document";
import { scopeConditions } from "./scope";
import { asList } from "../db/partitions";
import { visibleProductSql } from "../imports/visibility";
import { decodeCursor, decodeSince, encodeCursor, encodeSince, resolvePositions } from "./token";
import { owns } from "../db/ownership";

/** `status`: archived | out_of_scope. */
export type Tombstone = { id: string; status: string; change_seq: number; removed_at: number; skus: string[] };

export type FeedPage = {
  mode: "full" | "delta";
  live: LoadedDocument[];
  removed: Tombstone[];
  next_cursor: string | null;
  next_since: string;
  has_more: boolean;
};

export type PageRequest = {
  scope: AffiliateScope;
  filters: { category?: string; brand?: string };
  limit: number;
  since?: string;
  cursor?: string;
  /** Render currency and locale: only these prices and translations are loaded. */
  currency?: string;
  locale?: string;
};

const HIGH_WATER_SQL = "SELECT coalesce(max(change_seq), 0) AS hwm FROM products";

type ChangeRow = { id: string; status: string; change_seq: number; updated_at: number; in_scope: number };

/** Documents and tombstone SKUs of a page, read from the partition holding each product, in page order. */
async function loadPage(dbs: readonly D1Database[], rows: { id: string; part: number }[], live: (id: string) => boolean, req: PageRequest) {
  const docs: LoadedDocument[] = [];
  const skus = new Map<string, string[]>();
  await Promise.all(
    dbs.map(async (db, part) => {
      const mine = rows.filter((r) => r.part === part);
      if (mine.length === 0 && dbs.length > 1) return;
      const [loaded, gone] = await Promise.all([
        loadProductDocuments(db, mine.filter((r) => live(r.id)).map((r) => r.id), { only: req, badJson: "fallback" }),
        skusOf(db, mine.filter((r) => !live(r.id)).map((r) => r.id)),
      ]);
      docs.push(...loaded);
      for (const [id, list] of gone) skus.set(id, list);
    }),
  );
  const order = new Map(rows.map((r, i) => [r.id, i]));
  docs.sort((a, b) => order.get(a.doc.id)! - order.get(b.doc.id)!);
  return { docs, skus };
}

/** `db` is one database, or every catalog partition in partition order. */
export async function selectPage(db: D1Database | readonly D1Database[], req: PageRequest): Promise<FeedPage> {
  const dbs = asList(db);
  const conditions = scopeConditions(req.scope, req.filters);
  const extraSql = conditions.map((c) => ` AND ${c.sql}`).join("");
  const extraBinds = conditions.flatMap((c) => c.binds);

  if (req.since !== undefined) {
    const since = await resolvePositions(dbs, decodeSince(req.since, dbs.length));
    const parts = await Promise.all(
      dbs.map(async (d, i) => {
        // One batch = one transaction: the high-water mark and the rows below it come from the same snapshot.
        const [hwmRes, rowsRes] = await d.batch([
          d.prepare(HIGH_WATER_SQL),
          d
            .prepare(
              `SELECT p.id, p.status, p.change_seq, p.updated_at, ${conditions.length ? `CASE WHEN ${conditions.map((c) => c.sql).join(" AND ")} THEN 1 ELSE 0 END` : "1"} AS in_scope
               FROM products p WHERE p.change_seq > ? AND p.change_seq <= (${HIGH_WATER_SQL}) ORDER BY p.change_seq LIMIT ?`,
            )
            .bind(...extraBinds, since[i]!, req.limit + 1),
        ]);
        const hwm = (hwmRes!.results[0] as { hwm: number } | undefined)?.hwm ?? 0;
        return { hwm, rows: rowsRes!.results as ChangeRow[] };
      }),
    );
    // A prefix of each partition's changes, interleaved oldest write first (one partition: its own order).
    const heads = parts.map(() => 0);
    const page: (ChangeRow & { part: number })[] = [];
    while (page.length < req.limit) {
      let best = -1;
      for (let i = 0; i < parts.length; i++) {
        const row = parts[i]!.rows[heads[i]!];
        if (row && (best < 0 || row.updated_at < parts[best]!.rows[heads[best]!]!.updated_at)) best = i;
      }
      if (best < 0) break;
      const row = parts[best]!.rows[heads[best]!++]!;
      if (owns(dbs.length, best, row.id)) page.push({ ...row, part: best });
    }
    // A partition gave all it had when this page took every row it returned and it returned no more than a page.
    const drained = parts.map((p, i) => heads[i] === p.rows.length && p.rows.length <= req.limit);
    const hasMore = drained.includes(false);
    // Each partition resumes after the last change it gave this page; one that gave all it had, from its high-water mark.
    const next = parts.map((p, i) => (drained[i] ? Math.max(p.hwm, since[i]!) : heads[i]! > 0 ? p.rows[heads[i]! - 1]!.change_seq : since[i]!));
    const shaped = page.map((r) => ({ ...r, status: r.status === "active" && r.in_scope !== 1 ? "out_of_scope" : r.status }));
    const gone = shaped.filter((r) => r.status === "out_of_scope" || (r.status === "archived" && r.in_scope === 1));
    const liveIds = new Set(shaped.filter((r) => r.status === "active").map((r) => r.id));
    const { docs: live, skus } = await loadPage(dbs, shaped.filter((r) => liveIds.has(r.id) || gone.includes(r)), (id) => liveIds.has(id), req);
    const allowed = req.scope.skus?.length ? new Set(req.scope.skus) : undefined;
    return {
      mode: "delta",
      live,
      removed: gone.map((r) => ({
        id: r.id,
        status: r.status,
        change_seq: r.change_seq,
        removed_at: r.updated_at,
        skus: (skus.get(r.id) ?? []).filter((sku) => !allowed || allowed.has(sku)),
      })),
      next_cursor: null,
      next_since: encodeSince(next),
      has_more: hasMore,
    };
  }

  const decoded = req.cursor !== undefined ? decodeCursor(req.cursor, dbs.length) : undefined;
  const cursor = decoded && { after: decoded.after, hwm: await resolvePositions(dbs, decoded.hwm) };
  // Unscoped, walking products_status_idx in id order is ideal (stops after `limit` rows); with a scope, `+` disables
  // it so the scope's own index (brand, category, or the SKUs' product ids) finds the rows: the walk read the whole
  // catalog to fill a page for a narrow scope.
  const status = conditions.length ? "+p.status" : "p.status";
  const parts = await Promise.all(
    dbs.map(async (d, i) => {
      // The first page captures the high-water mark in the same transaction as its rows; later pages reuse it.
      const [hwmRes, rowsRes] = await d.batch([
        d.prepare(cursor ? "SELECT ? AS hwm" : HIGH_WATER_SQL).bind(...(cursor ? [cursor.hwm[i]!] : [])),
        d
          .prepare(
            `SELECT p.id FROM products p
             WHERE ${status} = 'active' AND ${visibleProductSql("p")} AND p.change_seq <= ${cursor ? "?" : `(${HIGH_WATER_SQL})`} AND p.id > ?${extraSql} ORDER BY p.id LIMIT ?`,
          )
          .bind(...(cursor ? [cursor.hwm[i]!] : []), cursor?.after ?? "", ...extraBinds, req.limit + 1),
      ]);
      const hwm = (hwmRes!.results[0] as { hwm: number } | undefined)?.hwm ?? 0;
      return { hwm, rows: (rowsRes!.results as { id: string }[]).map((r) => ({ id: r.id, part: i })) };
    }),
  );
  const hwm = parts.map((p) => p.hwm);
  // Every partition read the ids after the same cursor. A partition that returned limit + 1 may have more after its
  // last id, so only ids up to the smallest such last id are known; merged by id, the first limit of those are the
  // catalog's. (With every partition's own rows only, see `owns`, the cursor can be that bound on a short page.)
  const cut = parts.filter((p) => p.rows.length > req.limit).map((p) => p.rows.at(-1)!.id);
  const bound = cut.length ? cut.reduce((a, b) => (a < b ? a : b)) : undefined;
  const rows =
    parts.length === 1
      ? parts[0]!.rows
      : parts
          .flatMap((p) => p.rows.filter((r) => owns(dbs.length, r.part, r.id) && (bound === undefined || r.id <= bound)))
          .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const pageRows = rows.slice(0, req.limit);
  const after = rows.length > req.limit ? pageRows.at(-1)!.id : bound;
  return {
    mode: "full",
    live: (await loadPage(dbs, pageRows, () => true, req)).docs,
    removed: [],
    next_cursor: after !== undefined ? encodeCursor(after, hwm) : null,
    next_since: encodeSince(hwm),
    has_more: after !== undefined,
  };
}

/** Every SKU a product ever had (archived ones too): Google tombstones name item ids, not product ids. */
async function skusOf(db: D1Database, productIds: string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  if (productIds.length === 0) return out;
  const rows = (
    await db
      .prepare("SELECT product_id, sku FROM variants WHERE product_id IN (SELECT value FROM json_each(?)) ORDER BY product_id, position")
      .bind(JSON.stringify(productIds))
      .all<{ product_id: string; sku: string }>()
  ).results;
  for (const r of rows) out.set(r.product_id, [...(out.get(r.product_id) ?? []), r.sku]);
  return out;
}
