/**
 * The prepared bundle served by the Miniflare API directly: the same bindings as `wrangler dev` (read from
 * wrangler.toml and .dev.vars by wrangler's own `unstable_getMiniflareWorkerOptions`: D1, KV, Durable Objects,
 * Queues, rate limits, assets, Cache), but one workerd process and none of wrangler's extras: no proxy workerd,
 * no DevTools proxy, and no V8 inspector unless `inspectorPort` is given. The soak uses it to tell what the runtime
 * holds from what wrangler's tooling around it holds.
 *
 * Storage: `persist` is the same root as `wrangler dev --persist-to` (its `v3/` layout), so the seeded template
 * works unchanged. Note that miniflare's "in-memory" storage (`kvPersist: false`…) is not RAM: it is SQLite and blob
 * files in a temporary directory, so disk and "memory" differ only in where the files are.
 */
import { createWriteStream } from "node:fs";
import path from "node:path";
import type { Readable } from "node:stream";
import { Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";

export type MiniflareServerOptions = {
  port: number;
  /** The bundle of buildOnce (ES module). */
  entry: string;
  /** Persist root as for `wrangler dev --persist-to`. */
  persist: string;
  /** Plugins whose storage goes to miniflare's temporary directory instead of `persist` ("kv", "cache", "do"). */
  tmpStorage?: string[];
  /** Starts workerd with its V8 inspector on this port, as wrangler dev does (default: no inspector). */
  inspectorPort?: number;
  /** Variables set over wrangler.toml's, as `wrangler dev --var NAME:value`. */
  vars?: Record<string, string>;
  /** Where the Worker's console output goes (default: this process's stdout and stderr). */
  logFile?: string;
};

export async function startMiniflare(opts: MiniflareServerOptions): Promise<{ origin: string; stop: () => Promise<void>; pid: number }> {
  const { workerOptions } = unstable_getMiniflareWorkerOptions(path.resolve("wrangler.toml"));
  const tmp = new Set(opts.tmpStorage ?? []);
  const log = opts.logFile ? createWriteStream(opts.logFile) : undefined;
  const mf = new Miniflare({
    host: "127.0.0.1",
    port: opts.port,
    inspectorPort: opts.inspectorPort,
    defaultPersistRoot: path.join(opts.persist, "v3"),
    kvPersist: tmp.has("kv") ? false : undefined,
    cachePersist: tmp.has("cache") ? false : undefined,
    durableObjectsPersist: tmp.has("do") ? false : undefined,
    // One log line per request would cost the Node side more than the runtime's answer.
    logRequests: false,
    handleRuntimeStdio: log
      ? (stdout: Readable, stderr: Readable) => {
          stdout.pipe(log);
          stderr.pipe(log);
        }
      : undefined,
    workers: [{ ...workerOptions, bindings: { ...(workerOptions as { bindings?: Record<string, unknown> }).bindings, ...opts.vars }, name: "edgeshelf", modules: true, scriptPath: opts.entry, modulesRoot: path.dirname(opts.entry) }],
  } as ConstructorParameters<typeof Miniflare>[0]);
  const url = await mf.ready;
  return { origin: url.origin, stop: () => mf.dispose(), pid: process.pid };
}
