-- Listing indexes: every browse page (no query) is a UNION ALL of index range reads, one per
-- (driver value, in_stock) pair, each stopping after `limit` + 1 rows, merged by the outer ORDER BY
-- (src/catalog/listing.ts). The driver is the category's leaf ids, else the brands, else none; in_stock is
-- in every index so that "in stock only" is a range and not a filter tested row by row (a category that is
-- mostly sold out would otherwise be read whole). Partial on active products: archived rows are never read.
-- Price columns are expressions per currency, like products_price_<cur>_idx: the query must use the same
-- json_extract text. Sizes and the trade-off against the 10 GB database limit: docs/storage.md.
CREATE INDEX products_list_cat_new_idx ON products(category_id, in_stock, created_at, id) WHERE status = 'active';
--> statement-breakpoint
CREATE INDEX products_list_cat_usd_idx ON products(category_id, in_stock, json_extract(min_prices, '$.USD'), id) WHERE status = 'active';
--> statement-breakpoint
CREATE INDEX products_list_cat_eur_idx ON products(category_id, in_stock, json_extract(min_prices, '$.EUR'), id) WHERE status = 'active';
--> statement-breakpoint
CREATE INDEX products_list_cat_gbp_idx ON products(category_id, in_stock, json_extract(min_prices, '$.GBP'), id) WHERE status = 'active';
--> statement-breakpoint
CREATE INDEX products_list_brand_new_idx ON products(brand, in_stock, created_at, id) WHERE status = 'active';
--> statement-breakpoint
CREATE INDEX products_list_brand_usd_idx ON products(brand, in_stock, json_extract(min_prices, '$.USD'), id) WHERE status = 'active';
--> statement-breakpoint
CREATE INDEX products_list_brand_eur_idx ON products(brand, in_stock, json_extract(min_prices, '$.EUR'), id) WHERE status = 'active';
--> statement-breakpoint
CREATE INDEX products_list_brand_gbp_idx ON products(brand, in_stock, json_extract(min_prices, '$.GBP'), id) WHERE status = 'active';
--> statement-breakpoint
CREATE INDEX products_list_new_idx ON products(in_stock, created_at, id) WHERE status = 'active';
--> statement-breakpoint
CREATE INDEX products_list_usd_idx ON products(in_stock, json_extract(min_prices, '$.USD'), id) WHERE status = 'active';
--> statement-breakpoint
CREATE INDEX products_list_eur_idx ON products(in_stock, json_extract(min_prices, '$.EUR'), id) WHERE status = 'active';
--> statement-breakpoint
CREATE INDEX products_list_gbp_idx ON products(in_stock, json_extract(min_prices, '$.GBP'), id) WHERE status = 'active';
