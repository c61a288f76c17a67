import { cors } from "hono/cors";
import type { AppEnv } from "./env";
import { onError } from "./lib/errors";
import { notFoundHandler } from "./lib/not-found";
import { requestId } from "./lib/request-id";
import { publishedImports } from "./imports/published-view";
import { bodySizeLimit, contentTypeCheck, drainUnreadBody, guardBindings, inputHygiene, requestShapeLimits } from "./lib/protection";
import { rateLimit } from "./lib/rate-limit";
import { shedLoad } from "./lib/load-shed";
import { countTiers } from "./lib/tier-stats";
import { createApp } from "./lib/validation";
import { docsApp } from "./routes/docs";
import { healthApp } from "./routes/health";
import { adminAffiliatesApp } from "./routes/admin-affiliates";
import { clicksApp } from "./routes/clicks";
import { embedApp } from "./routes/embed";
import { feedsApp } from "./routes/feeds";
import { adminEventsApp } from "./routes/admin-events";
import { adminMetricsApp } from "./routes/admin-metrics";
import { adminProductsApp } from "./routes/admin-products";
import { adminPromotionsApp } from "./routes/admin-promotions";
import { adminImportApp } from "./routes/admin-import";
import { productsApp } from "./routes/products";
import { searchApp } from "./routes/search";
import { categoriesApp } from "./routes/categories";
import { benchBaselineApp } from "./routes/bench-baseline";
import { adminBenchApp } from "./routes/admin-bench";
import { adminStockApp } from "./routes/admin-stock";
import { adminHotStockApp } from "./routes/admin-hot-stock";
import { availabilityApp } from "./routes/availability";
import { reservationsApp } from "./routes/reservations";
import { recommendationsApp } from "./routes/recommendations";
import { adminRecommendationsApp } from "./routes/admin-recommendations";
import { recordRequests } from "./metrics/request-metrics";
import { consoleApp } from "./console/app";
import { adminHoldsApp } from "./routes/admin-holds";
import { adminProductListApp } from "./routes/admin-product-list";
import { adminMetricSeriesApp } from "./routes/admin-metric-series";
import { useAdminApi } from "./console/kit";
import { adminWebhooksApp } from "./routes/admin-webhooks";

/** Builds the whole API: cross-cutting middleware first, then one sub-app per resource. */
export function buildApp() {
  const app = createApp();
  app.use("*", requestId);
  // Outermost after the id: whatever answered early, the unread request body is consumed before the answer leaves.
  app.use("*", drainUnreadBody);
  // Per-minute request counts and latency per route class, for the console's history and SLOs.
  app.use("*", recordRequests);
  // Cheap rejections first (414/431/400 for control characters and bad encodings/415/413), then every binding call
  // is bounded by a timeout and a breaker.
  app.use("*", requestShapeLimits, inputHygiene, contentTypeCheck, bodySizeLimit, guardBindings);
  // Per-client limits per route class (browse/search/reserve/feed): 429 with Retry-After and RateLimit-*.
  app.use("*", rateLimit);
  // Saturated stock shards: browse/search answer from cache tiers only, so checkouts keep the capacity.
  app.use("*", shedLoad);
  // Over several catalog partitions, one list of published imports per request, so every partition agrees on them.
  app.use("*", publishedImports);
  app.use("/v1/*", cors({ origin: "*", allowMethods: ["GET", "HEAD", "OPTIONS"], exposeHeaders: ["ETag", "x-cache-tier", "x-request-id", "Server-Timing", "x-stale", "Warning", "x-d1-bookmark", "Content-Language"] }));
  // Per-tier hit counts for /admin/metrics, read off the x-cache-tier header of every public read.
  app.use("/v1/*", countTiers);

  app.route("/", healthApp);
  app.route("/", feedsApp);
  app.route("/", clicksApp);
  app.route("/", embedApp);
  app.route("/", adminAffiliatesApp);
  app.route("/", adminProductsApp);
  app.route("/", adminPromotionsApp);
  app.route("/", adminImportApp);
  app.route("/", adminEventsApp);
  app.route("/", adminMetricsApp);
  app.route("/", productsApp);
  app.route("/", searchApp);
  app.route("/", categoriesApp);
  app.route("/", benchBaselineApp);
  app.route("/", reservationsApp);
  app.route("/", availabilityApp);
  app.route("/", adminStockApp);
  app.route("/", adminHotStockApp);
  app.route("/", adminBenchApp);
  app.route("/", recommendationsApp);
  app.route("/", adminRecommendationsApp);
  app.route("/", adminHoldsApp);
  app.route("/", adminProductListApp);
  app.route("/", adminMetricSeriesApp);
  app.route("/", consoleApp);
  app.route("/", adminWebhooksApp);

  // Console writes are in-process calls of the admin routes above.
  useAdminApi(app);
  app.route("/", docsApp(app));
  app.onError(onError);
  app.notFound(notFoundHandler(app));
  return app;
}

export type App = ReturnType<typeof buildApp>;
export type { AppEnv };
