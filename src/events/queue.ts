import { catalogEventHandler } from "./consumer";
import { storeDeadLetters } from "./dead-letters";
import { dispatch, dispatchTable } from "./dispatch";
import { afterProductRefresh, recommendationEventHandler } from "../recommendations/events";

/** Queue names as declared in wrangler.toml. */
export const EVENTS_QUEUE = "edgeshelf-events";
export const EVENTS_DLQ = "edgeshelf-events-dlq";

/**
 * Every message type on EVENTS and who consumes it. Handlers run in this order: recommendations last, so a long
 * rebuild step never delays the catalog and stock events of the same batch.
 */
const EVENT_HANDLERS = dispatchTable([catalogEventHandler([afterProductRefresh]), recommendationEventHandler]);

/** Entry point of the `queue` handler: routes each batch by the queue it came from. */
export async function handleQueue(batch: MessageBatch<unknown>, env: Env, ctx: ExecutionContext): Promise<void> {
  void ctx;
  if (batch.queue === EVENTS_QUEUE) return dispatch(batch, env, EVENT_HANDLERS);
  if (batch.queue === EVENTS_DLQ) return storeDeadLetters(batch, env);
  console.warn(JSON.stringify({ level: "warn", message: "batch from an unknown queue acked", queue: batch.queue }));
  batch.ackAll();
}
