-- Substitutes rank a category's sellable products by closeness of price. Without these, every substitutes
-- miss read and sorted the whole category (6,700 rows at 100k products, 22 ms); with them it seeks the
-- price band on either side of the product (about 120 index entries, 4 ms). Partial: only rows a
-- substitute can come from. Expression per currency, like products_price_<cur>_idx, so it must match
-- the query's json_extract text exactly (src/recommendations/substitutes.ts).
CREATE INDEX products_band_usd_idx ON products(category_id, json_extract(min_prices, '$.USD'), id) WHERE status = 'active' AND in_stock = 1;
--> statement-breakpoint
CREATE INDEX products_band_eur_idx ON products(category_id, json_extract(min_prices, '$.EUR'), id) WHERE status = 'active' AND in_stock = 1;
--> statement-breakpoint
CREATE INDEX products_band_gbp_idx ON products(category_id, json_extract(min_prices, '$.GBP'), id) WHERE status = 'active' AND in_stock = 1;
