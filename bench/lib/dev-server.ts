/**
 * Shared plumbing for the benches that run against a real `wrangler dev`: a quiet wrangler environment,
 * `sh` for wrangler/tsx one-shots, a fresh local D1 (migrations + seed), a bundle built once, and a dev
 * server on its own port and `--persist-to`, awaited on /health and stopped by process group.
 */
import { execFileSync, spawn } from "node:child_process";
import { openSync, rmSync } from "node:fs";
import path from "node:path";

/** No metrics upload, no cf-object fetch: nothing leaves the machine and startup does not wait on the network. */
export const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };

/** Runs a locally installed CLI (`npx --no-install …`) with the quiet environment; output is captured. */
export const sh = (args: string[]) => execFileSync("npx", ["--no-install", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });

/** Deletes `persist`, applies the D1 migrations there and seeds `products` products (plus locations, categories, dev keys). */
export function freshDatabase(persist: string, products: number | string): void {
  rmSync(persist, { recursive: true, force: true });
  sh(["wrangler", "d1", "migrations", "apply", "DB", "--local", "--persist-to", persist]);
  sh(["tsx", "scripts/seed.ts", "--products", String(products), "--persist", persist]);
}

/**
 * Bundles the Worker once into `outdir` and returns the entry to serve. In a working tree others keep
 * editing, `wrangler dev` on src/ would rebuild and restart mid-run (dropping connections and in-memory state).
 */
export function buildOnce(outdir: string): string {
  rmSync(outdir, { recursive: true, force: true });
  sh(["wrangler", "deploy", "--dry-run", "--outdir", outdir]);
  return path.join(outdir, "index.js");
}

export type DevServerOptions = {
  port: number | string;
  persist: string;
  /** A bundle from buildOnce (served with --no-bundle); without it wrangler dev serves src/ from wrangler.toml. */
  entry?: string;
  /** `--inspector-port`: benches on a shared machine pass one from their own range (wrangler's default may be taken). */
  inspectorPort?: number | string;
  /** `--var NAME:value` pairs. */
  vars?: Record<string, string>;
  /** /health polls, 250 ms apart, before giving up waiting (the bench then goes on and its requests fail). */
  healthTries?: number;
  /** wrangler's own output goes to this file (default: discarded). */
  logFile?: string;
  /** `--log-level` (default: error). */
  logLevel?: string;
  /** Also exit (and so stop the server) on Ctrl-C; the server runs in its own process group and would survive it. */
  exitOnSigint?: boolean;
};

/** Starts `wrangler dev` detached in its own process group, stops it on exit, and waits for GET /health. */
export async function startDevServer(opts: DevServerOptions): Promise<{ origin: string; stop: () => void; pid: number }> {
  const port = String(opts.port);
  const origin = `http://127.0.0.1:${port}`;
  const args = ["--no-install", "wrangler", "dev"];
  if (opts.entry) args.push(opts.entry, "--no-bundle");
  args.push("--port", port, "--ip", "127.0.0.1", "--persist-to", opts.persist, "--log-level", opts.logLevel ?? "error");
  if (opts.inspectorPort !== undefined) args.push("--inspector-port", String(opts.inspectorPort));
  for (const [name, value] of Object.entries(opts.vars ?? {})) args.push("--var", `${name}:${value}`);
  const out = opts.logFile ? openSync(opts.logFile, "w") : "ignore";
  const dev = spawn("npx", args, { env, detached: true, stdio: ["ignore", out, out] });
  const stop = () => {
    try {
      process.kill(-dev.pid!, "SIGTERM");
    } catch {
      /* already gone */
    }
  };
  process.on("exit", stop);
  if (opts.exitOnSigint ?? true) process.on("SIGINT", () => process.exit(130));
  for (let i = 0; i < (opts.healthTries ?? 480); i++) {
    try {
      if ((await fetch(`${origin}/health`)).ok) break;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { origin, stop, pid: dev.pid! };
}
