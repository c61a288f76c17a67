/**
 * Retry policy of the EVENTS queue, shared by every domain that consumes from it: a failed message is retried
 * on its own with exponential backoff; after `max_retries` (wrangler.toml) the queue moves it to the
 * dead-letter queue (see dead-letters.ts).
 */

/** Delay before the n-th redelivery (n = attempts so far): base, 2·base, 4·base… capped at 10 minutes. */
export function retryDelaySeconds(attempts: number, env: Pick<Env, "QUEUE_RETRY_BASE_SECONDS">): number {
  const base = Number(env.QUEUE_RETRY_BASE_SECONDS ?? "1");
  const safeBase = Number.isFinite(base) && base >= 0 ? base : 1;
  return Math.min(Math.round(safeBase * 2 ** Math.max(0, attempts - 1)), 600);
}

/** Logs why `msg` failed and schedules its redelivery with the backoff above. */
export function retryLater(msg: Message<unknown>, env: Pick<Env, "QUEUE_RETRY_BASE_SECONDS">, err: unknown, message = "event failed; retrying"): void {
  console.warn(JSON.stringify({ level: "warn", message, id: msg.id, attempts: msg.attempts, error: String(err) }));
  msg.retry({ delaySeconds: retryDelaySeconds(msg.attempts, env) });
}
