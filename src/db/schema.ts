/**
 * D1 schema (origin tier). Every mutable row carries `version`, bumped on each write, so that
 * projections downstream (KV, Cache API, feeds) can refuse to let an older version overwrite a newer one.
 * Money is always integer minor units. Timestamps are epoch milliseconds unless named `*_at` text.
 * Hand-written SQL (FTS5, triggers) lives in custom migrations; see docs/storage.md.
 */
import { sql } from "drizzle-orm";
import {
  index,
  integer,
  primaryKey,
  sqliteTable,
  text,
  uniqueIndex,
} from "drizzle-orm/sqlite-core";

const version = () => integer("version").notNull().default(1);
const createdAt = () => integer("created_at").notNull().default(sql`(unixepoch() * 1000)`);
const updatedAt = () => integer("updated_at").notNull().default(sql`(unixepoch() * 1000)`);

export const categories = sqliteTable(
  "categories",
  {
    id: text("id").primaryKey(),
    slug: text("slug").notNull(),
    name: text("name").notNull(),
    parentId: text("parent_id"),
    /** Materialised path of ids, "/root/child/", so a subtree is one indexed prefix range. */
    path: text("path").notNull(),
    depth: integer("depth").notNull().default(0),
    position: integer("position").notNull().default(0),
    version: version(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex("categories_slug_uq").on(t.slug), index("categories_path_idx").on(t.path)],
);

export const categoryTranslations = sqliteTable(
  "category_translations",
  {
    categoryId: text("category_id").notNull(),
    locale: text("locale").notNull(),
    name: text("name").notNull(),
    version: version(),
  },
  (t) => [primaryKey({ columns: [t.categoryId, t.locale] })],
);

export const products = sqliteTable(
  "products",
  {
    id: text("id").primaryKey(),
    slug: text("slug").notNull(),
    title: text("title").notNull(),
    description: text("description").notNull().default(""),
    brand: text("brand").notNull(),
    categoryId: text("category_id").notNull(),
    /** active | draft | archived */
    status: text("status").notNull().default("active"),
    /** JSON object of attribute name -> value, mirrored row-wise in product_attributes. */
    attributes: text("attributes", { mode: "json" }).$type<Record<string, string>>().notNull().default({}),
    /** JSON array of {url, alt}. */
    images: text("images", { mode: "json" }).$type<{ url: string; alt?: string }[]>().notNull().default([]),
    /** Markets (ISO country or region codes) where the product may be sold; empty = everywhere. */
    markets: text("markets", { mode: "json" }).$type<string[]>().notNull().default([]),
    condition: text("condition").notNull().default("new"),
    /** Denormalised from the availability projection: 1 when any variant is sellable. */
    inStock: integer("in_stock").notNull().default(0),
    /** Denormalised min effective price per currency, JSON {USD: 1299}; used for price filters and sort. */
    minPrices: text("min_prices", { mode: "json" }).$type<Record<string, number>>().notNull().default({}),
    /**
     * Promotion shown with `min_prices` per currency when the cheapest variant is on promotion:
     * {USD: {compare_at, promotion: {id, name, ends_at}}}. Maintained with min_prices by src/promotions/.
     */
    priceBadges: text("price_badges", { mode: "json" })
      .$type<Record<string, { compare_at: number; promotion: { id: string; name: string; ends_at: string | null } }>>()
      .notNull()
      .default({}),
    /** Global, monotonic change sequence: the cursor behind delta feeds (`since` tokens). */
    changeSeq: integer("change_seq").notNull().default(0),
    /** Import that last wrote this row. */
    importId: text("import_id"),
    /**
     * Set while the product exists only as part of an unfinished import (written ahead of its switch): readers show
     * the row only once that import is in `import_visibility` (src/imports/visibility.ts); NULL for every other row.
     */
    pendingImport: text("pending_import"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    version: version(),
  },
  (t) => [
    uniqueIndex("products_slug_uq").on(t.slug),
    index("products_category_idx").on(t.categoryId, t.id),
    index("products_brand_idx").on(t.brand, t.id),
    index("products_status_idx").on(t.status, t.id),
    index("products_created_idx").on(t.createdAt, t.id),
    index("products_change_seq_idx").on(t.changeSeq),
    index("products_pending_idx").on(t.pendingImport).where(sql`pending_import IS NOT NULL`),
  ],
);

/** Imports published in this database: the switch writes the directory's row, the roll-forward every partition's. */
export const importVisibility = sqliteTable("import_visibility", {
  importId: text("import_id").primaryKey(),
  publishedAt: integer("published_at").notNull(),
  /** Directory only, N > 1: 1 from the switch until every partition's roll-forward has committed (migration 0022). */
  rolling: integer("rolling").notNull().default(0),
});

export const productTranslations = sqliteTable(
  "product_translations",
  {
    productId: text("product_id").notNull(),
    locale: text("locale").notNull(),
    title: text("title").notNull(),
    description: text("description").notNull().default(""),
    version: version(),
  },
  (t) => [primaryKey({ columns: [t.productId, t.locale] })],
);

/** Row-wise attributes for filtering and facet counts. */
export const productAttributes = sqliteTable(
  "product_attributes",
  {
    productId: text("product_id").notNull(),
    name: text("name").notNull(),
    value: text("value").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.productId, t.name] }),
    index("product_attributes_name_value_idx").on(t.name, t.value, t.productId),
  ],
);

export const variants = sqliteTable(
  "variants",
  {
    sku: text("sku").primaryKey(),
    productId: text("product_id").notNull(),
    title: text("title").notNull().default(""),
    /** JSON object of option name -> value, e.g. {"size":"M","color":"red"}. */
    options: text("options", { mode: "json" }).$type<Record<string, string>>().notNull().default({}),
    gtin: text("gtin"),
    mpn: text("mpn"),
    position: integer("position").notNull().default(0),
    /** active | archived */
    status: text("status").notNull().default("active"),
    updatedAt: updatedAt(),
    version: version(),
  },
  (t) => [index("variants_product_idx").on(t.productId, t.position)],
);

/** Regular prices per SKU and currency, integer minor units. Promotions never rewrite these. */
export const prices = sqliteTable(
  "prices",
  {
    sku: text("sku").notNull(),
    currency: text("currency").notNull(),
    amount: integer("amount").notNull(),
    updatedAt: updatedAt(),
    version: version(),
  },
  (t) => [primaryKey({ columns: [t.sku, t.currency] }), index("prices_currency_amount_idx").on(t.currency, t.amount)],
);

export const stockLocations = sqliteTable("stock_locations", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  /** Shopper region served first from this location, e.g. "EU", "NA", "APAC". */
  region: text("region").notNull(),
  country: text("country").notNull(),
  priority: integer("priority").notNull().default(0),
  active: integer("active").notNull().default(1),
  version: version(),
});

/**
 * Initial stock per (sku, location) as loaded by the seed or an import. The StockShard Durable Object owns
 * live counts; it adopts this row the first time it sees the pair, and never reads it again.
 */
export const stockBaseline = sqliteTable(
  "stock_baseline",
  {
    sku: text("sku").notNull(),
    locationId: text("location_id").notNull(),
    onHand: integer("on_hand").notNull(),
    safetyStock: integer("safety_stock").notNull().default(0),
    lowStockThreshold: integer("low_stock_threshold").notNull().default(5),
    version: version(),
  },
  (t) => [primaryKey({ columns: [t.sku, t.locationId] })],
);

/** Read-side projection of stock, fed by stock events; `seq` is the shard's per-SKU sequence. */
export const availability = sqliteTable(
  "availability",
  {
    sku: text("sku").notNull(),
    locationId: text("location_id").notNull(),
    onHand: integer("on_hand").notNull(),
    reserved: integer("reserved").notNull().default(0),
    available: integer("available").notNull(),
    /** in_stock | low_stock | out_of_stock */
    status: text("status").notNull(),
    seq: integer("seq").notNull().default(0),
    updatedAt: updatedAt(),
  },
  (t) => [primaryKey({ columns: [t.sku, t.locationId] }), index("availability_status_idx").on(t.status, t.available), index("availability_status_updated_idx").on(t.status, t.updatedAt)],
);

export const affiliates = sqliteTable(
  "affiliates",
  {
    id: text("id").primaryKey(),
    name: text("name").notNull(),
    trackingId: text("tracking_id").notNull(),
    allowedOrigins: text("allowed_origins", { mode: "json" }).$type<string[]>().notNull().default([]),
    /** Optional catalog scope: {categories?: string[], brands?: string[], skus?: string[]}. */
    scope: text("scope", { mode: "json" })
      .$type<{ categories?: string[]; brands?: string[]; skus?: string[] }>()
      .notNull()
      .default({}),
    campaign: text("campaign"),
    /** active | suspended */
    status: text("status").notNull().default("active"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    version: version(),
  },
  (t) => [uniqueIndex("affiliates_tracking_uq").on(t.trackingId)],
);

/** API keys of every kind; only a SHA-256 hash of the key is stored. */
export const apiKeys = sqliteTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    /** storefront | affiliate */
    kind: text("kind").notNull(),
    affiliateId: text("affiliate_id"),
    keyHash: text("key_hash").notNull(),
    /** First characters of the key, to recognise it in listings without revealing it. */
    prefix: text("prefix").notNull(),
    label: text("label"),
    createdAt: createdAt(),
    /** Set when the key is rotated out: it stays valid until then (grace period). */
    expiresAt: integer("expires_at"),
    revokedAt: integer("revoked_at"),
  },
  (t) => [uniqueIndex("api_keys_hash_uq").on(t.keyHash), index("api_keys_affiliate_idx").on(t.affiliateId)],
);

/**
 * Transactional outbox of catalog change events, written in the same D1 batch as the change.
 * A sender forwards unsent rows to the EVENTS queue; the cron re-sends whatever is left.
 */
export const outbox = sqliteTable(
  "outbox",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    type: text("type").notNull(),
    entityId: text("entity_id").notNull(),
    version: integer("version").notNull(),
    occurredAt: integer("occurred_at").notNull(),
    payload: text("payload", { mode: "json" }).$type<Record<string, unknown>>(),
    sentAt: integer("sent_at"),
    attempts: integer("attempts").notNull().default(0),
  },
  (t) => [index("outbox_unsent_idx").on(t.sentAt, t.id)],
);

/** Messages that exhausted their retries, drained from the dead-letter queue for listing and replay. */
export const deadLetters = sqliteTable(
  "dead_letters",
  {
    id: text("id").primaryKey(),
    body: text("body", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    attempts: integer("attempts").notNull().default(0),
    receivedAt: integer("received_at").notNull(),
    replayedAt: integer("replayed_at"),
    /** The consumer's last error, or why the body can never be processed; null when no cause was recorded. */
    error: text("error"),
  },
  (t) => [index("dead_letters_pending_idx").on(t.replayedAt, t.receivedAt)],
);

export const imports = sqliteTable("imports", {
  id: text("id").primaryKey(),
  /** Hash of the uploaded file, so that re-running the same file is idempotent. */
  contentHash: text("content_hash").notNull(),
  format: text("format").notNull(),
  /** open (a multi-part import taking parts) | receiving | validating | publishing | finalizing (published) | completed | failed */
  status: text("status").notNull(),
  totalLines: integer("total_lines").notNull().default(0),
  accepted: integer("accepted").notNull().default(0),
  rejected: integer("rejected").notNull().default(0),
  errors: text("errors", { mode: "json" }).$type<{ line: number; error: string }[]>().notNull().default([]),
  createdAt: createdAt(),
  finishedAt: integer("finished_at"),
  /** Parts received (a single upload is one part). */
  parts: integer("parts").notNull().default(0),
  /** Ids of the categories the import's products are in: one category.changed event each when it completes. */
  categories: text("categories", { mode: "json" }).$type<string[]>().notNull().default([]),
  /** When the switch made the import visible. */
  publishedAt: integer("published_at"),
  updatedAt: integer("updated_at").notNull().default(0),
  /** Changes published without their new slug (another product took it after the checks); migration 0022b. */
  slugsKept: text("slugs_kept", { mode: "json" }).$type<{ line: number; product_id: string; slug: string; kept: string; taken_by: string }[]>().notNull().default([]),
});

/**
 * Which product owns a SKU, over every catalog partition (directory only; used when CATALOG_PARTITIONS > 1):
 * claimed in one directory transaction before the product's partition is written (src/catalog/sku-claims.ts).
 */
export const skuOwners = sqliteTable("sku_owners", {
  sku: text("sku").primaryKey(),
  productId: text("product_id").notNull(),
  claimedAt: integer("claimed_at").notNull(),
  /** The import that made the claim (released if it is aborted); NULL for admin writes. */
  importId: text("import_id"),
}, (t) => [index("sku_owners_import_idx").on(t.importId).where(sql`import_id IS NOT NULL`)]);

/** Parts of a multi-part import (directory only): a part number is received once. */
export const importParts = sqliteTable(
  "import_parts",
  {
    importId: text("import_id").notNull(),
    part: integer("part").notNull(),
    /** receiving | received */
    status: text("status").notNull(),
    totalLines: integer("total_lines").notNull().default(0),
    accepted: integer("accepted").notNull().default(0),
    rejected: integer("rejected").notNull().default(0),
    receivedAt: integer("received_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.importId, t.part] })],
);

/** Staging rows of an import, in the partition of their product, until the import is finalized (or pruned). */
export const importRows = sqliteTable(
  "import_rows",
  {
    importId: text("import_id").notNull(),
    line: integer("line").notNull(),
    productId: text("product_id").notNull(),
    document: text("document", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    /** 1: a new product, already written to the live tables as pending; 0: an existing product the switch changes. */
    isNew: integer("is_new").notNull().default(0),
    part: integer("part").notNull().default(1),
  },
  (t) => [
    primaryKey({ columns: [t.importId, t.line] }),
    uniqueIndex("import_rows_product_uq").on(t.importId, t.productId),
    index("import_rows_changes_idx").on(t.importId, t.line).where(sql`is_new = 0`),
  ],
);

/** Materialised facet counts over active products, kept current on write. */
export const facetCounts = sqliteTable(
  "facet_counts",
  {
    /** brand | category | attr:<name> */
    facet: text("facet").notNull(),
    value: text("value").notNull(),
    count: integer("count").notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.facet, t.value] })],
);

/**
 * An old catalog partition's facet counts of the moved products' rows it still holds during a growth's clean-up
 * (src/db/grow.ts): no-filter facets subtract them from facet_counts. Empty outside a clean-up.
 */
export const growMovedFacets = sqliteTable(
  "grow_moved_facets",
  {
    facet: text("facet").notNull(),
    value: text("value").notNull(),
    count: integer("count").notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.facet, t.value] })],
);

export const promotions = sqliteTable(
  "promotions",
  {
    id: text("id").primaryKey(),
    name: text("name").notNull(),
    startsAt: integer("starts_at").notNull(),
    endsAt: integer("ends_at"),
    /** skus | products | category | brand */
    targetType: text("target_type").notNull(),
    targetValues: text("target_values", { mode: "json" }).$type<string[]>().notNull(),
    /** percent_off (basis points) | amount_off (per currency) | fixed_price (per currency) */
    valueType: text("value_type").notNull(),
    /** {bps: 1500} or {amounts: {USD: 500, EUR: 450}} */
    value: text("value", { mode: "json" }).$type<{ bps?: number; amounts?: Record<string, number> }>().notNull(),
    priority: integer("priority").notNull().default(0),
    /** Currencies or markets the promotion is limited to; empty = all. */
    currencies: text("currencies", { mode: "json" }).$type<string[]>().notNull().default([]),
    markets: text("markets", { mode: "json" }).$type<string[]>().notNull().default([]),
    deletedAt: integer("deleted_at"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    version: version(),
  },
  (t) => [
    index("promotions_window_idx").on(t.startsAt, t.endsAt),
    index("promotions_ends_idx").on(t.endsAt),
    // Catalog writes look up the category and brand promotions to re-resolve targets (src/promotions/targets.ts).
    index("promotions_target_type_idx").on(t.targetType),
  ],
);

/** Which SKUs a promotion covers, resolved on write so reads are a keyed lookup. */
export const promotionTargets = sqliteTable(
  "promotion_targets",
  {
    promotionId: text("promotion_id").notNull(),
    sku: text("sku").notNull(),
    productId: text("product_id").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.promotionId, t.sku] }),
    index("promotion_targets_sku_idx").on(t.sku),
    index("promotion_targets_product_idx").on(t.productId, t.promotionId),
  ],
);

/** Merchandiser pins per product: {complementary, related, exclude} product id lists. */
export const recommendationPins = sqliteTable("recommendation_pins", {
  productId: text("product_id").primaryKey(),
  complementary: text("complementary", { mode: "json" }).$type<string[]>().notNull().default([]),
  related: text("related", { mode: "json" }).$type<string[]>().notNull().default([]),
  exclude: text("exclude", { mode: "json" }).$type<string[]>().notNull().default([]),
  version: version(),
  updatedAt: updatedAt(),
});

/** Co-purchase aggregates from committed reservations: never tied to a person. */
export const coPurchases = sqliteTable(
  "co_purchases",
  {
    productA: text("product_a").notNull(),
    productB: text("product_b").notNull(),
    count: integer("count").notNull().default(0),
    updatedAt: updatedAt(),
  },
  (t) => [primaryKey({ columns: [t.productA, t.productB] }), index("co_purchases_b_idx").on(t.productB)],
);

/** Units sold per product, currency and day bucket, for best sellers over a sliding window. */
export const salesDaily = sqliteTable(
  "sales_daily",
  {
    productId: text("product_id").notNull(),
    currency: text("currency").notNull(),
    day: integer("day").notNull(),
    units: integer("units").notNull().default(0),
  },
  (t) => [
    primaryKey({ columns: [t.productId, t.currency, t.day] }),
    // Covering: best sellers sum a currency's window from the index alone (230 → 88 ms over 300k rows at 100k products).
    index("sales_daily_window_idx").on(t.currency, t.day, t.productId, t.units),
  ],
);

/** Committed orders already counted into co_purchases/sales_daily, so counting is idempotent. */
export const countedOrders = sqliteTable("counted_orders", {
  reservationId: text("reservation_id").primaryKey(),
  countedAt: integer("counted_at").notNull(),
});

/** Precomputed recommendation lists, versioned; also projected to KV for edge reads. */
export const recommendations = sqliteTable(
  "recommendations",
  {
    productId: text("product_id").notNull(),
    /** related | complementary */
    intent: text("intent").notNull(),
    items: text("items", { mode: "json" }).$type<{ id: string; score: number; reason: string }[]>().notNull(),
    version: version(),
    computedAt: integer("computed_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.productId, t.intent] })],
);

/** Products whose recommendation inputs changed (edited, ordered) since the last incremental run. */
export const recommendationDirty = sqliteTable("recommendation_dirty", {
  productId: text("product_id").primaryKey(),
  markedAt: integer("marked_at").notNull(),
});

/**
 * Which cached recommendation answers show which product (item -> owner), recorded when an answer is
 * rendered, so a sell-out, restock or price change of the item purges exactly those answers.
 * `owner` is a product id, or `best-sellers`.
 */
export const recommendationRefs = sqliteTable(
  "recommendation_refs",
  {
    itemId: text("item_id").notNull(),
    owner: text("owner").notNull(),
  },
  (t) => [primaryKey({ columns: [t.itemId, t.owner] }), index("recommendation_refs_owner_idx").on(t.owner)],
);

/** Progress of batch jobs (recommendation rebuilds and the like), resumable across invocations. */
export const jobs = sqliteTable("jobs", {
  id: text("id").primaryKey(),
  kind: text("kind").notNull(),
  /** pending | running | completed | failed */
  status: text("status").notNull(),
  cursor: text("cursor"),
  processed: integer("processed").notNull().default(0),
  total: integer("total").notNull().default(0),
  startedAt: integer("started_at").notNull(),
  finishedAt: integer("finished_at"),
  error: text("error"),
});

/** Small key/value state for the worker itself (watermarks, last cron run, metrics rollups). */
export const meta = sqliteTable("meta", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
  updatedAt: updatedAt(),
});

/** Raw propagation-lag samples (ms), pruned by the cron, for p50/p99 in /admin/metrics. */
export const lagSamples = sqliteTable(
  "lag_samples",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    eventType: text("event_type").notNull(),
    lagMs: integer("lag_ms").notNull(),
    recordedAt: integer("recorded_at").notNull(),
  },
  (t) => [index("lag_samples_recorded_idx").on(t.recordedAt)],
);

/** Shortfalls reported by stock shards (`stock.oversold`): held units beyond a recount. Migration 0007. */
export const stockOversold = sqliteTable(
  "stock_oversold",
  {
    sku: text("sku").notNull(),
    locationId: text("location_id").notNull(),
    seq: integer("seq").notNull(),
    units: integer("units").notNull(),
    onHand: integer("on_hand").notNull(),
    reserved: integer("reserved").notNull(),
    cause: text("cause").notNull(),
    eventId: text("event_id"),
    occurredAt: integer("occurred_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.sku, t.locationId, t.seq] }), index("stock_oversold_occurred_idx").on(t.occurredAt)],
);

/** Affiliate link clicks: the local fallback of the Analytics Engine dataset. */
export const clicks = sqliteTable(
  "clicks",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    affiliateId: text("affiliate_id").notNull(),
    productId: text("product_id").notNull(),
    at: integer("at").notNull(),
    country: text("country"),
  },
  (t) => [index("clicks_affiliate_idx").on(t.affiliateId, t.at)],
);

/**
 * Hot SKUs split into escrow sub-shards, so one SKU's demand is spread over several objects. Routing reads `state = 'hot'` to send reservations to the
 * sub-shard objects `stock:hot:{sku}:{i}`; `marking` and `folding` are the resumable in-between states.
 */
export const hotSkus = sqliteTable("hot_skus", {
  sku: text("sku").primaryKey(),
  subShards: integer("sub_shards").notNull(),
  /** marking | hot | folding */
  state: text("state").notNull(),
  /** Id of the split transfer, so a retried mark resumes the same transfer instead of starting a new one. */
  transferId: text("transfer_id").notNull(),
  /** Bumped after each completed fold sweep, so a crashed sweep is resumed with the same transfer ids. */
  generation: integer("generation").notNull().default(0),
  updatedAt: updatedAt(),
  version: version(),
});

/** Operator console sessions: the cookie is signed and expiring; this row lets sign-out revoke it for real. */
export const consoleLogins = sqliteTable(
  "console_logins",
  {
    id: text("id").primaryKey(),
    /** admin | viewer */
    role: text("role").notNull(),
    createdAt: integer("created_at").notNull(),
    expiresAt: integer("expires_at").notNull(),
    revokedAt: integer("revoked_at"),
  },
  (t) => [index("console_logins_expires_idx").on(t.expiresAt)],
);

/** Wrong console sign-ins per client (IP), for throttling; rows older than a day are pruned. */
export const consoleSigninFailures = sqliteTable("console_signin_failures", {
  client: text("client").primaryKey(),
  failures: integer("failures").notNull(),
  windowStart: integer("window_start").notNull(),
  lockedUntil: integer("locked_until").notNull().default(0),
});

/**
 * Per-minute metric history (src/metrics/timeseries.ts): counters add up, `g.*` gauges keep the minute's
 * maximum. Names come from a fixed set in code, never from input; rows older than the retention are pruned.
 */
export const metricPoints = sqliteTable(
  "metric_points",
  {
    minute: integer("minute").notNull(),
    name: text("name").notNull(),
    value: integer("value").notNull(),
  },
  (t) => [primaryKey({ columns: [t.minute, t.name] })],
);

/** Outbound webhook endpoints (migrations/0011_webhooks.sql; the D1 triggers that record events are there too). */
export const webhookEndpoints = sqliteTable("webhook_endpoints", {
  id: text("id").primaryKey(),
  url: text("url").notNull(),
  events: text("events", { mode: "json" }).$type<string[]>().notNull(),
  secret: text("secret").notNull(),
  description: text("description").notNull().default(""),
  status: text("status").notNull().default("active"),
  disabledReason: text("disabled_reason"),
  disabledAt: integer("disabled_at"),
  consecutiveFailures: integer("consecutive_failures").notNull().default(0),
  retryAfter: integer("retry_after").notNull().default(0),
  createdAt: integer("created_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
  deletedAt: integer("deleted_at"),
});

/** One row per webhook event; `id` is the `webhook-id` receivers see. */
export const webhookEvents = sqliteTable(
  "webhook_events",
  {
    id: text("id").primaryKey(),
    type: text("type").notNull(),
    payload: text("payload").notNull(),
    createdAt: integer("created_at").notNull(),
    dispatchedAt: integer("dispatched_at"),
  },
  (t) => [index("webhook_events_pending_idx").on(t.createdAt).where(sql`dispatched_at IS NULL`)],
);

export const webhookDeliveries = sqliteTable(
  "webhook_deliveries",
  {
    eventId: text("event_id").notNull(),
    endpointId: text("endpoint_id").notNull(),
    status: text("status").notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    createdAt: integer("created_at").notNull(),
    enqueuedAt: integer("enqueued_at"),
    deliveredAt: integer("delivered_at"),
  },
  (t) => [primaryKey({ columns: [t.eventId, t.endpointId] }), index("webhook_deliveries_unsent_idx").on(t.createdAt).where(sql`enqueued_at IS NULL`),
    index("webhook_deliveries_pending_idx").on(t.enqueuedAt).where(sql`status = 'pending'`),
  ],
);

export const webhookAttempts = sqliteTable(
  "webhook_attempts",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    endpointId: text("endpoint_id").notNull(),
    eventId: text("event_id").notNull(),
    eventType: text("event_type").notNull(),
    attempt: integer("attempt").notNull(),
    attemptedAt: integer("attempted_at").notNull(),
    ok: integer("ok").notNull(),
    statusCode: integer("status_code"),
    error: text("error"),
    durationMs: integer("duration_ms").notNull(),
  },
  (t) => [index("webhook_attempts_endpoint_idx").on(t.endpointId, t.id)],
);
