import { createRoute, z } from "@hono/zod-openapi";
import { listDeadLetters, replayDeadLetters } from "../events/dead-letters";
import { requireAdmin } from "../lib/auth";
import { createApp } from "../lib/validation";

const DeadLetterSchema = z
  .object({
    id: z.string(),
    body: z.unknown(),
    attempts: z.number(),
    received_at: z.number(),
    replayed_at: z.number().nullable(),
  })
  .openapi("DeadLetter");

const listRoute = createRoute({
  method: "get",
  path: "/admin/events/dead-letters",
  tags: ["Admin: events"],
  summary: "List events that exhausted their retries",
  security: [{ adminToken: [] }],
  request: {
    query: z.object({
      status: z.enum(["pending", "all"]).default("pending").openapi({ description: "`pending`: not replayed yet." }),
      limit: z.coerce.number().int().min(1).max(500).default(100),
    }),
  },
  responses: {
    200: { description: "Newest first.", content: { "application/json": { schema: z.object({ items: z.array(DeadLetterSchema) }) } } },
  },
});

const replayRoute = createRoute({
  method: "post",
  path: "/admin/events/dead-letters/replay",
  tags: ["Admin: events"],
  summary: "Send dead letters back onto the EVENTS queue",
  description: "Without `ids`, replays every pending dead letter (oldest first, up to `limit`). Replayed letters are kept, marked `replayed_at`.",
  security: [{ adminToken: [] }],
  request: {
    body: {
      required: false,
      content: {
        "application/json": {
          schema: z.object({ ids: z.array(z.string().min(1)).max(500).optional(), limit: z.number().int().min(1).max(500).default(100) }),
        },
      },
    },
  },
  responses: {
    200: { description: "Replayed.", content: { "application/json": { schema: z.object({ replayed: z.number(), ids: z.array(z.string()) }) } } },
  },
});

export const adminEventsApp = createApp();
adminEventsApp.use("/admin/events/*", requireAdmin);

adminEventsApp
  .openapi(listRoute, async (c) => {
    const { status, limit } = c.req.valid("query");
    const items = await listDeadLetters(c.env, { pendingOnly: status === "pending", limit });
    c.header("cache-control", "no-store");
    return c.json({ items }, 200);
  })
  .openapi(replayRoute, async (c) => {
    // The body is optional: a POST without a JSON body replays everything pending.
    const body = c.req.valid("json") as { ids?: string[]; limit?: number } | undefined;
    const ids = await replayDeadLetters(c.env, body?.ids, body?.limit ?? 100);
    return c.json({ replayed: ids.length, ids }, 200);
  });
