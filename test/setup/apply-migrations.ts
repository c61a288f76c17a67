import { applyD1Migrations, env } from "cloudflare:test";
import { allCatalogDbs } from "../../src/db/partitions";

// Setup files run before each test file; applyD1Migrations only applies what is not applied yet. Every catalog
// partition has the same schema (only DB when CATALOG_PARTITIONS is 1: vitest.partitions.config.ts sets 2).
for (const db of allCatalogDbs(env)) await applyD1Migrations(db, env.TEST_MIGRATIONS);
