/**
 * Consumer of `webhook.deliver` messages: one signed POST per message. Each message is acked or retried on its
 * own, so one endpoint's failures never hold back another's deliveries; the deliveries of a batch run in
 * parallel, each bounded by WEBHOOK_TIMEOUT_MS. After a failure the endpoint gets a backoff window
 * (`retry_after`): its other deliveries wait it out without a request, so a slow endpoint costs one timeout per
 * window, not one per message. After the queue's max_retries a message goes to the dead-letter queue (listed and
 * replayed with the other dead letters); WEBHOOK_DISABLE_AFTER consecutive failures disable the endpoint.
 */
import { signatureHeader } from "./signing";
import { refuseTarget, type TargetEnv } from "./target-policy";
import { DELIVER_MESSAGE, isDeliverMessage } from "./dispatch";
import type { EventHandler } from "../events/dispatch";

type WebhookEnv = Pick<Env, "DB" | "ENVIRONMENT"> & TargetEnv & {
  WEBHOOK_TIMEOUT_MS?: string;
  WEBHOOK_RETRY_BASE_SECONDS?: string;
  WEBHOOK_DISABLE_AFTER?: string;
};

/** Attempts kept in the delivery log per endpoint. */
export const ATTEMPTS_KEPT = 50;
/** The queue's max_retries for EVENTS (wrangler.toml) + the first try: the attempt after which a message is dead-lettered. */
const LAST_QUEUE_ATTEMPT = 6;

const num = (v: string | undefined, fallback: number) => {
  const n = Number(v);
  return v !== undefined && v !== "" && Number.isFinite(n) && n >= 0 ? n : fallback;
};

/** Seconds before the n-th retry: base, 2·base, 4·base… capped at an hour. */
export function webhookBackoffSeconds(n: number, env: WebhookEnv): number {
  return Math.min(Math.round(num(env.WEBHOOK_RETRY_BASE_SECONDS, 30) * 2 ** Math.max(0, n - 1)), 3_600);
}

type Row = {
  status: string; url: string; secret: string; endpoint_status: string; deleted_at: number | null;
  retry_after: number; type: string; payload: string;
};

/** The webhooks' entry in the EVENTS dispatch table (src/events/queue.ts). */
export const webhookDeliveryHandler: EventHandler = {
  name: "webhooks",
  types: [DELIVER_MESSAGE],
  consume: (batch, env) => deliverWebhookMessages(batch.messages, env),
};

export async function deliverWebhookMessages(messages: readonly Message<unknown>[], env: WebhookEnv, now: () => number = Date.now): Promise<void> {
  await Promise.all(messages.filter((m) => isDeliverMessage(m.body)).map((m) => deliverOne(m, env, now)));
}

async function deliverOne(msg: Message<unknown>, env: WebhookEnv, now: () => number): Promise<void> {
  if (!isDeliverMessage(msg.body)) return;
  const { event_id: eventId, endpoint_id: endpointId } = msg.body;
  try {
    const row = await env.DB.prepare(
      `SELECT d.status, e.url, e.secret, e.status AS endpoint_status, e.deleted_at, e.retry_after, ev.type, ev.payload
       FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id JOIN webhook_events ev ON ev.id = d.event_id
       WHERE d.event_id = ? AND d.endpoint_id = ?`,
    )
      .bind(eventId, endpointId)
      .first<Row>();
    // Gone (endpoint deleted, or pruned) or already done: a duplicate message has nothing left to do.
    if (!row || row.status === "delivered" || row.status === "cancelled") return msg.ack();
    if (row.endpoint_status !== "active" || row.deleted_at !== null) {
      await env.DB.prepare("UPDATE webhook_deliveries SET status = 'cancelled' WHERE event_id = ? AND endpoint_id = ?").bind(eventId, endpointId).run();
      return msg.ack();
    }
    const start = now();
    if (row.retry_after > start) return msg.retry({ delaySeconds: Math.ceil((row.retry_after - start) / 1000) });

    const refusal = refuseTarget(row.url, env);
    const outcome = refusal ? { ok: false, status: null, error: `target refused: ${refusal}` } : await post(row, eventId, env, start);
    const disableAfter = num(env.WEBHOOK_DISABLE_AFTER, 50);
    const failures = outcome.ok ? 0 : 1;
    const backoffUntil = start + webhookBackoffSeconds(msg.attempts, env) * 1000;
    const finalAttempt = !outcome.ok && msg.attempts >= LAST_QUEUE_ATTEMPT;
    await env.DB.batch([
      env.DB.prepare(
        `INSERT INTO webhook_attempts (endpoint_id, event_id, event_type, attempt, attempted_at, ok, status_code, error, duration_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).bind(endpointId, eventId, row.type, msg.attempts, start, outcome.ok ? 1 : 0, outcome.status, outcome.error, Math.max(0, now() - start)),
      env.DB.prepare(
        `DELETE FROM webhook_attempts WHERE endpoint_id = ?1
         AND id <= (SELECT id FROM webhook_attempts WHERE endpoint_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)`,
      ).bind(endpointId, ATTEMPTS_KEPT),
      env.DB.prepare(
        `UPDATE webhook_deliveries SET attempts = attempts + 1, status = ?3, delivered_at = ?4 WHERE event_id = ?1 AND endpoint_id = ?2`,
      ).bind(eventId, endpointId, outcome.ok ? "delivered" : finalAttempt ? "failed" : "pending", outcome.ok ? now() : null),
      env.DB.prepare(
        `UPDATE webhook_endpoints SET
           consecutive_failures = CASE WHEN ?2 = 0 THEN 0 ELSE consecutive_failures + 1 END,
           retry_after = CASE WHEN ?2 = 0 THEN 0 ELSE ?3 END,
           status = CASE WHEN ?2 = 1 AND consecutive_failures + 1 >= ?4 THEN 'disabled' ELSE status END,
           disabled_at = CASE WHEN ?2 = 1 AND consecutive_failures + 1 >= ?4 AND status = 'active' THEN ?5 ELSE disabled_at END,
           disabled_reason = CASE WHEN ?2 = 1 AND consecutive_failures + 1 >= ?4 AND status = 'active'
             THEN (consecutive_failures + 1) || ' consecutive failed deliveries; last: ' || ?6 ELSE disabled_reason END,
           updated_at = ?5
         WHERE id = ?1`,
      ).bind(endpointId, failures, backoffUntil, disableAfter, start, outcome.error ?? ""),
    ]);
    if (outcome.ok) return msg.ack();
    return msg.retry({ delaySeconds: webhookBackoffSeconds(msg.attempts, env) });
  } catch (err) {
    console.warn(JSON.stringify({ level: "warn", message: "webhook delivery failed; retrying", event_id: eventId, endpoint_id: endpointId, error: String(err) }));
    msg.retry({ delaySeconds: webhookBackoffSeconds(msg.attempts, env) });
  }
}

async function post(row: Row, eventId: string, env: WebhookEnv, start: number): Promise<{ ok: boolean; status: number | null; error: string | null }> {
  const timestamp = Math.floor(start / 1000);
  const timeoutMs = num(env.WEBHOOK_TIMEOUT_MS, 10_000);
  try {
    const res = await fetch(row.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "user-agent": "edgeshelf-webhooks/1",
        "webhook-id": eventId,
        "webhook-timestamp": String(timestamp),
        "webhook-signature": await signatureHeader(row.secret, eventId, timestamp, row.payload),
      },
      body: row.payload,
      // A redirect could point inside the network the target policy keeps deliveries out of.
      redirect: "manual",
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.body?.cancel();
    const ok = res.status >= 200 && res.status < 300;
    return { ok, status: res.status, error: ok ? null : `HTTP ${res.status}` };
  } catch (err) {
    const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
    return { ok: false, status: null, error: timedOut ? `no answer within ${timeoutMs} ms` : String(err).slice(0, 300) };
  }
}
