/**
 * Consumer of the EVENTS queue: turns change events into fresh projections (D1 availability, KV product
 * documents) and purges cached responses. Delivery is at least once and unordered, so every step is
 * idempotent and version-checked: the document is always rebuilt from D1 (the newest state, whatever the
 * event's version), KV refuses an older version, and the availability upsert refuses an older seq.
 *
 * Each message is acked or retried on its own (retry.ts). Other domains that must react to a refreshed
 * product (recommendations) subscribe through `catalogEventHandler`'s listeners instead of being called from here.
 */
import { z } from "zod";
import { inArray } from "drizzle-orm";
import { getDb } from "../db/client";
import { allCatalogDbs, asList, catalogDb, ownersOfSkus } from "../db/partitions";
import { categories } from "../db/schema";
import { loadProductDocument, type ProductDocument, newerThan } from "../catalog/document";
import { putProductDocIfNewer } from "../catalog/projection-store";
import { indexSkus } from "../catalog/sku-index";
import { productTags, TAG_CATEGORIES } from "../catalog/cache-keys";
import { CategoryChangedEvent, ProductChangedEvent, StockChangedEvent, StockOversoldEvent } from "./messages";
import { purgerFor, type Purger } from "./purger";
import { recordLagSamples } from "./metrics";
import { now as clockNow } from "../lib/clock";
import { reconcileProductPrices } from "../promotions/price-refresh";
import { availabilityFlipStatement, DERIVED_IN_STOCK_SQL, NEXT_CHANGE_SEQ_SQL } from "../feeds/change-seq";
import type { ConsumerDeps, EventHandler, HandlerBatch } from "./dispatch";
import { deadLetterNow, retryLater } from "./retry";

const KnownEvent = z.discriminatedUnion("type", [ProductChangedEvent, CategoryChangedEvent, StockChangedEvent, StockOversoldEvent]);
type KnownEvent = z.infer<typeof KnownEvent>;

/** Called after product `id` was rebuilt and purged; a throw retries the product's messages. */
export type ProductRefreshListener = (env: Env, purger: Purger, id: string, change: { catalogChange: boolean; now: number }) => Promise<void>;

/** The catalog's entry in the dispatch table: product, category and stock changes. */
export function catalogEventHandler(afterProductRefresh: readonly ProductRefreshListener[] = []): EventHandler {
  return {
    name: "catalog",
    types: KnownEvent.options.map((o) => o.shape.type.value),
    consume: (batch, env, deps) => consumeEvents(batch, env, deps, afterProductRefresh),
  };
}

type Work = { msg: Message<unknown>; event: KnownEvent };

async function consumeEvents(batch: HandlerBatch, env: Env, deps: ConsumerDeps, listeners: readonly ProductRefreshListener[]): Promise<void> {
  const now = deps.now ?? Date.now;
  const retry = (msg: Message<unknown>, err: unknown) => retryLater(msg, env, err);

  const work: Work[] = [];
  for (const msg of batch.messages) {
    const parsed = KnownEvent.safeParse(msg.body);
    if (!parsed.success) {
      // A malformed body can never succeed on retry: kept as a dead letter with the reason, not retried.
      deadLetterNow(msg, env, `malformed event: ${parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ")}`);
      continue;
    }
    work.push({ msg, event: parsed.data });
  }
  if (work.length === 0) return;

  let purger: Purger;
  try {
    purger = deps.purger ?? purgerFor(env);
  } catch (err) {
    for (const w of work) retry(w.msg, err);
    return;
  }
  const db = getDb(env.DB);
  const acked: Work[] = [];

  // 1. Stock events: fold into the D1 availability projection in one transaction, then rebuild their products.
  const stock = work.filter((w): w is Work & { event: StockChangedEvent } => w.event.type === "stock.changed");
  const failed = new Set<Work>();
  let productOfSku = new Map<string, string>();
  if (stock.length > 0) {
    try {
      productOfSku = await applyStockEvents(allCatalogDbs(env), stock.map((w) => w.event), now());
    } catch (err) {
      for (const w of stock) {
        retry(w.msg, err);
        failed.add(w);
      }
    }
  }

  // Shortfalls: stored once per (sku, location, seq) for /admin/metrics; they change no projection.
  const oversold = work.filter((w): w is Work & { event: StockOversoldEvent } => w.event.type === "stock.oversold");
  if (oversold.length > 0) {
    try {
      await env.DB.batch(
        oversold.map(({ event: e }) =>
          env.DB.prepare(
            "INSERT OR IGNORE INTO stock_oversold (sku, location_id, seq, units, on_hand, reserved, cause, event_id, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
          ).bind(e.sku, e.location, e.seq, e.units, e.on_hand, e.reserved, e.cause, e.event_id, e.occurred_at),
        ),
      );
      for (const w of oversold) {
        w.msg.ack();
        acked.push(w);
      }
    } catch (err) {
      for (const w of oversold) retry(w.msg, err);
    }
  }

  // 2. One rebuild per product, however many of its events are in the batch.
  const byProduct = new Map<string, Work[]>();
  for (const w of work) {
    if (failed.has(w) || w.event.type === "category.changed" || w.event.type === "stock.oversold") continue;
    const id = w.event.type === "product.changed" ? w.event.id : productOfSku.get(w.event.sku);
    if (id === undefined) {
      // A SKU no product owns (yet): the projection row is stored; nothing to rebuild or purge.
      w.msg.ack();
      acked.push(w);
      continue;
    }
    byProduct.set(id, [...(byProduct.get(id) ?? []), w]);
  }
  // Different products are independent (different KV keys, different cache URLs): refresh them concurrently.
  await Promise.all(
    [...byProduct].map(async ([id, items]) => {
      try {
        // Catalog writes (admin edits, imports) set min_prices from regular prices: fold promotions back in.
        const catalogChange = items.some((w) => w.event.type === "product.changed");
        if (catalogChange) await reconcileProductPrices(catalogDb(env, id), id, clockNow());
        await refreshProduct(env, purger, id, catalogChange);
        const change = { catalogChange, now: now() };
        for (const listener of listeners) await listener(env, purger, id, change);
        for (const w of items) {
          w.msg.ack();
          acked.push(w);
        }
      } catch (err) {
        for (const w of items) retry(w.msg, err);
      }
    }),
  );

  // 3. Category events: the category pages and everything tagged with the category.
  for (const w of work) {
    if (w.event.type !== "category.changed") continue;
    try {
      const rows = await db.select({ slug: categories.slug }).from(categories).where(inArray(categories.id, [w.event.id]));
      // The page is served (and cached) under the slug and under the id: both keys go locally.
      await purger.purgeProduct({ id: w.event.id, category_slugs: [...rows.map((r) => r.slug), w.event.id] }, [w.event.id, TAG_CATEGORIES]);
      w.msg.ack();
      acked.push(w);
    } catch (err) {
      retry(w.msg, err);
    }
  }

  // Lag = when the change became visible (projection written and purged) minus when it was written.
  const at = now();
  await recordLagSamples(env.DB, acked.map((w) => ({ type: w.event.type, lagMs: Math.max(0, at - w.event.occurred_at) })), at).catch((err) =>
    console.warn(JSON.stringify({ level: "warn", message: "lag samples not recorded", error: String(err) })),
  );
}

/** Rebuilds the product's document from D1, stores it in KV if newer, and purges its cached responses. */
async function refreshProduct(env: Env, purger: Purger, id: string, catalogChange: boolean): Promise<void> {
  const db = catalogDb(env, id);
  const doc = await loadProductDocument(db, id);
  if (!doc) {
    // Never written or rolled back: nothing to project; purge in case a response was cached.
    await purger.purgeProduct({ id }, [id]);
    return;
  }
  // The check after the write probes the version first: a full second load per event doubled the consumer's D1 work.
  let before: Pick<ProductDocument, "category_path"> | null = null;
  await putProductDocIfNewer(env.CATALOG_KV, doc, { latest: () => newerThan(doc, db, id), seen: (current) => (before = current) });
  // Only catalog changes can add variants; stock events (the bulk of a sale) leave the SKU index alone.
  if (catalogChange) await indexSkus(env.CATALOG_KV, doc.id, doc.variants.map((v) => v.sku));
  // Purge even when KV already held this version: a previous attempt may have written KV and then failed
  // to purge. Purging is idempotent; a stale cached copy is not. Category pages hold no product data, so
  // only the product's own URLs are deleted locally; listings go by tag (product id, its categories).
  // A product moved to another category changes the old category's pages too (counts, listings): its tags go as well.
  const left = ((before as Pick<ProductDocument, "category_path"> | null)?.category_path ?? []).filter((c) => !doc.category_path.includes(c));
  await purger.purgeProduct({ id }, [...productTags(doc), ...left]);
}

/**
 * Upserts availability rows only when the event's seq is newer than the stored one (older and duplicate
 * events change nothing), then refreshes `products.in_stock` of the affected products, bumping change_seq
 * only when the flag flips so delta feeds see sell-outs and restocks. Returns sku → product id.
 *
 * `partitions` are the catalog databases (src/db/partitions.ts): each SKU's rows go to the partition of the product
 * owning it (one look-up per partition), a SKU no product owns yet to the first, as with one database.
 */
export async function applyStockEvents(partitions: D1Database | readonly D1Database[], events: StockChangedEvent[], now: number): Promise<Map<string, string>> {
  const dbs = asList(partitions);
  const owners = await ownersOfSkus(dbs, events.map((e) => e.sku));
  await Promise.all(
    dbs.map((db, i) => {
      const mine = events.filter((e) => (owners.get(e.sku)?.partition ?? 0) === i);
      if (mine.length === 0) return undefined;
      const productIds = [...new Set([...owners.values()].filter((o) => o.partition === i).map((o) => o.productId))];
      return db.batch(stockEventStatements(db, mine, productIds, now));
    }),
  );
  return new Map([...owners].map(([sku, o]) => [sku, o.productId]));
}

function stockEventStatements(d1: D1Database, events: StockChangedEvent[], productIds: string[], now: number): D1PreparedStatement[] {
  const upsert = d1.prepare(
    `INSERT INTO availability (sku, location_id, on_hand, reserved, available, status, seq, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (sku, location_id) DO UPDATE SET on_hand = excluded.on_hand, reserved = excluded.reserved, available = excluded.available,
       status = excluded.status, seq = excluded.seq, updated_at = excluded.updated_at
     WHERE excluded.seq > availability.seq`,
  );
  const inStock = DERIVED_IN_STOCK_SQL;
  return [
    // Each upsert is preceded by the feeds' flip check, so a variant selling out or coming back enters delta feeds.
    ...events.flatMap((e) => [availabilityFlipStatement(d1, e), upsert.bind(e.sku, e.location, e.on_hand, e.reserved, e.available, e.status, e.seq, now)]),
    // One statement per product so each flip gets its own change_seq.
    ...productIds.map((id) =>
      d1
        .prepare(
          `UPDATE products SET in_stock = ${inStock}, change_seq = ${NEXT_CHANGE_SEQ_SQL}
           WHERE id = ? AND in_stock <> ${inStock}`,
        )
        .bind(id),
    ),
  ];
}
