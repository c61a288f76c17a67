// `npm run dev`: install if needed, create .dev.vars, migrate, seed an empty database, then `wrangler dev`.
// Extra arguments go to wrangler (e.g. `npm run dev -- --test-scheduled`).
import { execSync, spawn } from "node:child_process";
import { copyFileSync, existsSync } from "node:fs";

execSync("node scripts/ensure-install.mjs", { stdio: "inherit" });

if (!existsSync(".dev.vars")) {
  copyFileSync(".dev.vars.example", ".dev.vars");
  console.log("edgeshelf: created .dev.vars from .dev.vars.example");
}

const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };
const sh = (cmd) => execSync(cmd, { stdio: "inherit", env });

console.log("edgeshelf: applying D1 migrations locally…");
sh("npx --no-install wrangler d1 migrations apply DB --local");
sh("npx --no-install tsx scripts/seed.ts --if-empty");

const child = spawn("npx", ["--no-install", "wrangler", "dev", "--port", "8787", ...process.argv.slice(2)], { stdio: "inherit", env });
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code) => process.exit(code ?? 0));
