/**
 * Retry policy of the EVENTS queue, shared by every domain that consumes from it: a failed message is retried
 * on its own with exponential backoff; after `max_retries` (wrangler.toml) the queue moves it to the
 * dead-letter queue (see dead-letters.ts).
 */
import { storeDeadLetter } from "./dead-letters";

/** Delay before the n-th redelivery (n = attempts so far): base, 2·base, 4·base… capped at 10 minutes. */
export function retryDelaySeconds(attempts: number, env: Pick<Env, "QUEUE_RETRY_BASE_SECONDS">): number {
  const base = Number(env.QUEUE_RETRY_BASE_SECONDS ?? "1");
  const safeBase = Number.isFinite(base) && base >= 0 ? base : 1;
  return Math.min(Math.round(safeBase * 2 ** Math.max(0, attempts - 1)), 600);
}

/** Must match `max_retries` of the EVENTS consumer in wrangler.toml: the delivery after which a failure is final. */
export const EVENTS_MAX_RETRIES = 5;

type RetryEnv = Pick<Env, "QUEUE_RETRY_BASE_SECONDS"> & Partial<Pick<Env, "DB">>;

/** Dead-letter writes started while a batch is handled; the queue handler awaits them before it returns. */
const pendingNotes = new Set<Promise<unknown>>();

function note(p: Promise<unknown>): void {
  pendingNotes.add(p);
  void p.finally(() => pendingNotes.delete(p));
}

/** Awaits every dead-letter write started by the handlers of this batch. */
export async function settleDeadLetterNotes(): Promise<void> {
  while (pendingNotes.size) await Promise.allSettled([...pendingNotes]);
}

/**
 * Logs why `msg` failed and schedules its redelivery with the backoff above. On the last attempt the queue will
 * move it to the dead-letter queue, which does not know why: the error is stored with the letter now.
 */
export function retryLater(msg: Message<unknown>, env: RetryEnv, err: unknown, message = "event failed; retrying"): void {
  console.warn(JSON.stringify({ level: "warn", message, id: msg.id, attempts: msg.attempts, error: String(err) }));
  if (msg.attempts > EVENTS_MAX_RETRIES && env.DB) {
    const db = env.DB;
    note(storeDeadLetter({ DB: db }, msg, String(err)).catch((e) => console.error(JSON.stringify({ level: "error", message: "dead letter cause not recorded", id: msg.id, error: String(e) }))));
  }
  msg.retry({ delaySeconds: retryDelaySeconds(msg.attempts, env) });
}

/** A message that can never succeed (malformed, unknown type): stored as a dead letter with `reason`, then acked. */
export function deadLetterNow(msg: Message<unknown>, env: RetryEnv, reason: string): void {
  console.warn(JSON.stringify({ level: "warn", message: "event can never succeed; stored as a dead letter", id: msg.id, reason }));
  if (!env.DB) {
    msg.ack();
    return;
  }
  note(storeDeadLetter({ DB: env.DB }, msg, reason).then(
    () => msg.ack(),
    (err) => retryLater(msg, env, err, "dead letter not stored; retrying"),
  ));
}
