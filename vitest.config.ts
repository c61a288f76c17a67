import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";
import { startWebhookReceiver } from "./test/node/webhook-receiver";

let receiverUrl: Promise<string> | undefined;

/**
 * The Workers-pool configuration; `vars` override wrangler.toml's (vitest.partitions.config.ts runs its files with
 * CATALOG_PARTITIONS = 2, the other files keep the default of one catalog database).
 */
export function workersTestConfig(opts: { vars?: Record<string, string>; include: string[]; exclude?: string[] }) {
  return defineConfig({
    plugins: [
      cloudflareTest(async () => {
        // One receiver per run, on a free port, so parallel runs on one machine never collide.
        receiverUrl ??= startWebhookReceiver();
        const migrations = await readD1Migrations(path.join(import.meta.dirname, "migrations"));
        return {
          main: "./src/index.ts",
          wrangler: { configPath: "./wrangler.toml" },
          miniflare: {
            bindings: {
              TEST_MIGRATIONS: migrations,
              ADMIN_TOKEN: "test-admin-token",
              VIEWER_TOKEN: "test-viewer-token",
              // Low exact limits for two documentation IPs only, so the rate limiter is tested without throttling the suite.
              RATE_LIMIT_OVERRIDES: "ip:198.51.100.7 browse=5/10 search=5/10; ip:198.51.100.8 reserve=3/60",
              // Tight hoarding caps for one test storefront key only (test/flash-sale.test.ts).
              HOLD_CAP_OVERRIDES: "key-hoarder per_sku=2 total=3",
              // Immediate queue retries, so a failing message reaches the dead-letter queue within a test.
              QUEUE_RETRY_BASE_SECONDS: "0",
              // Merchant feeds' shipping: one rule per currency, so a test can see that only the feed's own applies.
              // Webhooks: a real local receiver, immediate retries, a short timeout (the slow-endpoint test) and an
              // auto-disable threshold above the queue's 6 attempts, so one failing delivery reaches the dead-letter queue first.
              WEBHOOK_RECEIVER_URL: await receiverUrl,
              WEBHOOK_RETRY_BASE_SECONDS: "0",
              WEBHOOK_TIMEOUT_MS: "1500",
              WEBHOOK_DISABLE_AFTER: "8",
              GOOGLE_SHIPPING: "US::Standard:4.99 USD; DE::Express:9.90 EUR",
              // Opt-in longer search of the stock model test: STOCK_MODEL_RUNS=200 npx vitest run test/stock-model.test.ts
              STOCK_MODEL_RUNS: process.env.STOCK_MODEL_RUNS ?? "",
              // Re-runs the search a long run printed: STOCK_MODEL_SEED=<seed> with the same STOCK_MODEL_RUNS.
              STOCK_MODEL_SEED: process.env.STOCK_MODEL_SEED ?? "",
              ...opts.vars,
            },
          },
        };
      }),
    ],
    test: {
      include: opts.include,
      exclude: [...(opts.exclude ?? []), "**/node_modules/**"],
      setupFiles: ["./test/setup/apply-migrations.ts"],
      testTimeout: 30_000,
      hookTimeout: 60_000,
    },
  });
}

export default workersTestConfig({ include: ["test/**/*.test.ts"], exclude: ["test/partitions/**"] });
