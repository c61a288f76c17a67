CREATE TABLE `recommendation_dirty` (
	`product_id` text PRIMARY KEY NOT NULL,
	`marked_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `recommendation_refs` (
	`item_id` text NOT NULL,
	`owner` text NOT NULL,
	PRIMARY KEY(`item_id`, `owner`)
);
--> statement-breakpoint
CREATE INDEX `recommendation_refs_owner_idx` ON `recommendation_refs` (`owner`);--> statement-breakpoint
ALTER TABLE `products` ADD `price_badges` text DEFAULT '{}' NOT NULL;--> statement-breakpoint
CREATE INDEX `promotion_targets_product_idx` ON `promotion_targets` (`product_id`,`promotion_id`);--> statement-breakpoint
CREATE INDEX `promotions_ends_idx` ON `promotions` (`ends_at`);