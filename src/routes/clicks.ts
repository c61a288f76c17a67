import { createRoute, z } from "@hono/zod-openapi";
import { getAffiliateByTrackingId, trackedLink, type Affiliate } from "../affiliates/account";
import { loadProductDocuments } from "../catalog/document";
import { catalogDb } from "../db/partitions";
import { inScope } from "../feeds/scope";
import { ApiError } from "../lib/errors";
import { createApp } from "../lib/validation";

const route = createRoute({
  method: "get",
  path: "/r/{affiliate}/{product}",
  tags: ["Affiliate feeds"],
  summary: "Click redirect: records the click for the affiliate, then 302 to the tracked product page",
  description:
    "`affiliate` is the tracking id. Clicks go to the `CLICKS` Analytics Engine dataset (blobs: affiliate id, tracking id, product id, country, campaign; index: affiliate id) and, outside production or when that write fails, to the D1 `clicks` table. An unknown tracking id still redirects (untracked) so the shopper never lands on an error.",
  request: { params: z.object({ affiliate: z.string().min(1).max(64), product: z.string().min(1).max(100) }) },
  responses: {
    302: { description: "To `https://<site>/p/<slug>?aff=…&utm_*`." },
    404: { description: "No such active product, or outside the affiliate's scope." },
  },
});

async function recordClick(env: Env, affiliate: Affiliate, productId: string, country: string | null, now: number): Promise<void> {
  let tracked = false;
  try {
    env.CLICKS.writeDataPoint({
      indexes: [affiliate.id],
      blobs: [affiliate.id, affiliate.tracking_id, productId, country ?? "", affiliate.campaign ?? ""],
      doubles: [1],
    });
    tracked = true;
  } catch {
    // Analytics Engine is best effort; the D1 row below keeps the credit.
  }
  if (!tracked || env.ENVIRONMENT !== "production") {
    await env.DB.prepare("INSERT INTO clicks (affiliate_id, product_id, at, country) VALUES (?, ?, ?, ?)")
      .bind(affiliate.id, productId, now, country)
      .run();
  }
}

export const clicksApp = createApp().openapi(route, async (c) => {
  const params = c.req.valid("param");
  const [affiliate, loaded] = await Promise.all([getAffiliateByTrackingId(c.env.DB, params.affiliate), loadProductDocuments(catalogDb(c.env, params.product), [params.product], { badJson: "fallback" })]);
  const doc = loaded[0]?.doc;
  if (!doc || doc.status !== "active") throw ApiError.notFound(`No product '${params.product}'.`);
  c.header("cache-control", "no-store");
  c.header("referrer-policy", "strict-origin-when-cross-origin");
  if (!affiliate || affiliate.status !== "active") {
    return c.redirect(new URL(`/p/${encodeURIComponent(doc.slug)}`, c.env.SITE_BASE_URL).toString(), 302);
  }
  if (!inScope(doc, affiliate.scope)) throw ApiError.notFound(`No product '${params.product}' in this affiliate's catalog.`);
  const cf = (c.req.raw as Request & { cf?: { country?: string } }).cf;
  const country = cf?.country ?? c.req.header("x-shopper-country") ?? null;
  await recordClick(c.env, affiliate, doc.id, country ? country.toUpperCase().slice(0, 2) : null, Date.now());
  return c.redirect(trackedLink(c.env.SITE_BASE_URL, affiliate, doc.slug), 302);
});
