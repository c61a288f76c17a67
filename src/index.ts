import { buildApp } from "./app";
import { handleQueue } from "./events/queue";
import { handleScheduled } from "./cron";

export { StockShard } from "../durable-objects/stock-shard";

const app = buildApp();

export default {
  fetch: app.fetch,
  queue: (batch, env, ctx) => handleQueue(batch, env, ctx),
  scheduled: (controller, env, ctx) => handleScheduled(controller, env, ctx),
} satisfies ExportedHandler<Env>;
