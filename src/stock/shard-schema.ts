/**
 * SQLite schema of a StockShard Durable Object (documented in docs/storage.md). Every statement is idempotent,
 * so it runs in the constructor on each start; add new tables or indexes here, never alter old ones in place.
 */
export const SHARD_DDL = `
CREATE TABLE IF NOT EXISTS skus (
  sku TEXT PRIMARY KEY,
  seq INTEGER NOT NULL DEFAULT 0,
  adopted_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stock (
  sku TEXT NOT NULL,
  location TEXT NOT NULL,
  on_hand INTEGER NOT NULL DEFAULT 0,
  reserved INTEGER NOT NULL DEFAULT 0,
  safety_stock INTEGER NOT NULL DEFAULT 0,
  low_stock INTEGER NOT NULL DEFAULT 5,
  backorder_limit INTEGER,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (sku, location)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holds (
  reservation_id TEXT NOT NULL,
  sku TEXT NOT NULL,
  location TEXT NOT NULL,
  quantity INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (reservation_id, sku, location)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS holds_live_idx ON holds (state, expires_at);
CREATE TABLE IF NOT EXISTS hold_owners (
  reservation_id TEXT PRIMARY KEY,
  holder TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hold_owners_holder_idx ON hold_owners (holder);
CREATE TABLE IF NOT EXISTS ledger (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  sku TEXT NOT NULL,
  location TEXT NOT NULL,
  seq INTEGER NOT NULL,
  kind TEXT NOT NULL,
  delta_on_hand INTEGER NOT NULL,
  delta_reserved INTEGER NOT NULL,
  on_hand_after INTEGER NOT NULL,
  reserved_after INTEGER NOT NULL,
  reason TEXT,
  reservation_id TEXT,
  actor TEXT,
  event_id TEXT,
  at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_sku_idx ON ledger (sku, id);
CREATE TABLE IF NOT EXISTS adjustments (
  event_id TEXT PRIMARY KEY,
  outcome TEXT NOT NULL,
  applied_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  dedupe_key TEXT UNIQUE,
  body TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
  id TEXT PRIMARY KEY,
  scope_key TEXT NOT NULL UNIQUE,
  owner TEXT NOT NULL,
  body_hash TEXT NOT NULL,
  status TEXT NOT NULL,
  items TEXT NOT NULL DEFAULT '[]',
  currency TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  lease_until INTEGER NOT NULL,
  outcome TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  committed_at INTEGER,
  released_at INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hot_home (
  sku TEXT PRIMARY KEY,
  sub_shards INTEGER NOT NULL,
  max_sub_shards INTEGER NOT NULL,
  state TEXT NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hot_parts (
  sku TEXT NOT NULL,
  shard TEXT NOT NULL,
  location TEXT NOT NULL,
  on_hand INTEGER NOT NULL,
  reserved INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (sku, shard, location)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hot_transit (
  sku TEXT NOT NULL,
  transfer_id TEXT NOT NULL,
  shard TEXT NOT NULL,
  items TEXT NOT NULL,
  PRIMARY KEY (sku, transfer_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS escrow_sends (
  transfer_id TEXT PRIMARY KEY,
  sku TEXT NOT NULL,
  target TEXT NOT NULL,
  target_role TEXT NOT NULL,
  items TEXT NOT NULL,
  reason TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  settled_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS escrow_sends_pending_idx ON escrow_sends (state, created_at);
CREATE TABLE IF NOT EXISTS escrow_sub (
  sku TEXT PRIMARY KEY,
  shard TEXT NOT NULL,
  home TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hot_frozen (
  sku TEXT NOT NULL,
  location TEXT NOT NULL,
  PRIMARY KEY (sku, location)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS escrow_frozen (
  sku TEXT NOT NULL,
  location TEXT NOT NULL,
  PRIMARY KEY (sku, location)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservation_sagas (
  id TEXT PRIMARY KEY,
  attempt INTEGER NOT NULL,
  commit_started_at INTEGER,
  commit_attempts INTEGER NOT NULL DEFAULT 0,
  next_reconcile_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reservation_sagas_reconcile_idx ON reservation_sagas (next_reconcile_at);
CREATE TABLE IF NOT EXISTS hold_attempts (
  reservation_id TEXT PRIMARY KEY,
  attempt INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shopper_holds (
  reservation_id TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  units INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS shopper_holds_holder_idx ON shopper_holds (holder, expires_at);
CREATE INDEX IF NOT EXISTS shopper_holds_expiry_idx ON shopper_holds (expires_at);
CREATE TABLE IF NOT EXISTS counters (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
`;
