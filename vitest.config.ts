import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [
    cloudflareTest(async () => {
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
            GOOGLE_SHIPPING: "US::Standard:4.99 USD; DE::Express:9.90 EUR",
            // Opt-in longer search of the stock model test: STOCK_MODEL_RUNS=200 npx vitest run test/stock-model.test.ts
            STOCK_MODEL_RUNS: process.env.STOCK_MODEL_RUNS ?? "",
          },
        },
      };
    }),
  ],
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: ["./test/setup/apply-migrations.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
