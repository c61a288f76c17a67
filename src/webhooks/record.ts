/**
 * Webhook events that are not caught by a D1 trigger (stock crossings, price changes and completed imports are,
 * and so are oversells, see migrations/0011_webhooks.sql): reservation.committed, carried by a queue message from
 * the stock shards. Promotion boundaries have their own module (promotion-events.ts).
 */
import { subscribedSql } from "./event-types";

/** Types owned by another handler of the dispatch table, observed here before it acks them. */
const OBSERVED = new Set(["reservation.committed"]);

/** A stable id for a message-borne event: its own id (reservation id, …) when it has one, else its content. */
async function eventKey(body: Record<string, unknown>): Promise<string> {
  if (typeof body.id === "string" && body.id.length <= 200) return body.id;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(JSON.stringify(body)));
  return [...new Uint8Array(digest).slice(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function data(body: Record<string, unknown>): Record<string, unknown> {
  const { type: _type, ...rest } = body;
  if (body.type === "reservation.committed") {
    const { id, occurred_at, ...others } = rest as { id: string; occurred_at?: number };
    return { reservation_id: id, ...others, committed_at: typeof occurred_at === "number" ? new Date(occurred_at).toISOString() : undefined };
  }
  return rest;
}

/**
 * Records the webhook events carried by this batch's messages. It neither acks nor retries on success (other
 * consumers of the same messages do); when recording fails it asks for a retry first, so the message comes back.
 */
export async function recordMessageEvents(messages: readonly Message<unknown>[], env: Pick<Env, "DB">, now = Date.now()): Promise<void> {
  const observed = messages.filter((m) => {
    const type = (m.body as { type?: unknown } | null)?.type;
    return typeof type === "string" && OBSERVED.has(type);
  });
  if (observed.length === 0) return;
  try {
    const statements = await Promise.all(
      observed.map(async (m) => {
        const body = m.body as Record<string, unknown>;
        const type = body.type as string;
        const occurred = typeof body.occurred_at === "number" ? body.occurred_at : now;
        const payload = JSON.stringify({ type, timestamp: new Date(occurred).toISOString(), data: data(body) });
        return env.DB.prepare(
          `INSERT OR IGNORE INTO webhook_events (id, type, payload, created_at) SELECT ?1, ?2, ?3, ?4 WHERE ${subscribedSql("?2")}`,
        ).bind(`msg_${type}_${await eventKey(body)}`, type, payload, now);
      }),
    );
    await env.DB.batch(statements);
  } catch (err) {
    console.warn(JSON.stringify({ level: "warn", message: "webhook events not recorded; retrying their messages", count: observed.length, error: String(err) }));
    for (const m of observed) m.retry();
  }
}
