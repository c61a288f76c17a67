// Installs dependencies when they are missing or older than package-lock.json. Node built-ins only:
// this runs before anything is installed (first command on a fresh clone).
import { execSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";

const marker = "node_modules/.package-lock.json";
const stale = !existsSync(marker) || statSync("package-lock.json").mtimeMs > statSync(marker).mtimeMs + 1000;
if (stale) {
  console.log("edgeshelf: installing dependencies (npm ci)…");
  execSync("npm ci --no-audit --no-fund --loglevel=error", { stdio: "inherit" });
}

// Swagger UI for /docs, served from static assets (the files come from the swagger-ui-dist package).
execSync("node scripts/copy-docs-assets.mjs", { stdio: "inherit" });
