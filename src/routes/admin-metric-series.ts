import { createRoute, z } from "@hono/zod-openapi";
import { requireAdmin } from "../lib/auth";
import { createApp } from "../lib/validation";
import { sloReport } from "../metrics/slo";
import { flushPoints, LAG_BOUNDS, LATENCY_BOUNDS, minuteOf, perMinute, readPoints, RETENTION_MINUTES } from "../metrics/timeseries";

const security = [{ adminToken: [] }];

const seriesRoute = createRoute({
  method: "get",
  path: "/admin/metrics/series",
  tags: ["Admin: events"],
  summary: "Per-minute metric history (the console's sparklines and SLO windows)",
  description:
    "Counters per minute: `req.<class>.n` (requests), `req.<class>.err` (5xx), `req.<class>.h<i>` (latency histogram, bucket upper bounds in `latency_bounds_ms`), `tier.<edge|kv|d1|stale>`, `rsv.<201|409|429|503|other>` (reservation creates), `lag.n` and `lag.h<i>` (write → consume lag, `lag_bounds_ms`). Gauges (minute maximum): `g.outbox`, `g.dlq`, `g.hot`. Classes: browse, search, reserve, feed, admin, console, other. Kept 24 hours.",
  security,
  request: {
    query: z.object({
      prefix: z
        .string()
        .regex(/^[a-z0-9.]{1,40}(,[a-z0-9.]{1,40}){0,19}$/)
        .default("req.,tier.,rsv.,lag.,g.")
        .openapi({ description: "Comma-separated name prefixes." }),
      minutes: z.coerce.number().int().min(1).max(RETENTION_MINUTES).default(60),
    }),
  },
  responses: {
    200: {
      description: "One value per minute per series, oldest first.",
      content: {
        "application/json": {
          schema: z
            .object({
              from: z.string(),
              to: z.string(),
              latency_bounds_ms: z.array(z.number().nullable()),
              lag_bounds_ms: z.array(z.number().nullable()),
              series: z.record(z.string(), z.array(z.number())),
            })
            .openapi("MetricSeries"),
        },
      },
    },
  },
});

const Objective = z.object({
  id: z.string(),
  name: z.string(),
  scope: z.string(),
  target: z.number(),
  actual: z.number().nullable(),
  events: z.number(),
  bad: z.number(),
  budget_left: z.number().nullable().openapi({ description: "1 = untouched, 0 = spent, below 0 = overspent." }),
  budget_events_left: z.number().nullable(),
  status: z.enum(["met", "at_risk", "breached", "no_data"]),
});

const sloRoute = createRoute({
  method: "get",
  path: "/admin/slo",
  tags: ["Admin: events"],
  summary: "Service level objectives (from SLO_TARGETS) and their error budgets over the rolling window",
  security,
  responses: {
    200: {
      description: "Compliance per objective and route class.",
      content: {
        "application/json": {
          schema: z
            .object({
              config: z.record(z.string(), z.number()),
              window: z.object({ from: z.string(), to: z.string() }),
              objectives: z.array(Objective),
              burning: z.array(Objective),
            })
            .openapi("SloReport"),
        },
      },
    },
  },
});

// JSON has no Infinity: the last bucket's open upper bound is sent as null.
const bounds = (b: readonly number[]) => b.map((n) => (Number.isFinite(n) ? n : null));

export const adminMetricSeriesApp = createApp();
adminMetricSeriesApp.use("/admin/metrics/series", requireAdmin);
adminMetricSeriesApp.use("/admin/slo", requireAdmin);

adminMetricSeriesApp
  .openapi(seriesRoute, async (c) => {
    const { prefix, minutes } = c.req.valid("query");
    const now = Date.now();
    await flushPoints(c.env.DB, now);
    const to = minuteOf(now);
    const from = to - minutes + 1;
    const table = await readPoints(c.env.DB, from, to, prefix.split(","));
    const series = Object.fromEntries([...table.keys()].sort().map((name) => [name, perMinute(table, name, from, to)]));
    c.header("cache-control", "no-store");
    return c.json(
      { from: new Date(from * 60_000).toISOString(), to: new Date((to + 1) * 60_000).toISOString(), latency_bounds_ms: bounds(LATENCY_BOUNDS), lag_bounds_ms: bounds(LAG_BOUNDS), series },
      200,
    );
  })
  .openapi(sloRoute, async (c) => {
    await flushPoints(c.env.DB);
    const report = await sloReport(c.env);
    c.header("cache-control", "no-store");
    return c.json({ ...report, config: { ...report.config } }, 200);
  });
