/**
 * Feed item renderers: our JSON schema, Google Merchant Center attributes and JSON Feed 1.1.
 * Each takes the canonical ProductDocument (with live availability folded in) and a render context;
 * prices come only from ./price.ts.
 */
import { clickUrl, trackedLink, type Affiliate } from "../affiliates/account";
import type { ProductDocument } from "../catalog/document";
import type { StockStatus } from "../lib/stock-status";
import type { FeedPage, Tombstone } from "./pages";
import { googlePrice, lowestPrice, renderPrice, variantPrice } from "./price";

export type FeedFormat = "json" | "google" | "jsonfeed";

export type RenderContext = {
  affiliate: Affiliate;
  currency: string;
  locale: string;
  siteBaseUrl: string;
  /** Origin of this API, for click-redirect URLs. */
  apiOrigin: string;
  /** This request's URL without credentials, for JSON Feed's feed_url/next_url. */
  selfUrl: URL;
  /** The instant prices are rendered for (src/lib/clock.ts): promotions in force then apply. */
  now: number;
};

const STATUS_RANK: Record<StockStatus, number> = { out_of_stock: 0, low_stock: 1, in_stock: 2 };

function localized(doc: ProductDocument, locale: string) {
  const t = doc.translations[locale];
  return { title: t?.title || doc.title, description: t?.description || doc.description };
}

/** A product's availability: the best of its variants'. */
export function productAvailability(doc: ProductDocument): { status: StockStatus; available: number } {
  let status: StockStatus = "out_of_stock";
  let available = 0;
  for (const v of doc.variants) {
    available += Math.max(0, v.availability.available);
    if (STATUS_RANK[v.availability.status] > STATUS_RANK[status]) status = v.availability.status;
  }
  return { status, available };
}

// ---------------------------------------------------------------------------------------------- json

export function jsonItem(doc: ProductDocument, ctx: RenderContext) {
  const { title, description } = localized(doc, ctx.locale);
  const variants = doc.variants.map((v) => {
    const price = variantPrice(v.prices, ctx.currency, { sku: v.sku, promotions: doc.promotions, now: ctx.now });
    return {
      view: price,
      out: {
        sku: v.sku,
        title: v.title,
        options: v.options,
        gtin: v.gtin,
        mpn: v.mpn,
        price: renderPrice(price, ctx.locale),
        availability: { status: v.availability.status, available: Math.max(0, v.availability.available) },
      },
    };
  });
  return {
    id: doc.id,
    slug: doc.slug,
    title,
    description,
    brand: doc.brand,
    category_id: doc.category_id,
    category_path: doc.category_path,
    condition: doc.condition,
    attributes: doc.attributes,
    image: doc.images[0]?.url ?? null,
    images: doc.images,
    markets: doc.markets,
    link: trackedLink(ctx.siteBaseUrl, ctx.affiliate, doc.slug),
    click_url: clickUrl(ctx.apiOrigin, ctx.affiliate, doc.id),
    price: renderPrice(lowestPrice(variants.map((v) => v.view)), ctx.locale),
    availability: productAvailability(doc),
    variants: variants.map((v) => v.out),
    version: doc.version,
    change_seq: doc.change_seq,
    updated_at: new Date(doc.updated_at).toISOString(),
  };
}

function jsonTombstone(t: Tombstone) {
  return { id: t.id, removed: true as const, status: t.status, change_seq: t.change_seq, removed_at: new Date(t.removed_at).toISOString() };
}

// -------------------------------------------------------------------------------------------- google

export type GoogleItem = {
  id: string;
  item_group_id?: string;
  title: string;
  description: string;
  link: string;
  image_link: string;
  additional_image_link?: string[];
  availability: "in_stock" | "out_of_stock" | "preorder" | "backorder";
  availability_date?: string;
  price: string;
  sale_price?: string;
  /** ISO 8601 interval "start/end" of the sale (Merchant Center); open-ended sales end far in the future. */
  sale_price_effective_date?: string;
  brand: string;
  gtin?: string;
  mpn?: string;
  identifier_exists?: "no";
  condition: "new" | "refurbished" | "used";
  product_type?: string;
  color?: string;
  size?: string;
  material?: string;
};

const GOOGLE_CONDITIONS = new Set(["new", "refurbished", "used"]);

function googleAvailability(status: StockStatus, attributes: Record<string, string>): GoogleItem["availability"] {
  if (status !== "out_of_stock") return "in_stock";
  // A product may declare that it can be ordered without stock.
  const mode = attributes.availability;
  return mode === "preorder" || mode === "backorder" ? mode : "out_of_stock";
}

/** GS1 check digit: Google rejects items whose GTIN fails it, so such a GTIN is left out (the MPN remains). */
export function validGtin(gtin: string): boolean {
  if (!/^(\d{8}|\d{12}|\d{13}|\d{14})$/.test(gtin)) return false;
  const digits = [...gtin].map(Number);
  const check = digits.pop()!;
  const sum = digits.reverse().reduce((acc, d, i) => acc + d * (i % 2 === 0 ? 3 : 1), 0);
  return (10 - (sum % 10)) % 10 === check;
}

const truncate = (s: string, max: number) => (s.length <= max ? s : `${s.slice(0, max - 1)}…`);

/**
 * One Google item per variant (id = SKU, item_group_id = product id when there are several). Variants
 * without a price in the requested currency are left out: Google rejects an item without a price.
 */
export function googleItems(doc: ProductDocument, ctx: RenderContext): GoogleItem[] {
  const { title, description } = localized(doc, ctx.locale);
  const grouped = doc.variants.length > 1;
  const items: GoogleItem[] = [];
  for (const v of doc.variants) {
    const price = variantPrice(v.prices, ctx.currency, { sku: v.sku, promotions: doc.promotions, now: ctx.now });
    if (!price) continue;
    const item: GoogleItem = {
      id: truncate(v.sku, 50),
      title: truncate(grouped && v.title ? v.title : title, 150),
      description: truncate(description || title, 5000),
      link: trackedLink(ctx.siteBaseUrl, ctx.affiliate, doc.slug, grouped ? { variant: v.sku } : {}),
      image_link: doc.images[0]?.url ?? "",
      availability: googleAvailability(v.availability.status, doc.attributes),
      price: googlePrice(price.compare_at ?? price.amount, price.currency),
      brand: doc.brand,
      condition: (GOOGLE_CONDITIONS.has(doc.condition) ? doc.condition : "new") as GoogleItem["condition"],
    };
    if (grouped) item.item_group_id = doc.id;
    if (price.compare_at !== null && price.promotion) {
      item.sale_price = googlePrice(price.amount, price.currency);
      item.sale_price_effective_date = saleWindow(doc, price.promotion.id);
    }
    if (doc.images.length > 1) item.additional_image_link = doc.images.slice(1, 11).map((i) => i.url);
    const gtin = v.gtin && validGtin(v.gtin) ? v.gtin : undefined;
    if (gtin) item.gtin = gtin;
    if (v.mpn) item.mpn = v.mpn;
    if (!gtin && !v.mpn) item.identifier_exists = "no";
    if (item.availability !== "in_stock" && item.availability !== "out_of_stock" && doc.attributes.availability_date) {
      item.availability_date = doc.attributes.availability_date;
    }
    if (doc.category_path.length) item.product_type = doc.category_path.join(" > ");
    const color = v.options.color ?? doc.attributes.color;
    const size = v.options.size ?? doc.attributes.size;
    const material = v.options.material ?? doc.attributes.material;
    if (color) item.color = color;
    if (size) item.size = size;
    if (material) item.material = material;
    items.push(item);
  }
  return items;
}

const OPEN_END = "2099-12-31T23:59:59Z";

function saleWindow(doc: ProductDocument, promotionId: string): string | undefined {
  const p = doc.promotions?.find((x) => x.id === promotionId);
  if (!p) return undefined;
  const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
  return `${iso(p.starts_at)}/${p.ends_at === null ? OPEN_END : iso(p.ends_at)}`;
}

function googleTombstone(t: Tombstone) {
  return { id: t.id, item_group_id: t.id, item_ids: t.skus, removed: true as const, change_seq: t.change_seq };
}

// ------------------------------------------------------------------------------------------ jsonfeed

export function jsonFeedItem(doc: ProductDocument, ctx: RenderContext) {
  const item = jsonItem(doc, ctx);
  return {
    id: doc.id,
    url: item.link,
    external_url: item.click_url,
    title: item.title,
    content_text: item.description,
    summary: item.price ? `${item.price.formatted}, ${item.availability.status.replace(/_/g, " ")}` : item.availability.status.replace(/_/g, " "),
    image: item.image ?? undefined,
    date_published: new Date(doc.created_at).toISOString(),
    date_modified: item.updated_at,
    tags: [doc.brand, ...doc.category_path],
    language: ctx.locale,
    _edgeshelf: {
      price: item.price,
      availability: item.availability,
      variants: item.variants,
      change_seq: item.change_seq,
    },
  };
}

// ----------------------------------------------------------------------------------------- envelopes

export function renderPage(format: FeedFormat, page: FeedPage, ctx: RenderContext): { body: unknown; contentType: string } {
  const docs = page.live.map((l) => l.doc);
  const paging = { next_cursor: page.next_cursor, next_since: page.next_since, has_more: page.has_more };
  if (format === "google") {
    return {
      contentType: "application/json; charset=utf-8",
      body: { format, mode: page.mode, currency: ctx.currency, locale: ctx.locale, items: docs.flatMap((d) => googleItems(d, ctx)), removed: page.removed.map(googleTombstone), ...paging },
    };
  }
  if (format === "jsonfeed") {
    const next = new URL(ctx.selfUrl);
    next.searchParams.delete("cursor");
    next.searchParams.delete("since");
    if (page.next_cursor) next.searchParams.set("cursor", page.next_cursor);
    else next.searchParams.set("since", page.next_since);
    return {
      contentType: "application/feed+json; charset=utf-8",
      body: {
        version: "https://jsonfeed.org/version/1.1",
        title: `edgeshelf products for ${ctx.affiliate.name}`,
        home_page_url: ctx.siteBaseUrl,
        feed_url: ctx.selfUrl.toString(),
        // JSON Feed readers follow next_url for more items; once caught up it is the delta to poll next.
        ...(page.has_more ? { next_url: next.toString() } : {}),
        language: ctx.locale,
        items: docs.map((d) => jsonFeedItem(d, ctx)),
        _edgeshelf: { mode: page.mode, currency: ctx.currency, removed: page.removed.map(jsonTombstone), poll_url: next.toString(), ...paging },
      },
    };
  }
  return {
    contentType: "application/json; charset=utf-8",
    body: { format, mode: page.mode, currency: ctx.currency, locale: ctx.locale, items: docs.map((d) => jsonItem(d, ctx)), removed: page.removed.map(jsonTombstone), ...paging },
  };
}

export function renderOne(format: FeedFormat, doc: ProductDocument, ctx: RenderContext): { body: unknown; contentType: string } {
  if (format === "google") {
    return { contentType: "application/json; charset=utf-8", body: { format, currency: ctx.currency, locale: ctx.locale, items: googleItems(doc, ctx) } };
  }
  if (format === "jsonfeed") {
    return {
      contentType: "application/feed+json; charset=utf-8",
      body: {
        version: "https://jsonfeed.org/version/1.1",
        title: `${localized(doc, ctx.locale).title} (edgeshelf)`,
        home_page_url: ctx.siteBaseUrl,
        feed_url: ctx.selfUrl.toString(),
        language: ctx.locale,
        items: [jsonFeedItem(doc, ctx)],
      },
    };
  }
  return { contentType: "application/json; charset=utf-8", body: { format, currency: ctx.currency, locale: ctx.locale, item: jsonItem(doc, ctx) } };
}
