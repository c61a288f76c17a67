// Shared plumbing of the browser tests (widget, console): Debian's chromium installed or the test skipped, a quiet
// wrangler environment, a synchronous shell helper and a polling wait.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CHROMIUM = "/usr/bin/chromium";
export const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };

export function fail(msg) {
  throw new Error(msg);
}

/** Installs chromium when it is missing; exits 0 with a SKIP line (the only skip) when it cannot be installed. */
export function ensureChromium(name, log) {
  if (existsSync(CHROMIUM)) return;
  log("chromium missing; running scripts/install-chromium.sh");
  try {
    execFileSync("bash", [path.join(ROOT, "scripts/install-chromium.sh")], { stdio: "inherit" });
  } catch {
    /* reported below */
  }
  if (!existsSync(CHROMIUM)) {
    console.log(`SKIP ${name}: chromium is not installed and could not be installed here (apt-get failed); the browser test did not run.`);
    process.exit(0);
  }
}

export function sh(cmd, args) {
  return execFileSync(cmd, args, { cwd: ROOT, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

export async function waitFor(what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  fail(`timed out waiting for ${what}${last ? ` (${last.message})` : ""}`);
}

/** `api(method, path, body?, headers?)` against `origin` with the admin bearer; the body is parsed JSON, or the raw text. */
export function adminApi(origin, token) {
  return async function api(method, p, body, headers = {}) {
    const res = await fetch(origin + p, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}), ...headers },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: res.status, headers: res.headers, body: json };
  };
}
