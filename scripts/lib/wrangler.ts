import { spawn } from "node:child_process";

/** Environment for every wrangler call: no telemetry, no Request.cf download (these machines are offline). */
export const QUIET_ENV = {
  ...process.env,
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
};

export function run(args: string[], opts: { capture?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("npx", ["--no-install", "wrangler", ...args], {
      env: QUIET_ENV,
      stdio: opts.capture ? ["ignore", "pipe", "pipe"] : ["ignore", "inherit", "inherit"],
    });
    let out = "";
    let err = "";
    child.stdout?.on("data", (d) => (out += d));
    child.stderr?.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`wrangler ${args.slice(0, 3).join(" ")} exited ${code}: ${err || out}`))));
  });
}

const persistArgs = (persistTo?: string) => (persistTo ? ["--persist-to", persistTo] : []);

export async function d1Execute(file: string, persistTo?: string): Promise<void> {
  await run(["d1", "execute", "DB", "--local", "--yes", "--file", file, ...persistArgs(persistTo)], { capture: true });
}

export async function d1Query<T>(sql: string, persistTo?: string): Promise<T[]> {
  const out = await run(["d1", "execute", "DB", "--local", "--json", "--command", sql, ...persistArgs(persistTo)], { capture: true });
  // WRANGLER_LOG below "log" would also silence the --json output, so it is left alone.
  const start = out.indexOf("[");
  if (start < 0) throw new Error(`wrangler d1 execute --json printed no JSON: ${out.slice(0, 200)}`);
  const parsed = JSON.parse(out.slice(start)) as { results: T[] }[];
  return parsed[0]?.results ?? [];
}

export async function applyMigrations(persistTo?: string): Promise<void> {
  await run(["d1", "migrations", "apply", "DB", "--local", ...persistArgs(persistTo)], { capture: true });
}
