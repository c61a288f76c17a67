import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../env";

const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Honours a well-formed incoming `x-request-id` (so traces join up across hops) or makes one, and echoes it. */
export const requestId = createMiddleware<AppEnv>(async (c, next) => {
  const incoming = c.req.header("x-request-id");
  const id = incoming && SAFE_ID.test(incoming) ? incoming : crypto.randomUUID();
  c.set("requestId", id);
  c.header("x-request-id", id);
  await next();
});
