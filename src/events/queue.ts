import { catalogEventHandler } from "./consumer";
import { storeDeadLetters } from "./dead-letters";
import { dispatch, dispatchTable } from "./dispatch";
import { settleDeadLetterNotes } from "./retry";
import { afterProductRefresh, recommendationEventHandler } from "../recommendations/events";
import { webhookDeliveryHandler } from "../webhooks/deliver";
import { dispatchWebhooks } from "../webhooks/dispatch";
import { recordMessageEvents } from "../webhooks/record";

/** Queue names as declared in wrangler.toml. */
export const EVENTS_QUEUE = "edgeshelf-events";
export const EVENTS_DLQ = "edgeshelf-events-dlq";

/**
 * Every message type on EVENTS and who consumes it. Handlers run in this order: recommendations after the catalog,
 * so a long rebuild step never delays the catalog and stock events of the same batch, and webhook deliveries last,
 * since they wait on other people's servers.
 */
const EVENT_HANDLERS = dispatchTable([catalogEventHandler([afterProductRefresh]), recommendationEventHandler, webhookDeliveryHandler]);

/** Entry point of the `queue` handler: routes each batch by the queue it came from. */
export async function handleQueue(batch: MessageBatch<unknown>, env: Env, ctx: ExecutionContext): Promise<void> {
  void ctx;
  if (batch.queue === EVENTS_QUEUE) {
    // Webhook events carried by messages another handler owns (reservation.committed), recorded before it acks them.
    await recordMessageEvents(batch.messages, env);
    try {
      await dispatch(batch, env, EVENT_HANDLERS);
    } finally {
      await settleDeadLetterNotes();
    }
    // Stock crossings, price changes, imports and oversells recorded webhook events in the writes this batch followed.
    await dispatchWebhooks(env).catch((err) => console.warn(JSON.stringify({ level: "warn", message: "webhook dispatch failed; the cron retries", error: String(err) })));
    return;
  }
  if (batch.queue === EVENTS_DLQ) return storeDeadLetters(batch, env);
  console.warn(JSON.stringify({ level: "warn", message: "batch from an unknown queue acked", queue: batch.queue }));
  batch.ackAll();
}
