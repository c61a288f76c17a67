-- Search and facets (issue 3). Hand-written: FTS5 and triggers are beyond drizzle-kit.
--
-- products_fts: external-content FTS5 index over products(title, brand, description, attributes), keyed by
-- products.rowid, kept in sync by triggers. Prefix indexes for 2- and 3-character prefixes make `term*` cheap.
--
-- facet_counts: materialised counts over ACTIVE products, maintained by triggers on products and
-- product_attributes, so the no-query facets are a primary-key range read instead of a scan:
--   brand/<brand>, category/<leaf category id>, attr:<name>/<value>, price:<CUR>/<bucket of min price>.
-- Price buckets must match PRICE_BUCKETS in src/catalog/facets.ts.
--
-- products_price_<cur>_idx: expression indexes so price filters and price sorts on products.min_prices
-- (JSON) are index range scans; a new currency needs one more index.

CREATE VIRTUAL TABLE products_fts USING fts5(
  title, brand, description, attributes,
  content='products', content_rowid='rowid',
  tokenize='unicode61 remove_diacritics 2',
  prefix='2 3'
);
--> statement-breakpoint
INSERT INTO products_fts(products_fts) VALUES ('rebuild');
--> statement-breakpoint
CREATE TRIGGER products_fts_ai AFTER INSERT ON products BEGIN
  INSERT INTO products_fts(rowid, title, brand, description, attributes)
  VALUES (new.rowid, new.title, new.brand, new.description, new.attributes);
END;
--> statement-breakpoint
CREATE TRIGGER products_fts_ad AFTER DELETE ON products BEGIN
  INSERT INTO products_fts(products_fts, rowid, title, brand, description, attributes)
  VALUES ('delete', old.rowid, old.title, old.brand, old.description, old.attributes);
END;
--> statement-breakpoint
CREATE TRIGGER products_fts_au AFTER UPDATE OF title, brand, description, attributes ON products BEGIN
  INSERT INTO products_fts(products_fts, rowid, title, brand, description, attributes)
  VALUES ('delete', old.rowid, old.title, old.brand, old.description, old.attributes);
  INSERT INTO products_fts(rowid, title, brand, description, attributes)
  VALUES (new.rowid, new.title, new.brand, new.description, new.attributes);
END;
--> statement-breakpoint
CREATE TRIGGER products_facets_ai AFTER INSERT ON products WHEN new.status = 'active' BEGIN
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
CREATE TRIGGER products_facets_ad AFTER DELETE ON products WHEN old.status = 'active' BEGIN
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
-- An update is "remove the old row's contribution, add the new row's": two triggers, so that a status change
-- in either direction, or a brand/category/price change of an active product, keeps every count exact.
CREATE TRIGGER products_facets_au_old AFTER UPDATE OF status, brand, category_id, min_prices ON products WHEN old.status = 'active' BEGIN
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
CREATE TRIGGER products_facets_au_new AFTER UPDATE OF status, brand, category_id, min_prices ON products WHEN new.status = 'active' BEGIN
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
CREATE TRIGGER product_attributes_facets_ai AFTER INSERT ON product_attributes
  WHEN EXISTS (SELECT 1 FROM products WHERE id = new.product_id AND status = 'active') BEGIN
  INSERT INTO facet_counts(facet, value, count) VALUES ('attr:' || new.name, new.value, 1)
    ON CONFLICT(facet, value) DO UPDATE SET count = count + 1;
END;
--> statement-breakpoint
CREATE TRIGGER product_attributes_facets_ad AFTER DELETE ON product_attributes
  WHEN EXISTS (SELECT 1 FROM products WHERE id = old.product_id AND status = 'active') BEGIN
  UPDATE facet_counts SET count = count - 1 WHERE facet = 'attr:' || old.name AND value = old.value;
END;
--> statement-breakpoint
CREATE TRIGGER product_attributes_facets_au AFTER UPDATE ON product_attributes BEGIN
  UPDATE facet_counts SET count = count - 1 WHERE facet = 'attr:' || old.name AND value = old.value
    AND EXISTS (SELECT 1 FROM products WHERE id = old.product_id AND status = 'active');
  INSERT INTO facet_counts(facet, value, count)
    SELECT 'attr:' || new.name, new.value, 1 WHERE EXISTS (SELECT 1 FROM products WHERE id = new.product_id AND status = 'active')
    ON CONFLICT(facet, value) DO UPDATE SET count = count + 1;
END;
--> statement-breakpoint
-- Databases seeded before this migration: count what is already there.
DELETE FROM facet_counts;
--> statement-breakpoint
INSERT INTO facet_counts(facet, value, count)
  SELECT 'brand', brand, count(*) FROM products WHERE status = 'active' GROUP BY brand;
--> statement-breakpoint
INSERT INTO facet_counts(facet, value, count)
  SELECT 'category', category_id, count(*) FROM products WHERE status = 'active' GROUP BY category_id;
--> statement-breakpoint
INSERT INTO facet_counts(facet, value, count)
  SELECT 'attr:' || a.name, a.value, count(*) FROM product_attributes a JOIN products p ON p.id = a.product_id
  WHERE p.status = 'active' GROUP BY a.name, a.value;
--> statement-breakpoint
INSERT INTO facet_counts(facet, value, count)
  SELECT 'price:' || j.key,
    CASE WHEN j.value < 2500 THEN '0-2500' WHEN j.value < 5000 THEN '2500-5000' WHEN j.value < 10000 THEN '5000-10000'
         WHEN j.value < 25000 THEN '10000-25000' WHEN j.value < 50000 THEN '25000-50000' ELSE '50000+' END AS bucket,
    count(*)
  FROM products p, json_each(p.min_prices) j WHERE p.status = 'active' AND j.type = 'integer' GROUP BY 1, 2;
--> statement-breakpoint
CREATE INDEX products_price_usd_idx ON products(json_extract(min_prices, '$.USD'), id);
--> statement-breakpoint
CREATE INDEX products_price_eur_idx ON products(json_extract(min_prices, '$.EUR'), id);
--> statement-breakpoint
CREATE INDEX products_price_gbp_idx ON products(json_extract(min_prices, '$.GBP'), id);
