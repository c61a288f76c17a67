// `npm run dev`: install if needed, create .dev.vars, migrate, seed an empty database, then `wrangler dev`.
// The port is 8787 unless `--port N` (or `--port=N`) or a PORT variable says otherwise; `--partitions N` runs the
// catalog over N D1 databases (DB, CATALOG_1 …; N = 1 or 2 locally, docs/storage.md); every other argument goes to
// wrangler (e.g. `npm run dev -- --port 8790 --test-scheduled`).
import { execSync, spawn } from "node:child_process";
import { copyFileSync, existsSync } from "node:fs";

/** Takes `--port` out of the arguments, so wrangler is never given two. */
function splitPort(args, fallback) {
  const rest = [];
  let port = fallback;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--port" && i + 1 < args.length) port = args[++i];
    else if (arg.startsWith("--port=")) port = arg.slice("--port=".length);
    else rest.push(arg);
  }
  if (!/^\d{1,5}$/.test(String(port)) || Number(port) < 1 || Number(port) > 65535) {
    console.error(`edgeshelf: --port / PORT must be a TCP port (1-65535), got ${JSON.stringify(port)}`);
    process.exit(2);
  }
  return { port: String(port), rest };
}

/** Takes `--partitions N` out of the arguments: the local catalog partitions (wrangler.toml declares DB and CATALOG_1). */
function splitPartitions(args) {
  const rest = [];
  let partitions = "1";
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--partitions" && i + 1 < args.length) partitions = args[++i];
    else if (arg.startsWith("--partitions=")) partitions = arg.slice("--partitions=".length);
    else rest.push(arg);
  }
  if (partitions !== "1" && partitions !== "2") {
    console.error(`edgeshelf: --partitions must be 1 or 2 locally (wrangler.toml declares DB and CATALOG_1), got ${JSON.stringify(partitions)}`);
    process.exit(2);
  }
  return { partitions: Number(partitions), rest };
}

const { partitions, rest: afterPartitions } = splitPartitions(process.argv.slice(2));
const { port, rest } = splitPort(afterPartitions, process.env.PORT || "8787");

execSync("node scripts/ensure-install.mjs", { stdio: "inherit" });

if (!existsSync(".dev.vars")) {
  copyFileSync(".dev.vars.example", ".dev.vars");
  console.log("edgeshelf: created .dev.vars from .dev.vars.example");
}

const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };
const sh = (cmd) => execSync(cmd, { stdio: "inherit", env });

console.log("edgeshelf: applying D1 migrations locally…");
sh("npx --no-install wrangler d1 migrations apply DB --local");
if (partitions > 1) {
  sh("npx --no-install wrangler d1 migrations apply CATALOG_1 --local");
  sh(`npx --no-install tsx scripts/seed.ts --if-empty --partitions ${partitions}`);
} else {
  sh("npx --no-install tsx scripts/seed.ts --if-empty");
}

const vars = partitions > 1 ? ["--var", `CATALOG_PARTITIONS:${partitions}`] : [];
const child = spawn("npx", ["--no-install", "wrangler", "dev", "--port", port, ...vars, ...rest], { stdio: "inherit", env });
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code) => process.exit(code ?? 0));
