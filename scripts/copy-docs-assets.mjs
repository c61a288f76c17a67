// Copies Swagger UI from the swagger-ui-dist package into public/docs/vendor/ (git-ignored), where Workers static
// assets serve it for /docs. Run by scripts/ensure-install.mjs (npm test, npm run dev), npm run deploy / deploy:dry and
// the API e2e test. Not a wrangler [build] step: vitest-pool-workers runs that too, and the test runtime's queue
// consumers then stopped seeing messages (recommendation orders were never counted). Node built-ins only.
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const from = path.join(root, "node_modules", "swagger-ui-dist");
const to = path.join(root, "public", "docs", "vendor");
const FILES = ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE", "NOTICE"];

if (!existsSync(from)) {
  console.error("copy-docs-assets: node_modules/swagger-ui-dist is missing; run npm install");
  process.exit(1);
}
mkdirSync(to, { recursive: true });
for (const file of FILES) if (existsSync(path.join(from, file))) copyFileSync(path.join(from, file), path.join(to, file));
