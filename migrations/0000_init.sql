CREATE TABLE `affiliates` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`tracking_id` text NOT NULL,
	`allowed_origins` text DEFAULT '[]' NOT NULL,
	`scope` text DEFAULT '{}' NOT NULL,
	`campaign` text,
	`status` text DEFAULT 'active' NOT NULL,
	`created_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`updated_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`version` integer DEFAULT 1 NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `affiliates_tracking_uq` ON `affiliates` (`tracking_id`);--> statement-breakpoint
CREATE TABLE `api_keys` (
	`id` text PRIMARY KEY NOT NULL,
	`kind` text NOT NULL,
	`affiliate_id` text,
	`key_hash` text NOT NULL,
	`prefix` text NOT NULL,
	`label` text,
	`created_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`expires_at` integer,
	`revoked_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_keys_hash_uq` ON `api_keys` (`key_hash`);--> statement-breakpoint
CREATE INDEX `api_keys_affiliate_idx` ON `api_keys` (`affiliate_id`);--> statement-breakpoint
CREATE TABLE `availability` (
	`sku` text NOT NULL,
	`location_id` text NOT NULL,
	`on_hand` integer NOT NULL,
	`reserved` integer DEFAULT 0 NOT NULL,
	`available` integer NOT NULL,
	`status` text NOT NULL,
	`seq` integer DEFAULT 0 NOT NULL,
	`updated_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	PRIMARY KEY(`sku`, `location_id`)
);
--> statement-breakpoint
CREATE TABLE `categories` (
	`id` text PRIMARY KEY NOT NULL,
	`slug` text NOT NULL,
	`name` text NOT NULL,
	`parent_id` text,
	`path` text NOT NULL,
	`depth` integer DEFAULT 0 NOT NULL,
	`position` integer DEFAULT 0 NOT NULL,
	`version` integer DEFAULT 1 NOT NULL,
	`updated_at` integer DEFAULT (unixepoch() * 1000) NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `categories_slug_uq` ON `categories` (`slug`);--> statement-breakpoint
CREATE INDEX `categories_path_idx` ON `categories` (`path`);--> statement-breakpoint
CREATE TABLE `category_translations` (
	`category_id` text NOT NULL,
	`locale` text NOT NULL,
	`name` text NOT NULL,
	`version` integer DEFAULT 1 NOT NULL,
	PRIMARY KEY(`category_id`, `locale`)
);
--> statement-breakpoint
CREATE TABLE `clicks` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`affiliate_id` text NOT NULL,
	`product_id` text NOT NULL,
	`at` integer NOT NULL,
	`country` text
);
--> statement-breakpoint
CREATE INDEX `clicks_affiliate_idx` ON `clicks` (`affiliate_id`,`at`);--> statement-breakpoint
CREATE TABLE `co_purchases` (
	`product_a` text NOT NULL,
	`product_b` text NOT NULL,
	`count` integer DEFAULT 0 NOT NULL,
	`updated_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	PRIMARY KEY(`product_a`, `product_b`)
);
--> statement-breakpoint
CREATE INDEX `co_purchases_b_idx` ON `co_purchases` (`product_b`);--> statement-breakpoint
CREATE TABLE `counted_orders` (
	`reservation_id` text PRIMARY KEY NOT NULL,
	`counted_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `dead_letters` (
	`id` text PRIMARY KEY NOT NULL,
	`body` text NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`received_at` integer NOT NULL,
	`replayed_at` integer
);
--> statement-breakpoint
CREATE INDEX `dead_letters_pending_idx` ON `dead_letters` (`replayed_at`,`received_at`);--> statement-breakpoint
CREATE TABLE `facet_counts` (
	`facet` text NOT NULL,
	`value` text NOT NULL,
	`count` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`facet`, `value`)
);
--> statement-breakpoint
CREATE TABLE `import_rows` (
	`import_id` text NOT NULL,
	`line` integer NOT NULL,
	`product_id` text NOT NULL,
	`document` text NOT NULL,
	PRIMARY KEY(`import_id`, `line`)
);
--> statement-breakpoint
CREATE TABLE `imports` (
	`id` text PRIMARY KEY NOT NULL,
	`content_hash` text NOT NULL,
	`format` text NOT NULL,
	`status` text NOT NULL,
	`total_lines` integer DEFAULT 0 NOT NULL,
	`accepted` integer DEFAULT 0 NOT NULL,
	`rejected` integer DEFAULT 0 NOT NULL,
	`errors` text DEFAULT '[]' NOT NULL,
	`created_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`finished_at` integer
);
--> statement-breakpoint
CREATE TABLE `jobs` (
	`id` text PRIMARY KEY NOT NULL,
	`kind` text NOT NULL,
	`status` text NOT NULL,
	`cursor` text,
	`processed` integer DEFAULT 0 NOT NULL,
	`total` integer DEFAULT 0 NOT NULL,
	`started_at` integer NOT NULL,
	`finished_at` integer,
	`error` text
);
--> statement-breakpoint
CREATE TABLE `lag_samples` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`event_type` text NOT NULL,
	`lag_ms` integer NOT NULL,
	`recorded_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `lag_samples_recorded_idx` ON `lag_samples` (`recorded_at`);--> statement-breakpoint
CREATE TABLE `meta` (
	`key` text PRIMARY KEY NOT NULL,
	`value` text NOT NULL,
	`updated_at` integer DEFAULT (unixepoch() * 1000) NOT NULL
);
--> statement-breakpoint
CREATE TABLE `outbox` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`type` text NOT NULL,
	`entity_id` text NOT NULL,
	`version` integer NOT NULL,
	`occurred_at` integer NOT NULL,
	`payload` text,
	`sent_at` integer,
	`attempts` integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE INDEX `outbox_unsent_idx` ON `outbox` (`sent_at`,`id`);--> statement-breakpoint
CREATE TABLE `prices` (
	`sku` text NOT NULL,
	`currency` text NOT NULL,
	`amount` integer NOT NULL,
	`updated_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`version` integer DEFAULT 1 NOT NULL,
	PRIMARY KEY(`sku`, `currency`)
);
--> statement-breakpoint
CREATE INDEX `prices_currency_amount_idx` ON `prices` (`currency`,`amount`);--> statement-breakpoint
CREATE TABLE `product_attributes` (
	`product_id` text NOT NULL,
	`name` text NOT NULL,
	`value` text NOT NULL,
	PRIMARY KEY(`product_id`, `name`)
);
--> statement-breakpoint
CREATE INDEX `product_attributes_name_value_idx` ON `product_attributes` (`name`,`value`,`product_id`);--> statement-breakpoint
CREATE TABLE `product_translations` (
	`product_id` text NOT NULL,
	`locale` text NOT NULL,
	`title` text NOT NULL,
	`description` text DEFAULT '' NOT NULL,
	`version` integer DEFAULT 1 NOT NULL,
	PRIMARY KEY(`product_id`, `locale`)
);
--> statement-breakpoint
CREATE TABLE `products` (
	`id` text PRIMARY KEY NOT NULL,
	`slug` text NOT NULL,
	`title` text NOT NULL,
	`description` text DEFAULT '' NOT NULL,
	`brand` text NOT NULL,
	`category_id` text NOT NULL,
	`status` text DEFAULT 'active' NOT NULL,
	`attributes` text DEFAULT '{}' NOT NULL,
	`images` text DEFAULT '[]' NOT NULL,
	`markets` text DEFAULT '[]' NOT NULL,
	`condition` text DEFAULT 'new' NOT NULL,
	`in_stock` integer DEFAULT 0 NOT NULL,
	`min_prices` text DEFAULT '{}' NOT NULL,
	`change_seq` integer DEFAULT 0 NOT NULL,
	`import_id` text,
	`created_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`updated_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`version` integer DEFAULT 1 NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `products_slug_uq` ON `products` (`slug`);--> statement-breakpoint
CREATE INDEX `products_category_idx` ON `products` (`category_id`,`id`);--> statement-breakpoint
CREATE INDEX `products_brand_idx` ON `products` (`brand`,`id`);--> statement-breakpoint
CREATE INDEX `products_status_idx` ON `products` (`status`,`id`);--> statement-breakpoint
CREATE INDEX `products_created_idx` ON `products` (`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `products_change_seq_idx` ON `products` (`change_seq`);--> statement-breakpoint
CREATE TABLE `promotion_targets` (
	`promotion_id` text NOT NULL,
	`sku` text NOT NULL,
	`product_id` text NOT NULL,
	PRIMARY KEY(`promotion_id`, `sku`)
);
--> statement-breakpoint
CREATE INDEX `promotion_targets_sku_idx` ON `promotion_targets` (`sku`);--> statement-breakpoint
CREATE TABLE `promotions` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`starts_at` integer NOT NULL,
	`ends_at` integer,
	`target_type` text NOT NULL,
	`target_values` text NOT NULL,
	`value_type` text NOT NULL,
	`value` text NOT NULL,
	`priority` integer DEFAULT 0 NOT NULL,
	`currencies` text DEFAULT '[]' NOT NULL,
	`markets` text DEFAULT '[]' NOT NULL,
	`deleted_at` integer,
	`created_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`updated_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`version` integer DEFAULT 1 NOT NULL
);
--> statement-breakpoint
CREATE INDEX `promotions_window_idx` ON `promotions` (`starts_at`,`ends_at`);--> statement-breakpoint
CREATE TABLE `recommendation_pins` (
	`product_id` text PRIMARY KEY NOT NULL,
	`complementary` text DEFAULT '[]' NOT NULL,
	`related` text DEFAULT '[]' NOT NULL,
	`exclude` text DEFAULT '[]' NOT NULL,
	`version` integer DEFAULT 1 NOT NULL,
	`updated_at` integer DEFAULT (unixepoch() * 1000) NOT NULL
);
--> statement-breakpoint
CREATE TABLE `recommendations` (
	`product_id` text NOT NULL,
	`intent` text NOT NULL,
	`items` text NOT NULL,
	`version` integer DEFAULT 1 NOT NULL,
	`computed_at` integer NOT NULL,
	PRIMARY KEY(`product_id`, `intent`)
);
--> statement-breakpoint
CREATE TABLE `sales_daily` (
	`product_id` text NOT NULL,
	`currency` text NOT NULL,
	`day` integer NOT NULL,
	`units` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`product_id`, `currency`, `day`)
);
--> statement-breakpoint
CREATE INDEX `sales_daily_day_idx` ON `sales_daily` (`currency`,`day`);--> statement-breakpoint
CREATE TABLE `stock_baseline` (
	`sku` text NOT NULL,
	`location_id` text NOT NULL,
	`on_hand` integer NOT NULL,
	`safety_stock` integer DEFAULT 0 NOT NULL,
	`low_stock_threshold` integer DEFAULT 5 NOT NULL,
	`version` integer DEFAULT 1 NOT NULL,
	PRIMARY KEY(`sku`, `location_id`)
);
--> statement-breakpoint
CREATE TABLE `stock_locations` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`region` text NOT NULL,
	`country` text NOT NULL,
	`priority` integer DEFAULT 0 NOT NULL,
	`active` integer DEFAULT 1 NOT NULL,
	`version` integer DEFAULT 1 NOT NULL
);
--> statement-breakpoint
CREATE TABLE `variants` (
	`sku` text PRIMARY KEY NOT NULL,
	`product_id` text NOT NULL,
	`title` text DEFAULT '' NOT NULL,
	`options` text DEFAULT '{}' NOT NULL,
	`gtin` text,
	`mpn` text,
	`position` integer DEFAULT 0 NOT NULL,
	`status` text DEFAULT 'active' NOT NULL,
	`updated_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`version` integer DEFAULT 1 NOT NULL
);
--> statement-breakpoint
CREATE INDEX `variants_product_idx` ON `variants` (`product_id`,`position`);