import { createRoute, z } from "@hono/zod-openapi";
import { createApp } from "../lib/validation";

const HealthSchema = z
  .object({
    status: z.literal("ok"),
    version: z.string().openapi({ example: "0.1.0" }),
    environment: z.string().openapi({ example: "development" }),
  })
  .openapi("Health");

const route = createRoute({
  method: "get",
  path: "/health",
  tags: ["Operations"],
  summary: "Liveness check with the deployed code version",
  responses: {
    200: { description: "The worker is up.", content: { "application/json": { schema: HealthSchema } } },
  },
});

export const healthApp = createApp().openapi(route, (c) => {
  c.header("cache-control", "no-store");
  return c.json({ status: "ok" as const, version: c.env.APP_VERSION, environment: c.env.ENVIRONMENT }, 200);
});
