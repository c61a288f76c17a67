/**
 * Repair after an outage: the cron sends dead-lettered catalog events back onto EVENTS.
 *
 * An outage longer than the queue's retries (about a minute: 5 retries from a 2 s base) dead-letters every
 * product and stock event of that window. Their outbox rows are already marked sent and the KV documents the
 * consumer writes have no expiry, so without this the read path would serve the old document as fresh until the
 * next write. Catalog events are safe to re-drive without a person: the consumer rebuilds the document from D1
 * (the newest state, whatever the event says), KV refuses an older version and the availability upsert an older
 * seq, so a re-driven event can only move a projection forward.
 *
 * Bounded per tick: at most REDRIVE_BATCH letters, oldest first, and only letters older than REDRIVE_AFTER_MS
 * (the outage that made them may still be going on). They are folded to one message per product, category and
 * (SKU, location) with the newest version or seq, since older ones would change nothing. Letters whose body can
 * never be processed (recorded as malformed) are left to an admin. If the cause persists, the re-driven messages
 * are dead-lettered again and come back a tick later: one message per key per cycle, not a growing backlog.
 */
import { z } from "zod";
import { CategoryChangedEvent, ProductChangedEvent, StockChangedEvent } from "./messages";

export const REDRIVE_AFTER_MS = 60_000;
export const REDRIVE_BATCH = 500;
/** One sendBatch call takes at most 100 messages. */
const SEND_CHUNK = 100;

const Redrivable = z.discriminatedUnion("type", [ProductChangedEvent, CategoryChangedEvent, StockChangedEvent]);
type Redrivable = z.infer<typeof Redrivable>;
const TYPES = Redrivable.options.map((o) => o.shape.type.value);

function keyOf(e: Redrivable): string {
  return e.type === "stock.changed" ? `stock:${e.sku}\u0000${e.location}` : `${e.type}:${e.id}`;
}

const rank = (e: Redrivable) => (e.type === "stock.changed" ? e.seq : e.version);

/** Re-drives the oldest pending catalog dead letters; returns how many letters it settled. */
export async function redriveCatalogLetters(env: Pick<Env, "DB" | "EVENTS">, now: number): Promise<number> {
  const { results } = await env.DB.prepare(
    `SELECT id, body FROM dead_letters
     WHERE replayed_at IS NULL AND received_at <= ?1 AND CASE WHEN json_valid(body) THEN json_extract(body, '$.type') END IN (SELECT value FROM json_each(?2))
       AND (error IS NULL OR error NOT LIKE 'malformed event%')
     ORDER BY received_at LIMIT ?3`,
  )
    .bind(now - REDRIVE_AFTER_MS, JSON.stringify(TYPES), REDRIVE_BATCH)
    .all<{ id: string; body: string }>();
  if (results.length === 0) return 0;
  const newest = new Map<string, Redrivable>();
  const settled: string[] = [];
  const malformed: string[] = [];
  for (const row of results) {
    const parsed = Redrivable.safeParse(JSON.parse(row.body));
    if (!parsed.success) {
      malformed.push(row.id); // can never succeed: stays pending for an admin, out of the next ticks' way
      continue;
    }
    settled.push(row.id);
    const seen = newest.get(keyOf(parsed.data));
    if (!seen || rank(parsed.data) > rank(seen)) newest.set(keyOf(parsed.data), parsed.data);
  }
  if (malformed.length > 0) {
    await env.DB.prepare("UPDATE dead_letters SET error = 'malformed event (not re-driven); ' || coalesce(error, '') WHERE id IN (SELECT value FROM json_each(?))")
      .bind(JSON.stringify(malformed))
      .run();
  }
  const messages = [...newest.values()];
  for (let i = 0; i < messages.length; i += SEND_CHUNK) {
    await env.EVENTS.sendBatch(messages.slice(i, i + SEND_CHUNK).map((body) => ({ body, contentType: "json" as const })));
  }
  // Marked only after every send: a failed send leaves them pending for the next tick (a duplicate is harmless).
  if (settled.length > 0) {
    await env.DB.prepare("UPDATE dead_letters SET replayed_at = ?1 WHERE id IN (SELECT value FROM json_each(?2))").bind(now, JSON.stringify(settled)).run();
  }
  console.log(JSON.stringify({ level: "info", job: "dead-letter-redrive", letters: settled.length, messages: messages.length }));
  return settled.length;
}
