-- Shortfalls reported by stock shards (`stock.oversold` events): a recount or adjustment came in below the units
-- already held. One row per (sku, location, shard seq), so a redelivered event is stored once. Read by /admin/metrics.
CREATE TABLE `stock_oversold` (
	`sku` text NOT NULL,
	`location_id` text NOT NULL,
	`seq` integer NOT NULL,
	`units` integer NOT NULL,
	`on_hand` integer NOT NULL,
	`reserved` integer NOT NULL,
	`cause` text NOT NULL,
	`event_id` text,
	`occurred_at` integer NOT NULL,
	PRIMARY KEY(`sku`, `location_id`, `seq`)
);
--> statement-breakpoint
CREATE INDEX `stock_oversold_occurred_idx` ON `stock_oversold` (`occurred_at`);
