declare namespace Cloudflare {
  interface Env {
    TEST_MIGRATIONS: import("cloudflare:test").D1Migration[];
    /** Opt-in longer search of test/stock-model.test.ts (number of runs). */
    STOCK_MODEL_RUNS?: string;
    STOCK_MODEL_SEED?: string;
    /** The Node webhook receiver of this run (test/node/webhook-receiver.ts). */
    WEBHOOK_RECEIVER_URL: string;
  }
}
