-- Imports publish by one switch (docs/storage.md, "Imports at scale").
-- A product an unfinished import created carries the import's id in `pending_import`; readers show it only once
-- the import is listed in this database's `import_visibility` (the switch, then the roll-forward of each partition).
ALTER TABLE `products` ADD `pending_import` text;
--> statement-breakpoint
CREATE INDEX `products_pending_idx` ON `products` (`pending_import`) WHERE `pending_import` IS NOT NULL;
--> statement-breakpoint
CREATE TABLE `import_visibility` (
	`import_id` text PRIMARY KEY NOT NULL,
	`published_at` integer NOT NULL
);
--> statement-breakpoint
-- Staging rows live in the partition of their product. `is_new`: the product did not exist when the row was
-- staged, so it was written to the live tables ahead of the switch (pending); 0: an existing product, changed by
-- the switch itself. `part`: the upload (of a multi-part import) the line came from.
ALTER TABLE `import_rows` ADD `is_new` integer DEFAULT 0 NOT NULL;
--> statement-breakpoint
ALTER TABLE `import_rows` ADD `part` integer DEFAULT 1 NOT NULL;
--> statement-breakpoint
CREATE UNIQUE INDEX `import_rows_product_uq` ON `import_rows` (`import_id`, `product_id`);
--> statement-breakpoint
-- Multi-part imports: parts received, categories touched (their events are written when the import completes),
-- when the switch happened, and how far the finalization got (JSON, per partition).
ALTER TABLE `imports` ADD `parts` integer DEFAULT 0 NOT NULL;
--> statement-breakpoint
-- One row per part received (directory only): a part number is taken once; its counts add up to the import's.
CREATE TABLE `import_parts` (
	`import_id` text NOT NULL,
	`part` integer NOT NULL,
	`status` text NOT NULL,
	`total_lines` integer DEFAULT 0 NOT NULL,
	`accepted` integer DEFAULT 0 NOT NULL,
	`rejected` integer DEFAULT 0 NOT NULL,
	`received_at` integer NOT NULL,
	PRIMARY KEY(`import_id`, `part`)
);
--> statement-breakpoint
ALTER TABLE `imports` ADD `categories` text DEFAULT '[]' NOT NULL;
--> statement-breakpoint
ALTER TABLE `imports` ADD `published_at` integer;
--> statement-breakpoint
ALTER TABLE `imports` ADD `updated_at` integer DEFAULT 0 NOT NULL;
--> statement-breakpoint
-- Facet counts count a product once it is visible to everyone: a pending product is counted when its import is
-- finalized (pending_import set back to NULL), not when it is written ahead of the switch.
--> statement-breakpoint
DROP TRIGGER IF EXISTS products_facets_ai;
--> statement-breakpoint
CREATE TRIGGER products_facets_ai AFTER INSERT ON products WHEN new.status = 'active' AND new.pending_import IS NULL BEGIN
  INSERT INTO facet_counts(facet, value, count) VALUES ('brand', new.brand, 1)
    ON CONFLICT(facet, value) DO UPDATE SET count = count + 1;
  INSERT INTO facet_counts(facet, value, count) VALUES ('category', new.category_id, 1)
    ON CONFLICT(facet, value) DO UPDATE SET count = count + 1;
  INSERT INTO facet_counts(facet, value, count)
    SELECT 'attr:' || name, value, 1 FROM product_attributes WHERE product_id = new.id
    ON CONFLICT(facet, value) DO UPDATE SET count = count + 1;
  INSERT INTO facet_counts(facet, value, count)
    SELECT 'price:' || key,
      CASE WHEN value < 2500 THEN '0-2500' WHEN value < 5000 THEN '2500-5000' WHEN value < 10000 THEN '5000-10000'
           WHEN value < 25000 THEN '10000-25000' WHEN value < 50000 THEN '25000-50000' ELSE '50000+' END, 1
    FROM json_each(new.min_prices) WHERE type = 'integer'
    ON CONFLICT(facet, value) DO UPDATE SET count = count + 1;
END;
--> statement-breakpoint
DROP TRIGGER IF EXISTS products_facets_ad;
--> statement-breakpoint
CREATE TRIGGER products_facets_ad AFTER DELETE ON products WHEN old.status = 'active' AND old.pending_import IS NULL BEGIN
  UPDATE facet_counts SET count = count - 1 WHERE facet = 'brand' AND value = old.brand;
  UPDATE facet_counts SET count = count - 1 WHERE facet = 'category' AND value = old.category_id;
  UPDATE facet_counts SET count = count - 1
    WHERE (facet, value) IN (SELECT 'attr:' || name, value FROM product_attributes WHERE product_id = old.id);
  UPDATE facet_counts SET count = count - 1
    WHERE (facet, value) IN (
      SELECT 'price:' || key,
        CASE WHEN value < 2500 THEN '0-2500' WHEN value < 5000 THEN '2500-5000' WHEN value < 10000 THEN '5000-10000'
             WHEN value < 25000 THEN '10000-25000' WHEN value < 50000 THEN '25000-50000' ELSE '50000+' END
      FROM json_each(old.min_prices) WHERE type = 'integer');
END;
--> statement-breakpoint
DROP TRIGGER IF EXISTS products_facets_au_old;
--> statement-breakpoint
CREATE TRIGGER products_facets_au_old AFTER UPDATE OF status, brand, category_id, min_prices, pending_import ON products WHEN old.status = 'active' AND old.pending_import IS NULL BEGIN
  UPDATE facet_counts SET count = count - 1 WHERE facet = 'brand' AND value = old.brand;
  UPDATE facet_counts SET count = count - 1 WHERE facet = 'category' AND value = old.category_id;
  UPDATE facet_counts SET count = count - 1
    WHERE (facet, value) IN (SELECT 'attr:' || name, value FROM product_attributes WHERE product_id = old.id);
  UPDATE facet_counts SET count = count - 1
    WHERE (facet, value) IN (
      SELECT 'price:' || key,
        CASE WHEN value < 2500 THEN '0-2500' WHEN value < 5000 THEN '2500-5000' WHEN value < 10000 THEN '5000-10000'
             WHEN value < 25000 THEN '10000-25000' WHEN value < 50000 THEN '25000-50000' ELSE '50000+' END
      FROM json_each(old.min_prices) WHERE type = 'integer');
END;
--> statement-breakpoint
DROP TRIGGER IF EXISTS products_facets_au_new;
--> statement-breakpoint
CREATE TRIGGER products_facets_au_new AFTER UPDATE OF status, brand, category_id, min_prices, pending_import ON products WHEN new.status = 'active' AND new.pending_import IS NULL BEGIN
  INSERT INTO facet_counts(facet, value, count) VALUES ('brand', new.brand, 1)
    ON CONFLICT(facet, value) DO UPDATE SET count = count + 1;
  INSERT INTO facet_counts(facet, value, count) VALUES ('category', new.category_id, 1)
    ON CONFLICT(facet, value) DO UPDATE SET count = count + 1;
  INSERT INTO facet_counts(facet, value, count)
    SELECT 'attr:' || name, value, 1 FROM product_attributes WHERE product_id = new.id
    ON CONFLICT(facet, value) DO UPDATE SET count = count + 1;
  INSERT INTO facet_counts(facet, value, count)
    SELECT 'price:' || key,
      CASE WHEN value < 2500 THEN '0-2500' WHEN value < 5000 THEN '2500-5000' WHEN value < 10000 THEN '5000-10000'
           WHEN value < 25000 THEN '10000-25000' WHEN value < 50000 THEN '25000-50000' ELSE '50000+' END, 1
    FROM json_each(new.min_prices) WHERE type = 'integer'
    ON CONFLICT(facet, value) DO UPDATE SET count = count + 1;
END;
--> statement-breakpoint
DROP TRIGGER IF EXISTS product_attributes_facets_ai;
--> statement-breakpoint
CREATE TRIGGER product_attributes_facets_ai AFTER INSERT ON product_attributes
  WHEN EXISTS (SELECT 1 FROM products WHERE id = new.product_id AND status = 'active' AND pending_import IS NULL) BEGIN
  INSERT INTO facet_counts(facet, value, count) VALUES ('attr:' || new.name, new.value, 1)
    ON CONFLICT(facet, value) DO UPDATE SET count = count + 1;
END;
--> statement-breakpoint
DROP TRIGGER IF EXISTS product_attributes_facets_ad;
--> statement-breakpoint
CREATE TRIGGER product_attributes_facets_ad AFTER DELETE ON product_attributes
  WHEN EXISTS (SELECT 1 FROM products WHERE id = old.product_id AND status = 'active' AND pending_import IS NULL) BEGIN
  UPDATE facet_counts SET count = count - 1 WHERE facet = 'attr:' || old.name AND value = old.value;
END;
--> statement-breakpoint
DROP TRIGGER IF EXISTS product_attributes_facets_au;
--> statement-breakpoint
CREATE TRIGGER product_attributes_facets_au AFTER UPDATE ON product_attributes BEGIN
  UPDATE facet_counts SET count = count - 1 WHERE facet = 'attr:' || old.name AND value = old.value
    AND EXISTS (SELECT 1 FROM products WHERE id = old.product_id AND status = 'active' AND pending_import IS NULL);
  INSERT INTO facet_counts(facet, value, count)
    SELECT 'attr:' || new.name, new.value, 1 WHERE EXISTS (SELECT 1 FROM products WHERE id = new.product_id AND status = 'active' AND pending_import IS NULL)
    ON CONFLICT(facet, value) DO UPDATE SET count = count + 1;
END;
