/**
 * Counts every request into the per-minute metrics store (timeseries.ts): per route class a count, a 5xx count
 * and a latency histogram; reads per cache tier; reservation creates per status (201/409/429/503). Nothing is
 * awaited on the request path: the isolate's buffer is written by `waitUntil` once the minute turns over.
 */
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../env";
import { routeClass } from "../lib/rate-limit";
import { addPoint, bucketOf, flushDue, flushPoints, LATENCY_BOUNDS } from "./timeseries";

export const ROUTE_CLASSES = ["browse", "search", "strong", "reserve", "feed", "admin", "console", "other"] as const;
export type MetricRouteClass = (typeof ROUTE_CLASSES)[number];

/** Read classes the latency SLO applies to. */
export const READ_CLASSES = ["browse", "search", "feed"] as const satisfies readonly MetricRouteClass[];

export function metricClass(method: string, path: string, query: URLSearchParams): MetricRouteClass {
  if (path.startsWith("/console")) return "console";
  if (path.startsWith("/admin")) return "admin";
  return routeClass(method, path, query) ?? "other";
}

export const RESERVATION_STATUSES = ["201", "409", "429", "503"] as const;

export const recordRequests = createMiddleware<AppEnv>(async (c, next) => {
  const started = Date.now();
  await next();
  const url = new URL(c.req.url);
  const cls = metricClass(c.req.method, url.pathname, url.searchParams);
  const status = c.res.status;
  const ms = Date.now() - started;
  addPoint(`req.${cls}.n`);
  if (status >= 500) addPoint(`req.${cls}.err`);
  addPoint(`req.${cls}.h${bucketOf(LATENCY_BOUNDS, ms)}`);
  if (cls === "reserve") {
    const s = String(status);
    addPoint(`rsv.${(RESERVATION_STATUSES as readonly string[]).includes(s) ? s : "other"}`);
  }
  const tier = c.res.headers.get("x-cache-tier");
  if (tier === "edge" || tier === "kv" || tier === "d1") addPoint(`tier.${c.res.headers.get("x-stale") === "true" ? "stale" : tier}`);
  if (flushDue()) {
    const flush = flushPoints(c.env.DB);
    try {
      c.executionCtx.waitUntil(flush);
    } catch {
      await flush; // no execution context (app.request in tests)
    }
  }
});
