// Fails when src/worker-configuration.d.ts no longer matches wrangler.toml (`wrangler types --check`
// compares a hash of its own command line, which differs under --check, so compare the bodies instead).
import { execSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";

const tmp = "src/.worker-configuration.check.d.ts";
try {
  execSync(`npx --no-install wrangler types ${tmp} --include-runtime=false --strict-vars=false --env-file .dev.vars.example`, {
    stdio: "ignore",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
  const body = (f) => readFileSync(f, "utf8").split("\n").slice(2).join("\n");
  if (body(tmp) !== body("src/worker-configuration.d.ts")) {
    console.error("src/worker-configuration.d.ts is stale: run `npm run types` and commit it.");
    process.exit(1);
  }
  console.log("bindings types are current");
} finally {
  rmSync(tmp, { force: true });
}
