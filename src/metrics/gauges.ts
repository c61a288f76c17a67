/** Point-in-time figures sampled into the per-minute store, so the console can draw their last hour. */
import { addPoint, flushPoints } from "./timeseries";

export type Gauges = { outboxBacklog: number; deadLettersPending: number; hotSkus: number };

export async function readGauges(db: D1Database): Promise<Gauges> {
  const [outbox, dead, hot] = await db.batch([
    db.prepare("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL"),
    db.prepare("SELECT count(*) AS n FROM dead_letters WHERE replayed_at IS NULL"),
    db.prepare("SELECT count(*) AS n FROM hot_skus WHERE state = 'hot'"),
  ]);
  const n = (r: D1Result | undefined) => (r?.results[0] as { n: number } | undefined)?.n ?? 0;
  return { outboxBacklog: n(outbox), deadLettersPending: n(dead), hotSkus: n(hot) };
}

/** Samples the gauges and writes them with whatever this isolate has buffered (cron, and each console overview). */
export async function recordGauges(env: Pick<Env, "DB">, now = Date.now(), known?: Gauges): Promise<Gauges> {
  const g = known ?? (await readGauges(env.DB));
  addPoint("g.outbox", g.outboxBacklog, now);
  addPoint("g.dlq", g.deadLettersPending, now);
  addPoint("g.hot", g.hotSkus, now);
  await flushPoints(env.DB, now);
  return g;
}
