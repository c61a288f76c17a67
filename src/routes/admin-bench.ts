import { createRoute, z } from "@hono/zod-openapi";
import { requireAdmin } from "../lib/auth";
import { createApp } from "../lib/validation";
import { stockStub } from "../stock/routing";

const route = createRoute({
  method: "post",
  path: "/admin/bench/do-noop",
  tags: ["Admin: operations"],
  summary: "Baseline for benchmarks: one RPC to a StockShard that increments a SQLite counter",
  description:
    "The cheapest real Durable Object round trip (auth, routing, RPC, one durable write). `bench/reserve` reports reservation throughput and latency as ratios against it. Admin only.",
  security: [{ adminToken: [] }],
  responses: {
    200: { description: "The counter after the increment.", content: { "application/json": { schema: z.object({ value: z.number() }) } } },
    401: { description: "Missing or wrong admin token." },
  },
});

export const adminBenchApp = createApp();
adminBenchApp.use("/admin/bench/*", requireAdmin);
adminBenchApp.openapi(route, async (c) => {
  const value = await stockStub(c.env, "bench:noop").benchIncrement();
  return c.json({ value }, 200);
});
