/**
 * Growing N = 1 → 2 with the copy steps of src/db/grow.ts, at small scale: a catalog written with one partition (DB)
 * is copied half into CATALOG_1 in chunks while an admin write lands in the old partition, replayed, flipped to
 * CATALOG_PARTITIONS = 2 and cleaned up; then the API (N = 2) sees the same catalog, the write included.
 */
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../src/app";
import { copyChunk, copyShared, deleteMoved, outboxMark, refreshAvailability, replaySince } from "../../src/db/grow";
import { allCatalogDbs, partitionOf } from "../../src/db/partitions";
import { seedProducts } from "../helpers/catalog-fixtures";
import { BASE, admin, call } from "../helpers/http";

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
});
