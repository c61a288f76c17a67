import { createRoute, z } from "@hono/zod-openapi";
import { collectMetrics } from "../events/metrics";
import { requireAdmin } from "../lib/auth";
import { recommendationMetrics } from "../recommendations/jobs";
import { createApp } from "../lib/validation";
import { isolateMemory } from "../lib/isolate-memory";

const Lag = z.object({ samples: z.number(), p50: z.number().nullable(), p95: z.number().nullable(), p99: z.number().nullable(), max: z.number().nullable() });

const JobView = z.object({ id: z.string(), status: z.string(), processed: z.number(), total: z.number(), started_at: z.string(), finished_at: z.string().nullable(), duration_ms: z.number().nullable() });
const RecommendationJobs = z.object({
  rebuild_running: JobView.nullable().openapi({ description: "Progress of the full rebuild in flight, if any." }),
  last_rebuild: JobView.nullable().openapi({ description: "The last finished full rebuild." }),
  dirty_products: z.number().openapi({ description: "Products waiting for the incremental run." }),
  last_incremental: z.object({ at: z.string(), recomputed: z.number(), changed: z.number() }).nullable(),
});

const MetricsSchema = z
  .object({
    generated_at: z.string(),
    propagation_lag_ms: Lag.extend({ window_ms: z.number(), by_type: z.record(z.string(), Lag) }),
    outbox: z.object({ backlog: z.number(), oldest_unsent_age_ms: z.number().nullable() }),
    dead_letters: z.object({ pending: z.number(), total: z.number() }),
    cache: z.object({
      scope: z.string(),
      since: z.string(),
      reads: z.number(),
      hits: z.record(z.string(), z.number()),
      hit_ratio: z.record(z.string(), z.number().nullable()),
    }),
    recommendations: RecommendationJobs,
    stock_oversold: z
      .object({ window_ms: z.number(), reports: z.number(), units: z.number(), last_at: z.string().nullable() })
      .openapi({ description: "`stock.oversold` reports: a recount or adjustment below the units already held (holds stay). `units` sums each report's shortfall." }),
    memory: z
      .object({
        bytes: z.number(),
        budget: z.number(),
        parts: z.record(z.string(), z.object({ bytes: z.number(), entries: z.number(), budget: z.number(), instances: z.number() })),
      })
      .openapi({ description: "Estimated bytes held between requests by this isolate's bounded structures, with their budgets." }),
  })
  .openapi("Metrics");

const route = createRoute({
  method: "get",
  path: "/admin/metrics",
  tags: ["Admin: events"],
  summary: "Propagation lag (p50/p95/p99), outbox backlog, dead letters, cache hit ratio per tier",
  description:
    "Lag is consume time minus the event's `occurred_at`, sampled by the queue consumer over the last 15 minutes. Cache hits are counted per isolate by the read path.",
  security: [{ adminToken: [] }],
  responses: { 200: { description: "Current figures.", content: { "application/json": { schema: MetricsSchema } } } },
});

export const adminMetricsApp = createApp();
adminMetricsApp.use("/admin/metrics", requireAdmin);
adminMetricsApp.openapi(route, async (c) => {
  c.header("cache-control", "no-store");
  const [metrics, recommendations] = await Promise.all([collectMetrics(c.env), recommendationMetrics(c.env.DB)]);
  return c.json({ ...metrics, recommendations, memory: isolateMemory() }, 200);
});
