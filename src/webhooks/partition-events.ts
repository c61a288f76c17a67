/**
 * Webhooks over catalog partitions. Stock crossings and price changes are recorded by D1 triggers
 * (migrations/0011_webhooks.sql) in the database where the row changes, which for a product of partition i > 0 is
 * `CATALOG_<i>`; the triggers record an event only when some active endpoint wants its type, and endpoints live in
 * the directory `DB`. So:
 * - every other partition keeps a mirror of the active endpoints' subscriptions (id and events only: no url, no
 *   secret), brought up to date after every endpoint write and by the cron (which writes only the rows that differ:
 *   the cron runs every minute, and rewriting every endpoint there each time was a write per endpoint and
 *   partition for nothing); a mirror that still lists an endpoint disabled
 *   meanwhile only records an event that the directory then delivers to nobody;
 * - the dispatcher first moves the events those partitions recorded into the directory's `webhook_events` (same
 *   id, payload and time; insert, then delete there), where they fan out to endpoints exactly like partition 0's.
 * With one partition both are no-ops.
 */
import { allCatalogDbs } from "../db/partitions";

type PartitionEnv = Pick<Env, "DB" | "CATALOG_PARTITIONS">;

/** Events moved per partition and dispatch: the dispatcher's own page. */
const COLLECT_PAGE = 500;

export async function mirrorEndpoints(env: PartitionEnv): Promise<void> {
  const dbs = allCatalogDbs(env);
  if (dbs.length === 1) return;
  const { results } = await env.DB.prepare(
    "SELECT id, events, created_at, updated_at FROM webhook_endpoints WHERE status = 'active' AND deleted_at IS NULL",
  ).all();
  const rows = JSON.stringify(results);
  await Promise.all(
    dbs.slice(1).map((db) =>
      db.batch([
        db.prepare("DELETE FROM webhook_endpoints WHERE id NOT IN (SELECT json_extract(value, '$.id') FROM json_each(?))").bind(rows),
        db
          .prepare(
            `INSERT INTO webhook_endpoints (id, url, events, secret, status, created_at, updated_at)
             SELECT json_extract(value, '$.id'), '', json_extract(value, '$.events'), '', 'active', json_extract(value, '$.created_at'), json_extract(value, '$.updated_at')
             FROM json_each(?) WHERE true
             ON CONFLICT (id) DO UPDATE SET events = excluded.events, updated_at = excluded.updated_at
             WHERE events IS NOT excluded.events OR updated_at IS NOT excluded.updated_at`,
          )
          .bind(rows),
      ]),
    ),
  );
}

/** Moves events recorded in partitions > 0 into the directory; returns how many. */
export async function collectPartitionEvents(env: PartitionEnv): Promise<number> {
  const dbs = allCatalogDbs(env);
  let moved = 0;
  for (const db of dbs.slice(1)) {
    const { results } = await db
      .prepare("SELECT id, type, payload, created_at FROM webhook_events WHERE dispatched_at IS NULL ORDER BY created_at LIMIT ?")
      .bind(COLLECT_PAGE)
      .all();
    if (results.length === 0) continue;
    const rows = JSON.stringify(results);
    // Insert first: a failure between the two statements leaves the events in both, and the next run's insert ignores them.
    await env.DB.prepare(
      `INSERT OR IGNORE INTO webhook_events (id, type, payload, created_at)
       SELECT json_extract(value, '$.id'), json_extract(value, '$.type'), json_extract(value, '$.payload'), json_extract(value, '$.created_at') FROM json_each(?)`,
    )
      .bind(rows)
      .run();
    await db.prepare("DELETE FROM webhook_events WHERE id IN (SELECT json_extract(value, '$.id') FROM json_each(?))").bind(rows).run();
    moved += results.length;
  }
  return moved;
}
