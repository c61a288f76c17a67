/**
 * The events operators can subscribe a webhook endpoint to. Each is recorded in `webhook_events` in the same
 * transaction as the change that causes it (a D1 trigger, or the batch of the write), under an id derived from
 * that change, so a replayed change records nothing twice and a receiver sees one `webhook-id` per change.
 */
export const WEBHOOK_EVENT_TYPES = [
  "stock.low",
  "stock.out",
  "stock.back_in",
  "stock.oversold",
  "price.changed",
  "promotion.started",
  "promotion.ended",
  "reservation.committed",
  "import.completed",
] as const;

export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/**
 * SQL condition "some live endpoint wants events of type `typeSql`": events nobody subscribed to are not
 * recorded at all, so an installation without webhooks pays one indexed lookup per change.
 */
export const subscribedSql = (typeSql: string) =>
  `EXISTS (SELECT 1 FROM webhook_endpoints e, json_each(e.events) j WHERE e.status = 'active' AND e.deleted_at IS NULL AND j.value = ${typeSql})`;

/** Milliseconds since the epoch inside SQLite (triggers have no bound "now"). */
export const SQL_NOW_MS = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";
/** RFC 3339 UTC text of a millisecond SQL expression. */
export const sqlIso = (msSql: string) => `strftime('%Y-%m-%dT%H:%M:%fZ', (${msSql}) / 1000.0, 'unixepoch')`;
