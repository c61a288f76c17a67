CREATE TABLE `hot_skus` (
	`sku` text PRIMARY KEY NOT NULL,
	`sub_shards` integer NOT NULL,
	`state` text NOT NULL,
	`transfer_id` text NOT NULL,
	`generation` integer DEFAULT 0 NOT NULL,
	`updated_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`version` integer DEFAULT 1 NOT NULL
);
