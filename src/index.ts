import { buildApp } from "./app";
import { handleQueue } from "./events/queue";
import { handleScheduled } from "./cron";
import { guardEnv } from "./lib/guarded-env";

export { StockShard } from "../durable-objects/stock-shard";
export { ClientGuard } from "../durable-objects/client-guard";
export { PromotionClock } from "../durable-objects/promotion-clock";

const app = buildApp();

export default {
  fetch: app.fetch,
  // Background handlers get the same bounded, breaker-guarded bindings as requests (src/lib/guarded-env.ts).
  queue: (batch, env, ctx) => handleQueue(batch, guardEnv(env, "background"), ctx),
  scheduled: (controller, env, ctx) => handleScheduled(controller, guardEnv(env, "background"), ctx),
} satisfies ExportedHandler<Env>;
