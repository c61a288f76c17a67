-- Signed outbound webhooks (src/webhooks/). Endpoints registered by operators; events recorded in the same
-- transaction as the change that causes them (deterministic ids, so a replayed change records nothing twice);
-- one delivery row per (event, endpoint), sent through the EVENTS queue; the last attempts per endpoint.
CREATE TABLE webhook_endpoints (
  id TEXT PRIMARY KEY NOT NULL,
  url TEXT NOT NULL,
  events TEXT NOT NULL,
  secret TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT 'active',
  disabled_reason TEXT,
  disabled_at INTEGER,
  consecutive_failures INTEGER NOT NULL DEFAULT 0,
  retry_after INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  deleted_at INTEGER
);
--> statement-breakpoint
CREATE TABLE webhook_events (
  id TEXT PRIMARY KEY NOT NULL,
  type TEXT NOT NULL,
  payload TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  dispatched_at INTEGER
);
--> statement-breakpoint
CREATE INDEX webhook_events_pending_idx ON webhook_events(created_at) WHERE dispatched_at IS NULL;
--> statement-breakpoint
CREATE TABLE webhook_deliveries (
  event_id TEXT NOT NULL,
  endpoint_id TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  enqueued_at INTEGER,
  delivered_at INTEGER,
  PRIMARY KEY (event_id, endpoint_id)
);
--> statement-breakpoint
CREATE INDEX webhook_deliveries_unsent_idx ON webhook_deliveries(created_at) WHERE enqueued_at IS NULL;
--> statement-breakpoint
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries(enqueued_at) WHERE status = 'pending';
--> statement-breakpoint
CREATE TABLE webhook_attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  endpoint_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  attempted_at INTEGER NOT NULL,
  ok INTEGER NOT NULL,
  status_code INTEGER,
  error TEXT,
  duration_ms INTEGER NOT NULL
);
--> statement-breakpoint
CREATE INDEX webhook_attempts_endpoint_idx ON webhook_attempts(endpoint_id, id);

--> statement-breakpoint
-- stock.low / stock.out / stock.back_in: a SKU's status at one location crossing the low-stock threshold or zero, as
-- the availability projection records it (only newer stock events update a row, so a replayed or late event
-- crosses nothing). Once per crossing: a sale that leaves the status as it was records nothing.
CREATE TRIGGER webhook_stock_crossing AFTER UPDATE OF status ON availability
WHEN OLD.status <> NEW.status AND (NEW.status <> 'in_stock' OR OLD.status = 'out_of_stock')
BEGIN
  INSERT OR IGNORE INTO webhook_events (id, type, payload, created_at)
  SELECT 'msg_' || t.type || '_' || NEW.sku || '_' || NEW.location_id || '_' || NEW.seq, t.type,
    json_object('type', t.type, 'timestamp', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'data', json_object(
      'sku', NEW.sku, 'product_id', (SELECT product_id FROM variants WHERE sku = NEW.sku), 'location', NEW.location_id,
      'status', NEW.status, 'previous_status', OLD.status, 'available', NEW.available, 'on_hand', NEW.on_hand,
      'reserved', NEW.reserved, 'seq', NEW.seq)),
    CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
  FROM (SELECT CASE WHEN NEW.status = 'out_of_stock' THEN 'stock.out' WHEN OLD.status = 'out_of_stock' THEN 'stock.back_in' ELSE 'stock.low' END AS type) t
  WHERE EXISTS (SELECT 1 FROM webhook_endpoints e, json_each(e.events) j WHERE e.status = 'active' AND e.deleted_at IS NULL AND j.value = t.type);
END;
--> statement-breakpoint
-- price.changed: a regular price (per SKU and currency) changed, by any writer (PUT, PATCH, import).
CREATE TRIGGER webhook_price_changed AFTER UPDATE OF amount ON prices
WHEN OLD.amount <> NEW.amount
BEGIN
  INSERT OR IGNORE INTO webhook_events (id, type, payload, created_at)
  SELECT 'msg_price.changed_' || NEW.sku || '_' || NEW.currency || '_' || NEW.version, 'price.changed',
    json_object('type', 'price.changed', 'timestamp', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'data', json_object(
      'sku', NEW.sku, 'product_id', (SELECT product_id FROM variants WHERE sku = NEW.sku), 'currency', NEW.currency,
      'previous_amount', OLD.amount, 'amount', NEW.amount, 'version', NEW.version)),
    CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
  WHERE EXISTS (SELECT 1 FROM webhook_endpoints e, json_each(e.events) j WHERE e.status = 'active' AND e.deleted_at IS NULL AND j.value = 'price.changed');
END;
--> statement-breakpoint
-- import.completed: an import published (a re-sent identical file publishes nothing and records nothing).
CREATE TRIGGER webhook_import_completed AFTER UPDATE OF status ON imports
WHEN NEW.status = 'completed' AND OLD.status <> 'completed'
BEGIN
  INSERT OR IGNORE INTO webhook_events (id, type, payload, created_at)
  SELECT 'msg_import.completed_' || NEW.id, 'import.completed',
    json_object('type', 'import.completed', 'timestamp', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'data', json_object(
      'import_id', NEW.id, 'format', NEW.format, 'total_lines', NEW.total_lines, 'accepted', NEW.accepted,
      'rejected', NEW.rejected, 'started_at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.created_at / 1000.0, 'unixepoch'))),
    CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
  WHERE EXISTS (SELECT 1 FROM webhook_endpoints e, json_each(e.events) j WHERE e.status = 'active' AND e.deleted_at IS NULL AND j.value = 'import.completed');
END;
--> statement-breakpoint
-- stock.oversold: a shard reported held units beyond a new physical count (stored once per sku, location, seq).
CREATE TRIGGER webhook_stock_oversold AFTER INSERT ON stock_oversold
BEGIN
  INSERT OR IGNORE INTO webhook_events (id, type, payload, created_at)
  SELECT 'msg_stock.oversold_' || NEW.sku || '_' || NEW.location_id || '_' || NEW.seq, 'stock.oversold',
    json_object('type', 'stock.oversold', 'timestamp', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.occurred_at / 1000.0, 'unixepoch'), 'data', json_object(
      'sku', NEW.sku, 'product_id', (SELECT product_id FROM variants WHERE sku = NEW.sku), 'location', NEW.location_id,
      'units', NEW.units, 'on_hand', NEW.on_hand, 'reserved', NEW.reserved, 'cause', NEW.cause, 'event_id', NEW.event_id, 'seq', NEW.seq)),
    CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
  WHERE EXISTS (SELECT 1 FROM webhook_endpoints e, json_each(e.events) j WHERE e.status = 'active' AND e.deleted_at IS NULL AND j.value = 'stock.oversold');
END;
