/**
 * Dead-letter handling. Messages that exhausted their retries on EVENTS land on `edgeshelf-events-dlq`; its
 * consumer stores them in D1 `dead_letters` (keyed by the message id, so a redelivery stores nothing twice)
 * where admins list them and replay them onto EVENTS once the cause is fixed.
 */
export type DeadLetter = { id: string; body: unknown; attempts: number; received_at: number; replayed_at: number | null };

export async function storeDeadLetters(batch: MessageBatch<unknown>, env: Pick<Env, "DB">, now = Date.now()): Promise<void> {
  if (batch.messages.length === 0) return;
  const stmt = env.DB.prepare("INSERT INTO dead_letters (id, body, attempts, received_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING");
  try {
    await env.DB.batch(batch.messages.map((m) => stmt.bind(m.id, JSON.stringify(m.body ?? null), m.attempts, now)));
    batch.ackAll();
  } catch (err) {
    console.error(JSON.stringify({ level: "error", message: "dead letters not stored; retrying", error: String(err) }));
    batch.retryAll({ delaySeconds: 5 });
  }
}

export async function listDeadLetters(env: Pick<Env, "DB">, opts: { pendingOnly: boolean; limit: number }): Promise<DeadLetter[]> {
  const { results } = await env.DB.prepare(
    `SELECT id, body, attempts, received_at, replayed_at FROM dead_letters
     WHERE (? = 0 OR replayed_at IS NULL) ORDER BY received_at DESC, id LIMIT ?`,
  )
    .bind(opts.pendingOnly ? 1 : 0, opts.limit)
    .all<{ id: string; body: string; attempts: number; received_at: number; replayed_at: number | null }>();
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
