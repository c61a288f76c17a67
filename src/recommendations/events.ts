/**
 * What recommendations take from the EVENTS queue (their entry in the dispatch table, src/events/dispatch.ts):
 * `reservation.committed` (co-purchase and sales counts), `recommendations.rebuild` (the next step of a
 * full rebuild), and, after the catalog consumer refreshed a product, the purge of every cached answer showing it.
 */
import { z } from "zod";
import type { ConsumerDeps, EventHandler, HandlerBatch } from "../events/dispatch";
import type { Purger } from "../events/purger";
import { retryLater } from "../events/retry";
import { allCatalogDbs } from "../db/partitions";
import { handleRebuildMessage, REBUILD_MESSAGE } from "./jobs";
import { countCommittedOrder, markDirty, ReservationCommittedEvent } from "./orders";
import { ownersShowing, purgeOwners } from "./refs";

const RebuildMessage = z.object({ type: z.literal(REBUILD_MESSAGE), job_id: z.string().min(1), occurred_at: z.number() });
export const RecommendationMessage = z.discriminatedUnion("type", [ReservationCommittedEvent, RebuildMessage]);
export type RecommendationMessage = z.infer<typeof RecommendationMessage>;

/** Handles one message; throws to have it retried. Malformed bodies are acked (logged), never retried. */
export async function handleRecommendationMessage(env: Env, body: unknown, deps: ConsumerDeps = {}): Promise<void> {
  const parsed = RecommendationMessage.safeParse(body);
  if (!parsed.success) {
    console.warn(JSON.stringify({ level: "warn", message: "malformed recommendation message acked", type: (body as { type?: unknown })?.type ?? null }));
    return;
  }
  const now = (deps.now ?? Date.now)();
  if (parsed.data.type === "reservation.committed") await countCommittedOrder(env.DB, parsed.data, now, allCatalogDbs(env));
  else await handleRebuildMessage(env, parsed.data, deps);
}

/**
 * After the consumer rebuilt product `id` (catalog edit, or stock change): purge every cached answer that
 * shows it (its card changed: availability, price, title), and on catalog edits recompute its lists.
 */
export async function afterProductRefresh(env: Env, purger: Purger | undefined, id: string, opts: { catalogChange: boolean; now?: number }): Promise<void> {
  if (opts.catalogChange) await markDirty(env.DB, [id], opts.now ?? Date.now());
  await purgeOwners(env, purger, await ownersShowing(env.DB, [id]));
}

/** Recommendation messages, each acked or retried (with the queue's backoff) on its own. */
export async function consumeRecommendationMessages(batch: HandlerBatch, env: Env, deps: ConsumerDeps = {}): Promise<void> {
  for (const msg of batch.messages) {
    try {
      await handleRecommendationMessage(env, msg.body, deps);
      msg.ack();
    } catch (err) {
      retryLater(msg, env, err, "recommendation message failed; retrying");
    }
  }
}

export const recommendationEventHandler: EventHandler = {
  name: "recommendations",
  types: RecommendationMessage.options.map((o) => o.shape.type.value),
  consume: consumeRecommendationMessages,
};
