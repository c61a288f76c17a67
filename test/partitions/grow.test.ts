/**
 * Growing N = 1 → 2 with the copy steps of src/db/grow.ts, at small scale: a catalog written with one partition (DB)
 * is copied half into CATALOG_1 in chunks while an admin write lands in the old partition, replayed, flipped to
 * CATALOG_PARTITIONS = 2 and cleaned up; then the API (N = 2) sees the same catalog, the write included. Then what
 * feeds' `since` tokens and stock flags see across a growth: every change after a token's position is delivered,
 * in either partition, and stock that moved during the copy is what the new partition says.
 *
 * Storage is shared by the tests of this file: each grows its own products (ids from its own range) into partitions
 * that earlier tests already grew.
 */
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../src/app";
import { copyChunk, copyShared, deleteMoved, outboxMark, refreshAvailability, replaySince } from "../../src/db/grow";
import { allCatalogDbs, partitionOf } from "../../src/db/partitions";
import { applyStockEvents } from "../../src/events/consumer";
import type { StockChangedEvent } from "../../src/events/messages";
import { selectPage } from "../../src/feeds/pages";
import { splitMark } from "../../src/feeds/change-seq";
import { decodeSince, encodeSince, resolvePositions } from "../../src/feeds/token";
import { encodeCursor, runListing, type ListingParams } from "../../src/catalog/listing";
import { originSession } from "../../src/catalog/origin";
import { switchDue } from "../../src/promotions/switcher";
import { insertProduct, seedCategories, seedProducts } from "../helpers/catalog-fixtures";
import { rowCounting } from "../helpers/row-counting";
import { BASE, admin, call, uid } from "../helpers/http";

const recordingQueue = { send: async () => undefined, sendBatch: async () => undefined } as unknown as Queue;
/** The deployment before the flip: one partition; its events are recorded, not consumed (the consumer here runs N = 2). */
const before = { ...env, CATALOG_PARTITIONS: "1", EVENTS: recordingQueue } as Env;

async function requestBefore(path: string, init: RequestInit): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await buildApp().fetch(new Request(BASE + path, init), before, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

async function facetMap(dbs: D1Database[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const db of dbs) {
    for (const r of (await db.prepare("SELECT facet, value, count FROM facet_counts WHERE count > 0").all<{ facet: string; value: string; count: number }>()).results) {
      out.set(`${r.facet}\n${r.value}`, (out.get(`${r.facet}\n${r.value}`) ?? 0) + r.count);
    }
  }
  return out;
}

/** PATCHes a product's title, before the flip (N = 1) or after it (this file's env, N = 2). */
async function retitle(when: "before" | "after", id: string, title: string): Promise<void> {
  const db = when === "before" ? env.DB : allCatalogDbs(env)[partitionOf(env, id)]!;
  const { version } = (await db.prepare("SELECT version FROM products WHERE id = ?").bind(id).first<{ version: number }>())!;
  const init = { method: "PATCH", headers: admin({ "content-type": "application/json", "if-match": `"${version}"` }), body: JSON.stringify({ title }) };
  const res = when === "before" ? await requestBefore(`/admin/products/${id}`, init) : await call(`/admin/products/${id}`, init);
  expect(res.status, await res.clone().text()).toBe(200);
}

const seqOf = async (db: D1Database, id: string) => (await db.prepare("SELECT change_seq FROM products WHERE id = ?").bind(id).first<{ change_seq: number }>())!.change_seq;
const highWater = async (db: D1Database) => (await db.prepare("SELECT coalesce(max(change_seq), 0) AS m FROM products").first<{ m: number }>())!.m;

/** Every product a delta feed from `token` names (live or removed), reading page after page at N = 2. */
async function delta(token: string): Promise<string[]> {
  const named: string[] = [];
  let since = token;
  for (let page = 0; page < 50; page++) {
    const got = await selectPage(allCatalogDbs(env), { scope: {}, filters: {}, limit: 7, since });
    named.push(...got.live.map((d) => d.doc.id), ...got.removed.map((r) => r.id));
    since = got.next_since;
    if (!got.has_more) return named;
  }
  throw new Error("delta did not end");
}

/** Steps 1–3 of the growth, the last replay standing for the one in the flip's pause. */
async function copyAndReplay(limit = 9): Promise<void> {
  const to = env.CATALOG_1!;
  await copyShared(env.DB, to);
  const mark = await outboxMark(env.DB);
  let after: string | null = "";
  while (after !== null) after = (await copyChunk(env.DB, to, { newCount: 2, toIndex: 1, after, limit })).next;
  await replaySince(env.DB, to, { newCount: 2, toIndex: 1, mark });
}

/** Step 5, after the flip. Returns the products whose stock flags were re-derived. */
async function finish(limit = 9): Promise<string[]> {
  const rederived: string[] = [];
  let after: string | null = "";
  while (after !== null) {
    const step: { next: string | null; rederived: string[] } = await refreshAvailability(env.DB, env.CATALOG_1!, { newCount: 2, toIndex: 1, after, limit });
    rederived.push(...step.rederived);
    after = step.next;
  }
  after = "";
  while (after !== null) after = (await deleteMoved(env.DB, { newCount: 2, toIndex: 1, after, limit })).next;
  return rederived;
}

/**
 * Makes CATALOG_1 the new, empty database a growth copies into (earlier tests of this file grew their products into
 * it): the moved products' facet counts are taken from it at the replay.
 */
async function emptySibling(): Promise<void> {
  const tables = ["promotion_targets", "availability", "stock_baseline", "prices", "variants", "product_attributes", "product_translations", "products"];
  await env.CATALOG_1!.batch(tables.map((t) => env.CATALOG_1!.prepare(`DELETE FROM ${t}`)));
}

const ids = async (db: D1Database) => (await db.prepare("SELECT id FROM products ORDER BY id").all<{ id: string }>()).results.map((r) => r.id);

describe("growing from one partition to two", () => {
  it("copies the moving half in chunks, replays a write made meanwhile, and after the flip serves the same catalog", async () => {
    const products = await seedProducts(env.DB, 60);
    const all = products.map((p) => p.id).sort();
    const facetsBefore = await facetMap([env.DB]);
    const to = env.CATALOG_1!;
    const opts = { newCount: 2, toIndex: 1 };
    const moving = all.filter((id) => partitionOf(env, id) === 1);
    expect(moving.length).toBeGreaterThan(10);

    await copyShared(env.DB, to);
    const mark = await outboxMark(env.DB);
    const copyAll = async () => {
      const copied: string[] = [];
      let after: string | null = "";
      while (after !== null) {
        const step: { copied: string[]; next: string | null } = await copyChunk(env.DB, to, { ...opts, after, limit: 7 });
        copied.push(...step.copied);
        after = step.next;
        // A write to a moving product lands in the old partition while the copy runs.
        if (copied.length > 0 && copied.length <= 7) {
          const res = await requestBefore(`/admin/products/${moving[0]}`, {
            method: "PATCH", headers: admin({ "content-type": "application/json", "if-match": '"1"' }), body: JSON.stringify({ title: "Regrown lantern" }),
          });
          expect(res.status, await res.clone().text()).toBe(200);
        }
      }
      return copied;
    };
    expect((await copyAll()).sort()).toEqual(moving);
    // Copying again changes nothing (a resumed run): the same products, no duplicate rows.
    const variantsOnce = await to.prepare("SELECT count(*) AS n FROM variants").first<{ n: number }>();
    let after: string | null = "";
    while (after !== null) after = (await copyChunk(env.DB, to, { ...opts, after, limit: 50 })).next;
    expect(await to.prepare("SELECT count(*) AS n FROM variants").first()).toEqual(variantsOnce);

    const replay = await replaySince(env.DB, to, { ...opts, mark });
    expect(replay.replayed).toEqual([moving[0]]);
    expect(await to.prepare("SELECT title, version FROM products WHERE id = ?").bind(moving[0]).first()).toEqual({ title: "Regrown lantern", version: 2 });
    // Nothing newer after the replay's mark.
    expect((await replaySince(env.DB, to, { ...opts, mark: replay.mark })).replayed).toEqual([]);

    // The flip: N = 2 from here on (this file's env). Stock projections, then the moved rows leave the old partition.
    after = "";
    while (after !== null) after = (await refreshAvailability(env.DB, to, { ...opts, after, limit: 13 })).next;
    after = "";
    while (after !== null) after = (await deleteMoved(env.DB, { ...opts, after, limit: 13 })).next;

    const [held0, held1] = await Promise.all(allCatalogDbs(env).map(ids));
    expect(held1).toEqual(moving);
    expect([...held0!, ...held1!].sort()).toEqual(all);
    for (const id of held0!) expect(partitionOf(env, id)).toBe(0);
    // Facet counts (kept by triggers on both sides) add up to what one database counted.
    expect(await facetMap(allCatalogDbs(env))).toEqual(facetsBefore);
    for (const db of allCatalogDbs(env)) {
      expect(await db.prepare("SELECT count(*) AS n FROM variants v WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = v.product_id)").first()).toEqual({ n: 0 });
      expect(await db.prepare("SELECT count(*) AS n FROM availability a WHERE NOT EXISTS (SELECT 1 FROM variants v WHERE v.sku = a.sku)").first()).toEqual({ n: 0 });
    }

    // The API at N = 2: the moved, rewritten product by id and by search; every product once in a listing.
    const read = await call(`/v1/products/${moving[0]}?currency=USD&locale=en`);
    expect(read.status).toBe(200);
    expect((await read.json<{ title: string }>()).title).toBe("Regrown lantern");
    const found = await (await call("/v1/search?q=regrown&currency=USD")).json<{ items: { id: string }[] }>();
    expect(found.items.map((i) => i.id)).toEqual([moving[0]]);
    const listed = await (await call("/v1/products?limit=100&currency=USD")).json<{ items: { id: string }[] }>();
    expect(listed.items.map((i) => i.id).sort()).toEqual(all);
  });

  it("a since token taken before the split gets every later change of both partitions, also changes the new one numbers first", async () => {
    const all = (await seedProducts(env.DB, 40, 101)).map((p) => p.id).sort();
    const staying = all.filter((id) => partitionOf(env, id) === 0);
    const moving = all.filter((id) => partitionOf(env, id) === 1);
    const early = encodeSince([await highWater(env.DB)]);
    // Changes before the split on both sides; the last lands on a product that stays, so the old partition's
    // high-water mark is above every change_seq the new partition receives.
    await retitle("before", moving[0]!, "Moved, changed before the split");
    await retitle("before", staying[0]!, "Stayed, changed before the split");
    const split = await highWater(env.DB);
    const atSplit = encodeSince([split]);
    await copyAndReplay();
    expect(await highWater(env.CATALOG_1!)).toBeLessThan(split);

    // After the flip (N = 2): the new partition's first change, and one in the old partition.
    await retitle("after", moving[1]!, "Moved, changed after the split");
    await retitle("after", staying[1]!, "Stayed, changed after the split");
    expect(await seqOf(env.CATALOG_1!, moving[1]!)).toBeGreaterThan(split);

    const fromEarly = await delta(early);
    for (const id of [moving[0]!, staying[0]!, moving[1]!, staying[1]!]) expect(fromEarly).toContain(id);
    // Until the clean-up the old partition still holds the moved rows (the older versions): a feed names each product
    // once, from the partition that owns it, in a delta and in a full sync.
    expect(fromEarly.length).toBe(new Set(fromEarly).size);
    const synced: { id: string; title: string }[] = [];
    let cursor: string | undefined;
    do {
      const got = await selectPage(allCatalogDbs(env), { scope: {}, filters: {}, limit: 7, cursor });
      synced.push(...got.live.map((d) => ({ id: d.doc.id, title: d.doc.title })));
      cursor = got.next_cursor ?? undefined;
    } while (cursor);
    expect(synced.length).toBe(new Set(synced.map((d) => d.id)).size);
    for (const id of all) expect(synced.map((d) => d.id)).toContain(id);
    expect(synced.find((d) => d.id === moving[1])!.title).toBe("Moved, changed after the split");
    const fromSynced = await delta(atSplit);
    expect(fromSynced).toContain(moving[1]!);
    expect(fromSynced).toContain(staying[1]!);
    expect(fromSynced).not.toContain(staying[0]!);

    // And once the moved rows have left the old partition: the same, plus a change made after that.
    await finish();
    await retitle("after", moving[2]!, "Moved, changed after the clean-up");
    const fromEarlyLater = await delta(early);
    for (const id of [moving[0]!, staying[0]!, moving[1]!, staying[1]!, moving[2]!]) expect(fromEarlyLater).toContain(id);
    const page = await selectPage(allCatalogDbs(env), { scope: {}, filters: {}, limit: 100, since: atSplit });
    expect(page.live.filter((d) => d.doc.id === moving[1]).map((d) => d.doc.title)).toEqual(["Moved, changed after the split"]);
    expect(page.live.map((d) => d.doc.id)).toContain(moving[2]!);
  });

  it("deleting the moved rows never lowers the old partition's sequence under a position a token holds", async () => {
    const all = (await seedProducts(env.DB, 40, 201)).map((p) => p.id).sort();
    const staying = all.filter((id) => partitionOf(env, id) === 0);
    const moving = all.filter((id) => partitionOf(env, id) === 1);
    // The old partition's last change before the split is to a product that moves: its highest change_seq leaves.
    await retitle("before", staying[0]!, "Stayed, changed before the split");
    await retitle("before", moving[0]!, "Moved, changed last before the split");
    await copyAndReplay();
    // A feed read after the flip, before the clean-up: its position for partition 0 is that moved product's.
    const read = await selectPage(allCatalogDbs(env), { scope: {}, filters: {}, limit: 100, since: encodeSince([0, 0]) });
    expect(read.has_more).toBe(false);
    const position = await highWater(env.DB);
    expect(position).toBe(await seqOf(env.DB, moving[0]!));
    await finish();
    expect(await highWater(env.DB)).toBeLessThan(position);
    // The old partition's next change numbers above the position the token holds, and reaches it.
    await retitle("after", staying[1]!, "Stayed, changed after the clean-up");
    expect(await seqOf(env.DB, staying[1]!)).toBeGreaterThan(position);
    expect(await delta(read.next_since)).toContain(staying[1]!);
  });

  it("stock that changed during the copy sets the moved products' in_stock and reaches feeds after the growth", async () => {
    const all = (await seedProducts(env.DB, 40, 301)).map((p) => p.id).sort();
    const moving = all.filter((id) => partitionOf(env, id) === 1);
    const variantRows = async (id: string) =>
      (
        await env.DB.prepare("SELECT a.sku, a.location_id, a.seq, v.position FROM availability a JOIN variants v ON v.sku = a.sku WHERE v.product_id = ? ORDER BY v.position, a.location_id")
          .bind(id)
          .all<{ sku: string; location_id: string; seq: number; position: number }>()
      ).results;
    const soldOut = moving[0]!; // every variant sells out
    const partly = (await Promise.all(moving.slice(1).map(async (id) => ({ id, skus: new Set((await variantRows(id)).map((r) => r.sku)).size })))).find((p) => p.skus > 1)!.id; // one of several variants sells out
    const before = encodeSince([await highWater(env.DB)]);
    await copyAndReplay();
    expect(await env.CATALOG_1!.prepare("SELECT in_stock FROM products WHERE id = ?").bind(soldOut).first()).toEqual({ in_stock: 1 });

    // Stock events applied by the consumer of the N = 1 deployment after those products were copied.
    const partlyRows = await variantRows(partly);
    const sellOut = (rows: { sku: string; location_id: string; seq: number }[]): StockChangedEvent[] =>
      rows.map((r) => ({ type: "stock.changed", sku: r.sku, location: r.location_id, on_hand: 0, reserved: 0, available: 0, status: "out_of_stock", seq: r.seq + 1, occurred_at: Date.now() }));
    await applyStockEvents([env.DB], [...sellOut(await variantRows(soldOut)), ...sellOut(partlyRows.filter((r) => r.sku === partlyRows[0]!.sku))], Date.now());
    expect(await env.DB.prepare("SELECT in_stock FROM products WHERE id = ?").bind(soldOut).first()).toEqual({ in_stock: 0 });
    // Those flips numbered past the new partition's split mark (checkout goes on during the flip's pause), and a
    // reader still at N = 1 hands out a token holding that.
    const mark = (await splitMark(env.CATALOG_1!))!;
    const late = encodeSince([await highWater(env.DB)]);
    expect(await highWater(env.DB)).toBeGreaterThan(mark);

    // The flip: the new partition numbers a change of its own first, then step 5.
    const retitled = moving.find((id) => id !== soldOut && id !== partly)!;
    await retitle("after", retitled, "Moved, changed after the sale");
    expect(await seqOf(env.CATALOG_1!, retitled)).toBe(mark + 1);
    expect((await finish()).sort()).toEqual([soldOut, partly].sort());
    const moved = async (id: string) => env.CATALOG_1!.prepare("SELECT in_stock, change_seq FROM products WHERE id = ?").bind(id).first<{ in_stock: number; change_seq: number }>();
    expect((await moved(soldOut))!.in_stock).toBe(0);
    expect((await moved(partly))!.in_stock).toBe(1);
    expect((await moved(soldOut))!.change_seq).toBeGreaterThan(mark + 1);
    expect((await moved(partly))!.change_seq).toBeGreaterThan(mark + 1);
    // Readers at N = 2: the sold-out product is listed as such, and a delta from before the sale names both.
    const listed = await (await call("/v1/products?in_stock=true&limit=100&currency=USD&locale=en")).json<{ items: { id: string }[] }>();
    expect(listed.items.map((i) => i.id)).not.toContain(soldOut);
    expect(listed.items.map((i) => i.id)).toContain(partly);
    const named = await delta(before);
    for (const id of [soldOut, partly, retitled]) expect(named).toContain(id);
    const namedLate = await delta(late);
    for (const id of [soldOut, partly, retitled]) expect(namedLate).toContain(id);
    // Running step 5 again changes nothing.
    expect(await finish()).toEqual([]);
  });

  it("maps a token made before growths: new partitions inherit a position, clamped to their split mark; older ancestry reads from 0", async () => {
    // [7, 9] for N = 2 read at N = 8: 2 and 3 split off 0 and 1 (one generation), 4…7 off 0…3 (two for 6 and 7).
    expect(decodeSince(encodeSince([7, 9]), 8)).toEqual({
      seq: [7, 9, 7, 9, 7, 9, 0, 0],
      inherited: [false, false, true, true, true, true, false, false],
    });
    expect(decodeSince(encodeSince([7]), 2)).toEqual({ seq: [7, 7], inherited: [false, true] });
    expect(decodeSince(encodeSince([7, 9]), 2)).toEqual({ seq: [7, 9], inherited: [false, false] });
    // CATALOG_1 has a split mark from the growths above: an inherited position past it reads from the mark.
    const mark = (await splitMark(env.CATALOG_1!))!;
    expect(await resolvePositions(allCatalogDbs(env), decodeSince(encodeSince([mark + 5]), 2))).toEqual([mark + 5, mark]);
    expect(await resolvePositions(allCatalogDbs(env), decodeSince(encodeSince([mark - 1]), 2))).toEqual([mark - 1, mark - 1]);
    expect(await resolvePositions(allCatalogDbs(env), decodeSince(encodeSince([mark + 5, mark + 9]), 2))).toEqual([mark + 5, mark + 9]);
  });

  it("during the clean-up a listing, a search and the facet counts name each product once, in its newest version", async () => {
    await emptySibling();
    const seeded = await seedProducts(env.DB, 30, 601);
    const moving = seeded.map((p) => p.id).filter((id) => partitionOf(env, id) === 1).sort();
    await copyAndReplay();
    await retitle("after", moving[0]!, "Zephyrine after the flip");
    // The window: the old partition still holds the moved products' (older) rows.
    expect(await ids(env.DB)).toEqual(expect.arrayContaining(moving));
    expect(await env.DB.prepare("SELECT value FROM meta WHERE key = 'grow:cleanup'").first()).toEqual({ value: "2" });
    const owned = [...(await ids(env.DB)).filter((id) => partitionOf(env, id) === 0), ...(await ids(env.CATALOG_1!))].sort();

    type Item = { id: string; title: string };
    type Body = { items: Item[]; next_cursor: string | null; total: number; facets: unknown; facets_exact: boolean };
    const get = async (path: string) => {
      const res = await call(path);
      expect(res.status, await res.clone().text()).toBe(200);
      return res.json<Body>();
    };
    /** Every page of a listing, 7 at a time (a page of 8 rows read in the old partition has about 4 it owns). */
    const walk = async (path: string) => {
      const items: Item[] = [];
      let cursor: string | null = null;
      do {
        const page: Body = await get(`${path}&limit=7${cursor ? `&cursor=${cursor}` : ""}`);
        items.push(...page.items);
        cursor = page.next_cursor;
      } while (cursor);
      return items;
    };
    for (const sort of ["newest", "price_asc"]) {
      const listed = await walk(`/v1/products?sort=${sort}&currency=USD`);
      expect(listed.map((i) => i.id).sort(), sort).toEqual(owned);
      expect(listed.find((i) => i.id === moving[0])!.title).toBe("Zephyrine after the flip");
    }
    const brand = seeded.find((p) => p.id === moving[1])!.brand;
    const searched = await walk(`/v1/search?q=${encodeURIComponent(brand.toLowerCase())}&currency=USD`);
    expect(searched.length).toBe(new Set(searched.map((i) => i.id)).size);
    expect(searched.map((i) => i.id)).toContain(moving[1]);
    expect((await get("/v1/search?q=zephyrine&currency=USD")).items.map((i) => [i.id, i.title])).toEqual([[moving[0], "Zephyrine after the flip"]]);

    // Facets and totals, without and with a filter, are those of the catalog once the moved rows are gone.
    const facets = async (limit: number) =>
      Promise.all(["/v1/search?currency=USD", `/v1/search?currency=USD&brand=${encodeURIComponent(brand)}`].map(async (path) => {
        const { total, facets, facets_exact } = await get(`${path}&limit=${limit}`);
        return { total, facets, facets_exact };
      }));
    const during = await facets(1);
    expect(during[0]!.total).toBe(owned.length);
    expect(during.map((d) => d.facets_exact)).toEqual([true, true]);
    await finish();
    expect(await env.DB.prepare("SELECT value FROM meta WHERE key = 'grow:cleanup'").first()).toBeNull();
    expect(await facets(2)).toEqual(during); // another limit: another cache key
  });

  it("during the clean-up a page passing more moved rows than many reads is still full, cursors go on without gaps or duplicates, and facets without a filter stay exact", async () => {
    await emptySibling();
    await seedCategories(env.DB);
    // More products than one partition's facet sample (FACET_SAMPLE / 2), about half of which move: sampled facets
    // would be inexact here.
    const bulk = uid("bulk");
    await env.DB.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?2 - 1)
       INSERT INTO products (id, slug, title, brand, category_id, min_prices, attributes, in_stock, created_at, updated_at)
       SELECT ?1 || '-' || i, ?1 || '-' || i, 'Bulk ' || i, 'Bulk ' || (i % 7), 'cat-camping', json_object('USD', (i * 397) % 70000), json_object('size', 's' || (i % 5)), 1, 1000 + i, 1000 + i FROM n`,
    )
      .bind(bulk, 2_700)
      .run();
    await env.DB.prepare("INSERT INTO product_attributes (product_id, name, value) SELECT id, 'size', json_extract(attributes, '$.size') FROM products WHERE id LIKE ?1 || '-%'").bind(bulk).run();

    // One brand: two products that stay (newest), 100 that move, three that stay (oldest).
    const brand = "Flashwnd";
    const pick = (want: number, count: number, from: number) => Array.from({ length: 400 }, (_, i) => `p-wnd-${from + i}`).filter((id) => partitionOf(env, id) === want).slice(0, count);
    const [newest, moving, oldest] = [pick(0, 2, 0), pick(1, 100, 0), pick(0, 3, 500)];
    const now = Date.now();
    const made = new Map<string, string[]>();
    const create = async (id: string, createdAt: number) => made.set(id, (await insertProduct(env.DB, { id, brand, createdAt })).variants.map((v) => v.sku));
    for (const [i, id] of newest.entries()) await create(id, now - 1_000 - i);
    for (const [i, id] of moving.entries()) await create(id, now - 10_000 - i);
    for (const [i, id] of oldest.entries()) await create(id, now - 100_000 - i);
    await copyAndReplay(200);

    // After the flip a flash sale sells out every moved product in its owner; the old partition's rows still say in stock.
    const soldOut: StockChangedEvent[] = moving.flatMap((id) =>
      made.get(id)!.map((sku) => ({ type: "stock.changed", sku, location: "loc-us-east", on_hand: 0, reserved: 0, available: 0, status: "out_of_stock", seq: 1_000, occurred_at: now }) as StockChangedEvent),
    );
    await applyStockEvents(allCatalogDbs(env), soldOut, now);
    expect(await env.CATALOG_1!.prepare(`SELECT count(*) AS n FROM products WHERE in_stock = 0 AND id IN (SELECT value FROM json_each(?))`).bind(JSON.stringify(moving)).first()).toEqual({ n: 100 });
    expect(await env.DB.prepare(`SELECT count(*) AS n FROM products WHERE in_stock = 1 AND id IN (SELECT value FROM json_each(?))`).bind(JSON.stringify(moving)).first()).toEqual({ n: 100 });

    // A promotion written and switched meanwhile prices the moved products in their owner only: the old partition's
    // rows keep the prices (and facet counts) the growth noted.
    const prices = async (db: D1Database, ids: string[]) =>
      (await db.prepare("SELECT id, min_prices FROM products WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id").bind(JSON.stringify(ids)).all<{ id: string; min_prices: string }>()).results;
    const [staleBefore, ownedBefore, movedBefore] = await Promise.all([prices(env.DB, moving), prices(env.DB, newest), prices(env.CATALOG_1!, moving)]);
    // One promotion in force from now: its write prices the targets, then the switch for its start prices them again
    // (both at the clock's time, as the consumer's reconciliation does, so nothing moves after this).
    const res = await call("/admin/promotions", {
      method: "POST", headers: admin({ "content-type": "application/json" }),
      body: JSON.stringify({ name: "Window sale", starts_at: new Date().toISOString(), ends_at: new Date(Date.now() + 3_600_000).toISOString(), target: { type: "brand", values: [brand] }, value: { type: "percent_off", bps: 9000 } }),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    expect((await switchDue({ ...env, EVENTS: recordingQueue }, Date.now() + 1)).products).toBeGreaterThan(0);
    expect(await prices(env.DB, moving)).toEqual(staleBefore);
    expect(await prices(env.DB, newest)).not.toEqual(ownedBefore);
    expect(await prices(env.CATALOG_1!, moving)).not.toEqual(movedBefore);

    type Body = { items: { id: string }[]; next_cursor: string | null; total: number; total_exact: boolean; facets: unknown; facets_exact: boolean };
    const get = async (path: string) => {
      const res = await call(path);
      expect(res.status, await res.clone().text()).toBe(200);
      return res.json<Body>();
    };
    // One item a page: the old partition meets 100 rows it no longer owns in a row, 50 reads of a page's limit + 1.
    for (const path of [`/v1/products?brand=${brand}&in_stock=true&sort=newest&currency=USD`, `/v1/search?q=${brand.toLowerCase()}&in_stock=true&sort=newest&currency=USD`]) {
      const pages: string[][] = [];
      let cursor: string | null = null;
      do {
        const page: Body = await get(`${path}&limit=1${cursor ? `&cursor=${cursor}` : ""}`);
        pages.push(page.items.map((i) => i.id));
        cursor = page.next_cursor;
      } while (cursor && pages.length < 20);
      expect(pages, path).toEqual([...newest, ...oldest].map((id) => [id]));
    }

    // What that costs, in rows D1 reads (meta.rows_read over both partitions): the page past the sold-out stretch, and
    // the no-filter facets with the moved rows' counts subtracted (the same read is measured again after the clean-up).
    const readCost = async (params: Partial<ListingParams>, facets = true) => {
      const counting = [rowCounting(env.DB), rowCounting(env.CATALOG_1!)];
      const p: ListingParams = { sort: "newest", limit: 1, currency: "USD", locale: "en", ...params };
      const page = await runListing(counting.map((c) => originSession(c.db, { primary: true })), p, { facets, total: facets, now: Date.now() });
      return { rows: counting.reduce((n, c) => n + c.rows(), 0), ids: page.items.map((i) => i.id) };
    };
    const stretch: Partial<ListingParams> = { brand: [brand], in_stock: true };
    stretch.cursor = encodeCursor({ sort: "newest", limit: 1, currency: "USD", locale: "en", ...stretch }, [now - 1_001, newest[1]!]);
    const stretchCost = await readCost(stretch, false);
    expect(stretchCost.ids).toEqual([oldest[0]]);
    // 213 rows measured: about twice the stretch, not the partition's 2,700-odd rows (a sample read 2,500 of them).
    expect(stretchCost.rows).toBeLessThan(400);
    // 917 measured in this file's run (it passes the same stretch, limit 20), 505 for the same read after the clean-up.
    expect((await readCost({ limit: 20 })).rows).toBeLessThan(1_000);

    // Facets and total without a filter: exact during the window, after each deletion chunk, and equal to those after.
    const unfiltered = async (limit: number) => {
      const { total, total_exact, facets, facets_exact } = await get(`/v1/search?currency=USD&limit=${limit}`);
      return { total, total_exact, facets, facets_exact };
    };
    const activeOwned = async () => {
      const count = (db: D1Database) => db.prepare("SELECT id FROM products WHERE status = 'active' AND pending_import IS NULL").all<{ id: string }>();
      const [zero, one] = await Promise.all([count(env.DB), count(env.CATALOG_1!)]);
      return zero.results.filter((r) => partitionOf(env, r.id) === 0).length + one.results.length;
    };
    // Limits other tests of this file do not use: each is another cache key.
    const during = await unfiltered(11);
    expect(during).toMatchObject({ total: await activeOwned(), total_exact: true, facets_exact: true });
    // The category tree's counts too (another locale, another cache key).
    type Node = { id: string; product_count: number; children: Node[] };
    const campingCount = async (locale: string) => {
      const res = await call(`/v1/categories?locale=${locale}`);
      expect(res.status).toBe(200);
      const flat = (nodes: Node[]): Node[] => nodes.flatMap((n) => [n, ...flat(n.children)]);
      return flat((await res.json<{ items: Node[] }>()).items).find((n) => n.id === "cat-camping")!.product_count;
    };
    const campingDuring = await campingCount("fr");
    expect(campingDuring).toBeGreaterThanOrEqual(2_700);
    let after: string | null = "";
    while (after !== null) after = (await refreshAvailability(env.DB, env.CATALOG_1!, { newCount: 2, toIndex: 1, after, limit: 400 })).next;
    const step = await deleteMoved(env.DB, { newCount: 2, toIndex: 1, after: "", limit: 1_000 });
    expect(step.deleted.length).toBeGreaterThan(300);
    expect(await unfiltered(12)).toEqual(during);
    after = step.next;
    while (after !== null) after = (await deleteMoved(env.DB, { newCount: 2, toIndex: 1, after, limit: 1_000 })).next;
    expect(await env.DB.prepare("SELECT count(*) AS n FROM grow_moved_facets").first()).toEqual({ n: 0 });
    expect(await unfiltered(13)).toEqual(during);
    expect(await campingCount("de")).toBe(campingDuring);
  });

  it("during the clean-up a page past a stretch of moved rows longer than its read budget ends short with a cursor that resumes after them, each request's reads bounded", async () => {
    await seedCategories(env.DB);
    // One brand, newest first: one own product, then about 2,500 moved ones sold out in their owner after the flip
    // (the old partition's rows still say in stock), then the other own products.
    const brand = "Stretchy";
    await env.DB.prepare(
      `WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < ?1 - 1)
       INSERT INTO products (id, slug, title, brand, category_id, min_prices, in_stock, created_at, updated_at)
       SELECT 'p-str-' || i, 'p-str-' || i, 'S ' || i, ?2, 'cat-camping', json_object('USD', 1000), 1, 10000000 - i, 1 FROM k`,
    )
      .bind(5_000, brand)
      .run();
    const all = (await env.DB.prepare("SELECT id FROM products WHERE brand = ?").bind(brand).all<{ id: string }>()).results.map((r) => r.id);
    const mine = all.filter((id) => partitionOf(env, id) === 0);
    await env.DB.prepare("UPDATE products SET created_at = 20000000 WHERE id = ?").bind(mine[0]).run();
    await env.DB.prepare("UPDATE products SET created_at = 1 WHERE id IN (SELECT value FROM json_each(?))").bind(JSON.stringify(mine.slice(1))).run();
    await copyAndReplay(2_000);
    await env.CATALOG_1!.prepare("UPDATE products SET in_stock = 0 WHERE brand = ?").bind(brand).run();
    const stretch = all.length - mine.length;
    expect(stretch).toBeGreaterThan(3 * 800);

    // One-item pages from the start: the first own product, then short (empty) pages, each reading at most its
    // budget and resuming after it, then the next own product (the highest id of those created at 1: ties go by id).
    const p: ListingParams = { sort: "newest", limit: 1, currency: "USD", locale: "en", brand: [brand], in_stock: true };
    const pages: { ids: string[]; rows: number; statements: number }[] = [];
    let cursor: string | undefined;
    while (pages.flatMap((pg) => pg.ids).length < 2 && pages.length < 20) {
      const counting = [rowCounting(env.DB), rowCounting(env.CATALOG_1!)];
      const page = await runListing(counting.map((c) => originSession(c.db, { primary: true })), { ...p, cursor }, { facets: false, total: false, now: Date.now() });
      pages.push({ ids: page.items.map((i) => i.id), rows: counting.reduce((n, c) => n + c.rows(), 0), statements: counting[0]!.statements().length });
      expect(page.next_cursor).not.toBeNull();
      cursor = page.next_cursor!;
    }
    const nextOwn = mine.slice(1).sort().at(-1)!;
    expect(pages.flatMap((pg) => pg.ids)).toEqual([mine[0], nextOwn]);
    // The stretch costs a request per 800 rows: a few short pages, not one page reading all of it.
    expect(pages.length).toBeGreaterThanOrEqual(Math.floor(stretch / 800));
    expect(pages.length).toBeLessThanOrEqual(Math.ceil(stretch / 800) + 2);
    for (const pg of pages) expect(pg.rows, JSON.stringify(pg)).toBeLessThan(2_000);
    await finish(1_000);
  });

  it("leaves out products an unfinished import staged: an import aborted during the copy leaves nothing in the new partition", async () => {
    await seedProducts(env.DB, 2, 401); // categories in DB for the import's lines
    const ids = Array.from({ length: 30 }, (_, i) => `p-grow-imp-${i}`);
    const moving = ids.filter((id) => partitionOf(env, id) === 1);
    const line = (id: string) => JSON.stringify({ id, slug: id, title: `Imported ${id}`, brand: "Growco", category_id: "cat-camping", attributes: {}, variants: [{ sku: `${id}-1`, prices: { USD: 1999 } }] });
    const json = { "content-type": "application/json" };
    const opened = await requestBefore("/admin/imports", { method: "POST", headers: admin(json), body: JSON.stringify({ format: "ndjson" }) });
    expect(opened.status, await opened.clone().text()).toBe(201);
    const importId = (await opened.json<{ import_id: string }>()).import_id;
    const put = (part: number, body: string) => requestBefore(`/admin/imports/${importId}/parts/${part}`, { method: "PUT", headers: admin({ "content-type": "application/x-ndjson" }), body });
    expect((await put(1, ids.map(line).join("\n") + "\n")).status).toBe(200);
    expect(await env.DB.prepare("SELECT count(*) AS n FROM products WHERE pending_import = ?").bind(importId).first()).toEqual({ n: 30 });

    await copyAndReplay();
    // Part 2 fails (a planted error), which aborts the import and prunes what part 1 staged.
    await env.DB.prepare("CREATE TRIGGER grow_fail BEFORE INSERT ON variants WHEN new.sku = 'p-grow-fail-1' BEGIN SELECT RAISE(ABORT, 'planted failure'); END").run();
    try {
      expect((await put(2, line("p-grow-fail") + "\n")).status).toBeGreaterThanOrEqual(500);
    } finally {
      await env.DB.prepare("DROP TRIGGER grow_fail").run();
    }
    expect(await env.DB.prepare("SELECT count(*) AS n FROM products WHERE id LIKE 'p-grow-imp-%'").first()).toEqual({ n: 0 });
    await finish();
    const left = await env.CATALOG_1!.prepare("SELECT count(*) AS n FROM products WHERE id IN (SELECT value FROM json_each(?))").bind(JSON.stringify(moving)).first();
    expect(left).toEqual({ n: 0 });
    expect(await env.CATALOG_1!.prepare("SELECT count(*) AS n FROM variants WHERE sku LIKE 'p-grow-imp-%'").first()).toEqual({ n: 0 });
  });
});
