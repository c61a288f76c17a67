/**
 * One dispatch table for the EVENTS queue, keyed by message type. Each domain describes the types it owns and
 * how it consumes a batch of them (an `EventHandler`); src/events/queue.ts lists the handlers in the order
 * they run. The queue code never imports a domain's internals, and a domain never imports the consumer of
 * another: a new message type is one more entry, not one more branch.
 */
import type { Purger } from "./purger";
import { deadLetterNow } from "./retry";

export type ConsumerDeps = { purger?: Purger; now?: () => number };

/** The messages of one batch that belong to one handler; each must be acked or retried by it. */
export type HandlerBatch = { messages: readonly Message<unknown>[] };

export type EventHandler = {
  /** Shown in logs. */
  name: string;
  types: readonly string[];
  consume(batch: HandlerBatch, env: Env, deps: ConsumerDeps): Promise<void>;
};

export type DispatchTable = { handlers: readonly EventHandler[]; byType: ReadonlyMap<string, EventHandler> };

/** Builds the table; two handlers claiming one type is a wiring mistake, caught when the module loads. */
export function dispatchTable(handlers: readonly EventHandler[]): DispatchTable {
  const byType = new Map<string, EventHandler>();
  for (const handler of handlers) {
    for (const type of handler.types) {
      const owner = byType.get(type);
      if (owner) throw new Error(`message type ${type} is claimed by both ${owner.name} and ${handler.name}`);
      byType.set(type, handler);
    }
  }
  return { handlers, byType };
}

const typeOf = (body: unknown): unknown => (typeof body === "object" && body !== null ? (body as { type?: unknown }).type : undefined);

/**
 * Hands each handler its messages, one handler after the other in table order. Messages no handler claims can
 * never succeed on retry: they are stored as dead letters with the reason and acked.
 */
export async function dispatch(batch: { messages: readonly Message<unknown>[] }, env: Env, table: DispatchTable, deps: ConsumerDeps = {}): Promise<void> {
  const mine = new Map<EventHandler, Message<unknown>[]>();
  for (const msg of batch.messages) {
    const type = typeOf(msg.body);
    const handler = typeof type === "string" ? table.byType.get(type) : undefined;
    if (!handler) {
      deadLetterNow(msg, env, `no handler for message type ${JSON.stringify(type ?? null)}`);
      continue;
    }
    const list = mine.get(handler);
    if (list) list.push(msg);
    else mine.set(handler, [msg]);
  }
  for (const handler of table.handlers) {
    const messages = mine.get(handler);
    if (messages?.length) await handler.consume({ messages }, env, deps);
  }
}
