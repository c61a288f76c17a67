-- SKU ownership across catalog partitions (directory only): a SKU is unique per database by the variants primary
-- key, and across partitions by this table. Claimed in the directory before a product's partition is written.
CREATE TABLE `sku_owners` (
	`sku` text PRIMARY KEY NOT NULL,
	`product_id` text NOT NULL,
	`claimed_at` integer NOT NULL,
	`import_id` text
);
--> statement-breakpoint
-- Claims an import made, released if it is aborted.
CREATE INDEX `sku_owners_import_idx` ON `sku_owners` (`import_id`) WHERE `import_id` IS NOT NULL;
