import { defineConfig } from "drizzle-kit";

// Generation only: migrations are applied by `wrangler d1 migrations apply DB` (locally and remotely).
export default defineConfig({
  dialect: "sqlite",
  schema: "./src/db/schema.ts",
  out: "./migrations",
});
