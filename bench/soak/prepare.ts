/**
 * Builds what the soak needs before the measured run (so the measured run, alone on the machine, only measures):
 *   npx tsx bench/soak/prepare.ts [--products 2000]
 * A seeded template database in .wrangler/soak-seed and the bundle in .wrangler/soak-build; bench/soak/run.ts
 * copies the template to a fresh state directory for every run.
 */
import { buildOnce, freshDatabase } from "../lib/dev-server";
import { SOAK_BUILD, SOAK_SEED } from "./paths";

const i = process.argv.indexOf("--products");
const products = i >= 0 ? process.argv[i + 1]! : "2000";
const t = Date.now();
freshDatabase(SOAK_SEED, products);
buildOnce(SOAK_BUILD);
console.log(`soak: seeded ${products} products into ${SOAK_SEED} and bundled into ${SOAK_BUILD} in ${((Date.now() - t) / 1000).toFixed(0)} s`);
