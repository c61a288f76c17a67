import { createRoute, z } from "@hono/zod-openapi";
import { createApp } from "../lib/validation";
import { readStockRows, summarise } from "../stock/availability";

const MAX_SKUS = 100;
const Status = z.enum(["in_stock", "low_stock", "out_of_stock"]);
const Counts = { on_hand: z.number(), reserved: z.number(), available: z.number(), status: Status };

const AvailabilitySchema = z
  .object({
    items: z.array(
      z.object({
        sku: z.string(),
        ...Counts,
        seq: z.number().openapi({ description: "Per-SKU sequence of the last stock change." }),
        locations: z.array(z.object({ location: z.string(), ...Counts })).optional(),
      }),
    ),
  })
  .openapi("Availability");

const route = createRoute({
  method: "get",
  path: "/v1/availability",
  tags: ["Stock"],
  summary: "Live stock, read strongly from the owning shards",
  description: `Up to ${MAX_SKUS} SKUs; each shard is asked once. Counts are summed over locations unless \`by_location=true\`. Not cached.`,
  request: {
    query: z.object({
      skus: z
        .string()
        .min(1)
        .transform((s) => [...new Set(s.split(",").map((x) => x.trim()).filter(Boolean))])
        .pipe(z.array(z.string().min(1).max(128)).min(1).max(MAX_SKUS))
        .openapi({ example: "SKU-000001-1,SKU-000002-1", type: "string" }),
      by_location: z.enum(["true", "false"]).optional(),
    }),
  },
  responses: {
    200: { description: "Live counts.", content: { "application/json": { schema: AvailabilitySchema } } },
    400: { description: "No SKUs or too many." },
    422: { description: "Unknown SKUs (`unknown_skus`)." },
  },
});

export const availabilityApp = createApp().openapi(route, async (c) => {
  const { skus, by_location } = c.req.valid("query");
  const rows = await readStockRows(c.env, skus);
  c.header("cache-control", "no-store");
  return c.json({ items: summarise(skus, rows, by_location === "true") }, 200);
});
