/**
 * Outbox sender. Catalog writes insert their event in D1 in the same batch as the change; this forwards
 * unsent rows to the EVENTS queue and marks them sent. A send that fails leaves the rows unsent, and the cron
 * (`resendUnsent`) picks them up: the queue may see an event twice, never zero times.
 *
 * Each catalog partition has its own outbox, written in the same batch as its products' changes, so a product's
 * events keep their order (they are all in one partition's sequence); the cron walks every partition.
 */
import { allCatalogDbs } from "../db/partitions";

export type OutboxRow = { id: number; payload: string | null; type: string; entity_id: string; version: number; occurred_at: number };

/**
 * SQL that writes one `product.changed` outbox row, at the product's current version, for every product `p` matching
 * `where`, stamped with the time parameter `at` (e.g. "?1"), RETURNING the new row ids. Used by writes that touch
 * many products in one batch.
 */
export function productChangedOutboxSql(where: string, at: string): string {
  return `INSERT INTO outbox (type, entity_id, version, occurred_at, payload)
    SELECT 'product.changed', p.id, p.version, ${at}, json_object('type', 'product.changed', 'id', p.id, 'version', p.version, 'occurred_at', ${at})
    FROM products p WHERE ${where}
    RETURNING id`;
}

/** Rows younger than this are left to the sender of the request that wrote them. */
export const RESEND_AFTER_MS = 5_000;
/** Queue sendBatch accepts at most 100 messages per call. */
const SEND_BATCH = 100;

function body(row: OutboxRow): Record<string, unknown> {
  if (row.payload) return JSON.parse(row.payload) as Record<string, unknown>;
  return { type: row.type, id: row.entity_id, version: row.version, occurred_at: row.occurred_at };
}

/**
 * Sends the rows and marks them sent in `db`, the partition whose outbox holds them. Returns how many were sent; never
 * throws (the cron will retry).
 */
export async function sendOutboxRows(env: Pick<Env, "DB" | "EVENTS">, rows: OutboxRow[], db: D1Database = env.DB, now = Date.now()): Promise<number> {
  let sent = 0;
  for (let i = 0; i < rows.length; i += SEND_BATCH) {
    const chunk = rows.slice(i, i + SEND_BATCH);
    const ids = JSON.stringify(chunk.map((r) => r.id));
    try {
      await env.EVENTS.sendBatch(chunk.map((r) => ({ body: body(r), contentType: "json" as const })));
    } catch (err) {
      console.warn(JSON.stringify({ level: "warn", message: "outbox send failed; the cron will re-send", rows: chunk.length, error: String(err) }));
      await db.prepare("UPDATE outbox SET attempts = attempts + 1 WHERE id IN (SELECT value FROM json_each(?))").bind(ids).run().catch(() => {});
      continue;
    }
    await db.prepare("UPDATE outbox SET sent_at = ?, attempts = attempts + 1 WHERE id IN (SELECT value FROM json_each(?))").bind(now, ids).run();
    sent += chunk.length;
  }
  return sent;
}

/** Sends outbox rows by id (right after the write that created them committed) from `db`, the partition holding them. */
export async function sendOutboxIds(env: Pick<Env, "DB" | "EVENTS">, ids: number[], db: D1Database = env.DB): Promise<number> {
  if (ids.length === 0) return 0;
  const { results } = await db.prepare(
    "SELECT id, payload, type, entity_id, version, occurred_at FROM outbox WHERE sent_at IS NULL AND id IN (SELECT value FROM json_each(?)) ORDER BY id",
  )
    .bind(JSON.stringify(ids))
    .all<OutboxRow>();
  return sendOutboxRows(env, results, db);
}

/** Outbox rows a write created, per database that holds them (each partition's outbox holds its own products' events). */
export type OutboxIds = { db: D1Database; ids: number[] }[];

/** Sends each database's new outbox rows (right after the writes that created them committed). */
export async function sendOutboxBatches(env: Pick<Env, "DB" | "EVENTS">, batches: OutboxIds): Promise<number> {
  const sent = await Promise.all(batches.map(({ db, ids }) => sendOutboxIds(env, ids, db)));
  return sent.reduce((a, b) => a + b, 0);
}

/** Cron: re-sends whatever is still unsent a few seconds after it was written, partition by partition. */
export async function resendUnsent(env: Pick<Env, "DB" | "EVENTS" | "CATALOG_PARTITIONS">, now = Date.now(), limit = 5_000): Promise<{ sent: number; pending: number }> {
  let sent = 0;
  let pending = 0;
  for (const db of allCatalogDbs(env)) {
    const { results } = await db
      .prepare("SELECT id, payload, type, entity_id, version, occurred_at FROM outbox WHERE sent_at IS NULL AND occurred_at <= ? ORDER BY id LIMIT ?")
      .bind(now - RESEND_AFTER_MS, limit)
      .all<OutboxRow>();
    const n = await sendOutboxRows(env, results, db, now);
    sent += n;
    pending += results.length - n;
  }
  return { sent, pending };
}

/** Sent rows are kept for a day for inspection, then pruned by the cron. */
export async function pruneSent(env: Pick<Env, "DB" | "CATALOG_PARTITIONS">, now = Date.now()): Promise<void> {
  await Promise.all(allCatalogDbs(env).map((db) => db.prepare("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?").bind(now - 86_400_000).run()));
}
