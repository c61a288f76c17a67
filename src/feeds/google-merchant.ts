/**
 * Google Merchant Center feeds Merchant Center can fetch on a schedule: RSS 2.0 with the `g:` namespace
 * (`google-xml`) and tab-separated text (`google-tsv`). Items are the same `googleItems` as the JSON `google`
 * format (one per variant); only the envelope differs.
 *
 * Merchant Center fetches one file per feed, so the list endpoint streams the whole catalog in one response,
 * reading it a page at a time (`FeedPageSource`): memory stays one page, however large the catalog. The first
 * page is read before the response starts, so an auth or database failure is still a proper problem answer; a
 * failure after that aborts the stream, and Merchant Center rejects the truncated fetch instead of importing half.
 */
import type { ProductDocument } from "../catalog/document";
import { googleItems, type GoogleItem, type RenderContext } from "./render";

export const GOOGLE_NS = "http://base.google.com/ns/1.0";

export type StreamedFormat = "google-xml" | "google-tsv";

/** One `shipping` entry as Merchant Center's TSV writes it: country:region:service:price. */
export type ShippingRule = { country: string; region: string; service: string; price: string };

/**
 * Parses the GOOGLE_SHIPPING variable: entries `country:region:service:price` separated by `;`, e.g.
 * `US::Standard:4.99 USD; DE::Standard:5.90 EUR`. Malformed entries are left out (and logged once per isolate).
 */
export function parseShipping(config: string | undefined): ShippingRule[] {
  const rules: ShippingRule[] = [];
  for (const raw of (config ?? "").split(";")) {
    const entry = raw.trim();
    if (!entry) continue;
    const m = /^([A-Z]{2}):([^:]*):([^:]*):(\d+(?:\.\d{1,3})? [A-Z]{3})$/.exec(entry);
    if (!m) {
      warnOnce(`GOOGLE_SHIPPING entry ignored: ${JSON.stringify(entry)} (expected country:region:service:price like US::Standard:4.99 USD)`);
      continue;
    }
    rules.push({ country: m[1]!, region: m[2]!, service: m[3]!, price: m[4]! });
  }
  return rules;
}

const warned = new Set<string>();
function warnOnce(message: string) {
  if (warned.has(message)) return;
  warned.add(message);
  console.warn(JSON.stringify({ level: "warn", message }));
}

/** Shipping rules that apply to a feed: Merchant Center wants the shipping price in the item price's currency. */
export function shippingFor(rules: ShippingRule[], currency: string): ShippingRule[] {
  return rules.filter((r) => r.price.endsWith(` ${currency}`));
}

// ------------------------------------------------------------------------------------------------ XML

// XML 1.0 forbids these control characters even escaped; product text from imports may contain them.
const XML_INVALID = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

export function xmlEscape(s: string): string {
  return s
    .replace(XML_INVALID, "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

const el = (name: string, value: string) => `<${name}>${xmlEscape(value)}</${name}>`;

/** RSS defines title, link and description; every other Merchant Center attribute is in the g: namespace. */
const RSS_OWN = new Set(["title", "link", "description"]);

export function xmlItem(item: GoogleItem, shipping: ShippingRule[]): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(item) as [keyof GoogleItem, unknown][]) {
    if (value === undefined || value === "") continue;
    const name = RSS_OWN.has(key) ? key : `g:${key}`;
    if (Array.isArray(value)) for (const v of value) parts.push(el(name, String(v)));
    else parts.push(el(name, String(value)));
  }
  for (const s of shipping) {
    const fields = [el("g:country", s.country), s.region ? el("g:region", s.region) : "", s.service ? el("g:service", s.service) : "", el("g:price", s.price)];
    parts.push(`<g:shipping>${fields.join("")}</g:shipping>`);
  }
  return `<item>${parts.join("")}</item>\n`;
}

export function xmlHead(title: string, link: string, description: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:g="${GOOGLE_NS}">\n<channel>\n` +
    `${el("title", title)}\n${el("link", link)}\n${el("description", description)}\n`
  );
}

export const XML_TAIL = "</channel>\n</rss>\n";

// ------------------------------------------------------------------------------------------------ TSV

/** Columns of the TSV feed, in order. Merchant Center matches them by header name. */
export const TSV_COLUMNS = [
  "id", "item_group_id", "title", "description", "link", "image_link", "additional_image_link", "availability", "availability_date",
  "price", "sale_price", "sale_price_effective_date", "brand", "gtin", "mpn", "identifier_exists", "condition", "product_type",
  "color", "size", "material", "shipping",
] as const;

/** A TSV field cannot hold a tab or a line break, and Merchant Center reads quotes literally: both become spaces. */
const tsvField = (s: string) => s.replace(/[\t\r\n]+/g, " ").replace(XML_INVALID, "");

export function tsvRow(item: GoogleItem, shipping: ShippingRule[]): string {
  const shippingText = shipping.map((s) => `${s.country}:${s.region}:${s.service}:${s.price}`).join(",");
  const cells = TSV_COLUMNS.map((col) => {
    if (col === "shipping") return shippingText;
    const value = item[col];
    if (value === undefined) return "";
    return tsvField(Array.isArray(value) ? value.join(",") : String(value));
  });
  return `${cells.join("\t")}\n`;
}

export const TSV_HEAD = `${TSV_COLUMNS.join("\t")}\n`;

// ------------------------------------------------------------------------------------------ streaming

export type FeedPageSource = {
  /** Documents of the next page and whether more follow. */
  next(): Promise<{ docs: ProductDocument[]; hasMore: boolean }>;
};

export type StreamOptions = { format: StreamedFormat; ctx: RenderContext; shipping: ShippingRule[]; channelTitle: string };

function renderDocs(docs: ProductDocument[], opts: StreamOptions): string {
  const rows = docs.flatMap((d) => googleItems(d, opts.ctx));
  return rows.map((i) => (opts.format === "google-xml" ? xmlItem(i, opts.shipping) : tsvRow(i, opts.shipping))).join("");
}

function head(opts: StreamOptions): string {
  return opts.format === "google-xml"
    ? xmlHead(opts.channelTitle, opts.ctx.siteBaseUrl, `Products of ${opts.ctx.siteBaseUrl} in ${opts.ctx.currency}, for Google Merchant Center.`)
    : TSV_HEAD;
}

/** A whole document, for one product or a first page that was the only one. */
export function renderGoogleDocument(docs: ProductDocument[], opts: StreamOptions): string {
  return head(opts) + renderDocs(docs, opts) + (opts.format === "google-xml" ? XML_TAIL : "");
}

/**
 * Streams the feed: head and the already-read first page at once, then one page per pull (backpressure: a
 * slow reader slows the database reads down instead of buffering the catalog).
 */
export function streamGoogleFeed(first: { docs: ProductDocument[]; hasMore: boolean }, source: FeedPageSource, opts: StreamOptions): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let more = first.hasMore;
  let started = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!started) {
        started = true;
        controller.enqueue(encoder.encode(head(opts) + renderDocs(first.docs, opts)));
      } else if (more) {
        try {
          const page = await source.next();
          more = page.hasMore;
          controller.enqueue(encoder.encode(renderDocs(page.docs, opts)));
        } catch (err) {
          console.error(JSON.stringify({ level: "error", message: "google feed stream aborted", error: String(err) }));
          controller.error(err);
          return;
        }
      }
      if (!more) {
        if (opts.format === "google-xml") controller.enqueue(encoder.encode(XML_TAIL));
        controller.close();
      }
    },
  });
}
