/**
 * Fan-out: every recorded webhook event becomes one delivery row per endpoint subscribed to its type (endpoints
 * registered after the event do not get it), and every delivery one `webhook.deliver` message on the EVENTS
 * queue, so each endpoint's deliveries are retried, backed off and dead-lettered on their own.
 *
 * Runs after every EVENTS batch (most changes reach the queue as catalog or stock events) and from the cron, which
 * also re-sends deliveries whose send was lost. Deliveries are claimed (enqueued_at) before they are sent and
 * released if the send fails, so two dispatchers running at once do not both send the same delivery.
 */
import { collectPartitionEvents } from "./partition-events";

export const DELIVER_MESSAGE = "webhook.deliver";
export type DeliverMessage = { type: typeof DELIVER_MESSAGE; event_id: string; endpoint_id: string };

export const isDeliverMessage = (body: unknown): body is DeliverMessage =>
  typeof body === "object" && body !== null && (body as { type?: unknown }).type === DELIVER_MESSAGE;

const PAGE = 500;
const SEND_BATCH = 100;
/** A claimed delivery never attempted after this long lost its message (the sender died between claim and send). */
const LOST_CLAIM_MS = 10 * 60_000;

/** `recoverLost` (the cron): first release claims whose message never arrived. */
export async function dispatchWebhooks(env: Pick<Env, "DB" | "EVENTS" | "CATALOG_PARTITIONS">, now = Date.now(), opts: { recoverLost?: boolean } = {}): Promise<{ events: number; sent: number }> {
  await collectPartitionEvents(env);
  const pending = (
    await env.DB.prepare("SELECT id FROM webhook_events WHERE dispatched_at IS NULL ORDER BY created_at LIMIT ?").bind(PAGE).all<{ id: string }>()
  ).results.map((r) => r.id);
  if (pending.length > 0) {
    const ids = JSON.stringify(pending);
    await env.DB.batch([
      env.DB.prepare(
        `INSERT OR IGNORE INTO webhook_deliveries (event_id, endpoint_id, created_at)
         SELECT ev.id, e.id, ?2 FROM webhook_events ev
         JOIN webhook_endpoints e ON e.status = 'active' AND e.deleted_at IS NULL AND e.created_at <= ev.created_at
         WHERE ev.id IN (SELECT value FROM json_each(?1)) AND EXISTS (SELECT 1 FROM json_each(e.events) j WHERE j.value = ev.type)`,
      ).bind(ids, now),
      env.DB.prepare("UPDATE webhook_events SET dispatched_at = ?2 WHERE id IN (SELECT value FROM json_each(?1))").bind(ids, now),
    ]);
  }
  // Nothing new and not the cron: no delivery can be waiting (a failed send is released for the cron to retry).
  if (pending.length === 0 && !opts.recoverLost) return { events: 0, sent: 0 };
  if (opts.recoverLost) {
    await env.DB.prepare("UPDATE webhook_deliveries SET enqueued_at = NULL WHERE status = 'pending' AND attempts = 0 AND enqueued_at < ?")
      .bind(now - LOST_CLAIM_MS)
      .run();
  }
  const claimed = (
    await env.DB.prepare(
      `UPDATE webhook_deliveries SET enqueued_at = ?1
       WHERE rowid IN (SELECT rowid FROM webhook_deliveries WHERE enqueued_at IS NULL ORDER BY created_at LIMIT ?2) AND enqueued_at IS NULL
       RETURNING event_id, endpoint_id`,
    )
      .bind(now, PAGE)
      .all<{ event_id: string; endpoint_id: string }>()
  ).results;
  let sent = 0;
  for (let i = 0; i < claimed.length; i += SEND_BATCH) {
    const chunk = claimed.slice(i, i + SEND_BATCH);
    try {
      await env.EVENTS.sendBatch(chunk.map((d) => ({ body: { type: DELIVER_MESSAGE, ...d } satisfies DeliverMessage, contentType: "json" as const })));
      sent += chunk.length;
    } catch (err) {
      console.warn(JSON.stringify({ level: "warn", message: "webhook deliveries not enqueued; the cron will retry", count: chunk.length, error: String(err) }));
      await env.DB.prepare(
        `UPDATE webhook_deliveries SET enqueued_at = NULL
         WHERE (event_id, endpoint_id) IN (SELECT json_extract(value, '$.event_id'), json_extract(value, '$.endpoint_id') FROM json_each(?))`,
      )
        .bind(JSON.stringify(chunk))
        .run()
        .catch(() => {});
    }
  }
  return { events: pending.length, sent };
}

/** Delivered and cancelled deliveries, their events and old attempts are kept a week for the log, then pruned. */
export async function pruneWebhooks(env: Pick<Env, "DB">, now = Date.now()): Promise<void> {
  const before = now - 7 * 86_400_000;
  await env.DB.batch([
    env.DB.prepare("DELETE FROM webhook_deliveries WHERE status IN ('delivered', 'cancelled') AND created_at < ?").bind(before),
    env.DB.prepare(
      "DELETE FROM webhook_events WHERE dispatched_at IS NOT NULL AND created_at < ?1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
    ).bind(before),
  ]);
}
