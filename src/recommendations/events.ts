/**
 * What recommendations take from the EVENTS queue (dispatched from src/events/consumer.ts):
 * `reservation.committed` (co-purchase and sales counts), `recommendations.rebuild` (the next step of a
 * full rebuild), and, after the consumer refreshed a product, the purge of every cached answer showing it.
 */
import { z } from "zod";
import { retryDelaySeconds } from "../events/consumer";
import type { Purger } from "../events/purger";
import { handleRebuildMessage, REBUILD_MESSAGE } from "./jobs";
import { countCommittedOrder, markDirty, ReservationCommittedEvent } from "./orders";
import { ownersShowing, purgeOwners } from "./refs";

const RebuildMessage = z.object({ type: z.literal(REBUILD_MESSAGE), job_id: z.string().min(1), occurred_at: z.number() });
export const RecommendationMessage = z.discriminatedUnion("type", [ReservationCommittedEvent, RebuildMessage]);
export type RecommendationMessage = z.infer<typeof RecommendationMessage>;

const TYPES = new Set(["reservation.committed", REBUILD_MESSAGE]);

/** True for the message types this module consumes (the body may still be malformed). */
export function isRecommendationMessage(body: unknown): boolean {
  return typeof body === "object" && body !== null && TYPES.has(String((body as { type?: unknown }).type));
}

/** Handles one message; throws to have it retried. Malformed bodies are acked (logged), never retried. */
export async function handleRecommendationMessage(env: Env, body: unknown, deps: { purger?: Purger; now?: () => number } = {}): Promise<void> {
  const parsed = RecommendationMessage.safeParse(body);
  if (!parsed.success) {
    console.warn(JSON.stringify({ level: "warn", message: "malformed recommendation message acked", type: (body as { type?: unknown })?.type ?? null }));
    return;
  }
  const now = (deps.now ?? Date.now)();
  if (parsed.data.type === "reservation.committed") await countCommittedOrder(env.DB, parsed.data, now);
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

/** The recommendation messages of an EVENTS batch, each acked or retried (with the consumer's backoff) on its own. */
export async function consumeRecommendationMessages(batch: MessageBatch<unknown>, env: Env, deps: { purger?: Purger; now?: () => number } = {}): Promise<void> {
  for (const msg of batch.messages) {
    if (!isRecommendationMessage(msg.body)) continue;
    try {
      await handleRecommendationMessage(env, msg.body, deps);
      msg.ack();
    } catch (err) {
      console.warn(JSON.stringify({ level: "warn", message: "recommendation message failed; retrying", id: msg.id, attempts: msg.attempts, error: String(err) }));
      msg.retry({ delaySeconds: retryDelaySeconds(msg.attempts, env) });
    }
  }
}
