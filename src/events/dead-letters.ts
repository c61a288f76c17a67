/**
 * Dead-letter handling. Messages that exhausted their retries on EVENTS land on `edgeshelf-events-dlq`; its
 * consumer stores them in D1 `dead_letters` (keyed by the message id, so a redelivery stores nothing twice)
 * where admins list them and replay them onto EVENTS once the cause is fixed. The EVENTS consumer also stores
 * a letter itself, with its error, on a message's last attempt and for bodies that can never be processed.
 *
 * A dead letter is never dropped: a batch that cannot be stored is stored message by message; a message whose
 * body cannot be stored is stored with a truncated body and the reason; and on the dead-letter queue's last
 * attempts, when D1 itself keeps failing, the letter goes to KV under `dead-letter:{id}` instead.
 */
export type DeadLetter = { id: string; body: unknown; attempts: number; received_at: number; replayed_at: number | null; error: string | null };

/** Must match `max_retries` of the dead-letter queue's consumer in wrangler.toml. */
export const DLQ_MAX_RETRIES = 10;
const MAX_BODY_CHARS = 256 * 1024;
const MAX_ERROR_CHARS = 2_000;

const INSERT = `INSERT INTO dead_letters (id, body, attempts, received_at, error) VALUES (?, ?, ?, ?, ?)
  ON CONFLICT (id) DO UPDATE SET error = coalesce(dead_letters.error, excluded.error)`;

/** The body as JSON text, or a stand-in naming why it could not be kept whole. */
function storableBody(body: unknown): { text: string; problem?: string } {
  let text: string;
  try {
    text = JSON.stringify(body ?? null) ?? "null";
  } catch (err) {
    return { text: JSON.stringify({ unstorable: String(err).slice(0, 500) }), problem: "body is not JSON" };
  }
  if (text.length <= MAX_BODY_CHARS) return { text };
  return { text: JSON.stringify({ truncated: text.slice(0, MAX_BODY_CHARS) }), problem: `body truncated from ${text.length} characters` };
}

function bindLetter(db: D1Database, m: Pick<Message<unknown>, "id" | "body" | "attempts">, now: number, error: string | null): D1PreparedStatement {
  const { text, problem } = storableBody(m.body);
  const why = [error, problem].filter(Boolean).join("; ") || null;
  return db.prepare(INSERT).bind(m.id, text, m.attempts, now, why ? why.slice(0, MAX_ERROR_CHARS) : null);
}

/** Stores one dead letter with its cause (keeping a cause recorded earlier). */
export async function storeDeadLetter(env: Pick<Env, "DB">, m: Message<unknown>, error: string | null, now = Date.now()): Promise<void> {
  await bindLetter(env.DB, m, now, error).run();
}

/**
 * A message that never reached the queue because the queue can never take it (over its size limit): stored as a
 * dead letter under the sender's own id, with the reason, so it is listed with the others instead of being lost.
 */
export async function storeUnsendable(env: Pick<Env, "DB">, id: string, bodyText: string, attempts: number, error: string, now = Date.now()): Promise<void> {
  let body: unknown;
  try {
    body = JSON.parse(bodyText) as unknown;
  } catch {
    body = { unparsable: bodyText.slice(0, 1_000) };
  }
  await bindLetter(env.DB, { id, body, attempts }, now, error).run();
}

export async function storeDeadLetters(batch: MessageBatch<unknown>, env: Pick<Env, "DB" | "CATALOG_KV">, now = Date.now()): Promise<void> {
  if (batch.messages.length === 0) return;
  try {
    await env.DB.batch(batch.messages.map((m) => bindLetter(env.DB, m, now, null)));
    batch.ackAll();
    return;
  } catch (err) {
    console.error(JSON.stringify({ level: "error", message: "dead letters not stored as a batch; storing one by one", error: String(err) }));
  }
  for (const m of batch.messages) {
    try {
      await bindLetter(env.DB, m, now, null).run();
      m.ack();
    } catch (err) {
      if (m.attempts >= DLQ_MAX_RETRIES && (await keepInKv(env, m, now, err))) m.ack();
      else m.retry({ delaySeconds: 5 });
    }
  }
}

/** Last resort when D1 keeps refusing: the letter in KV, where an admin (or a later sweep) finds it. */
async function keepInKv(env: Pick<Env, "CATALOG_KV">, m: Message<unknown>, now: number, err: unknown): Promise<boolean> {
  try {
    const { text } = storableBody(m.body);
    await env.CATALOG_KV.put(`dead-letter:${m.id}`, JSON.stringify({ id: m.id, body: text, attempts: m.attempts, received_at: now, error: String(err).slice(0, MAX_ERROR_CHARS) }));
    console.error(JSON.stringify({ level: "error", message: "dead letter kept in KV: D1 refused it", id: m.id, error: String(err) }));
    return true;
  } catch (kvErr) {
    console.error(JSON.stringify({ level: "error", message: "dead letter could not be stored anywhere", id: m.id, error: String(kvErr) }));
    return false;
  }
}

export async function listDeadLetters(env: Pick<Env, "DB">, opts: { pendingOnly: boolean; limit: number }): Promise<DeadLetter[]> {
  const { results } = await env.DB.prepare(
    `SELECT id, body, attempts, received_at, replayed_at, error FROM dead_letters
     WHERE (? = 0 OR replayed_at IS NULL) ORDER BY received_at DESC, id LIMIT ?`,
  )
    .bind(opts.pendingOnly ? 1 : 0, opts.limit)
    .all<{ id: string; body: string; attempts: number; received_at: number; replayed_at: number | null; error: string | null }>();
  return results.map((r) => ({ ...r, body: JSON.parse(r.body) as unknown }));
}

/** Sends dead letters back onto EVENTS and marks them replayed. `ids` empty = every pending one (up to limit). */
export async function replayDeadLetters(env: Pick<Env, "DB" | "EVENTS">, ids: string[] | undefined, limit = 100, now = Date.now()): Promise<string[]> {
  const { results } = ids?.length
    ? await env.DB.prepare("SELECT id, body FROM dead_letters WHERE replayed_at IS NULL AND id IN (SELECT value FROM json_each(?)) LIMIT ?")
        .bind(JSON.stringify(ids), limit)
        .all<{ id: string; body: string }>()
    : await env.DB.prepare("SELECT id, body FROM dead_letters WHERE replayed_at IS NULL ORDER BY received_at LIMIT ?").bind(limit).all<{ id: string; body: string }>();
  const replayed: string[] = [];
  for (let i = 0; i < results.length; i += 100) {
    const chunk = results.slice(i, i + 100);
    await env.EVENTS.sendBatch(chunk.map((r) => ({ body: JSON.parse(r.body) as unknown, contentType: "json" as const })));
    await env.DB.prepare("UPDATE dead_letters SET replayed_at = ? WHERE id IN (SELECT value FROM json_each(?))")
      .bind(now, JSON.stringify(chunk.map((r) => r.id)))
      .run();
    replayed.push(...chunk.map((r) => r.id));
  }
  return replayed;
}
