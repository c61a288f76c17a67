/**
 * A minimal Chrome DevTools Protocol client for the Worker's isolate under `wrangler dev --inspector-port`:
 * the JS heap of the isolate (V8's own figure), separate from the workerd process's resident memory, so a bench
 * can tell what our code keeps from what the local runtime keeps natively (objects, SQLite pages, storage).
 */
import { execFileSync } from "node:child_process";
// ws ships no types; the few members used here are declared below.
// @ts-expect-error untyped module
import WebSocketUntyped from "ws";

type Socket = {
  on(event: "open" | "close" | "error", cb: (arg?: unknown) => void): void;
  on(event: "message", cb: (data: Buffer) => void): void;
  send(text: string): void;
  /** Bytes of events the runtime sent, per method (what wrangler's inspector proxy buffers while no DevTools is attached). */
  events: Map<string, { count: number; bytes: number }>;
  close(): void;
};
const WebSocket = WebSocketUntyped as new (url: string, opts?: { origin?: string }) => Socket;

export type HeapUsage = { usedSize: number; totalSize: number };

export type Inspector = {
  call<T = unknown>(method: string, params?: Record<string, unknown>): Promise<T>;
  heap(): Promise<HeapUsage>;
  /**
   * A full garbage collection: workerd does not answer `HeapProfiler.collectGarbage`, but V8 collects all garbage
   * before it takes a heap snapshot, so this takes one and drops its chunks (counted in `events`, not kept).
   */
  gc(): Promise<void>;
  /** Bytes of events the runtime sent, per method (what wrangler's inspector proxy buffers while no DevTools is attached). */
  events: Map<string, { count: number; bytes: number }>;
  close(): void;
};

type Target = { id: string; webSocketDebuggerUrl?: string };
const listTargets = async (port: number | string) =>
  (await (await fetch(`http://127.0.0.1:${port}/json/list`, { signal: AbortSignal.timeout(5000) })).json()) as Target[];

/**
 * Connects to the first target listed by the inspector at `port` (wrangler's proxy: the Worker's isolate), or to the
 * one whose id is `id` (workerd's own inspector lists every isolate of the process).
 */
export async function connectInspector(port: number | string, id?: string): Promise<Inspector> {
  const targets = await listTargets(port);
  const url = targets.find((t) => t.webSocketDebuggerUrl && (id === undefined || t.id === id))?.webSocketDebuggerUrl;
  if (!url) throw new Error(`no inspector target on port ${port}: ${JSON.stringify(targets)}`);
  return connectUrl(url);
}

/**
 * The isolates miniflare runs next to the Worker in the same workerd process (its Cache, KV, D1, Queues and assets
 * simulations, its entry worker), found on workerd's own inspector port (`--inspector-addr`, a random local port
 * of the workerd process `pid`). The Worker's own isolate is left out: wrangler's proxy holds its session.
 */
export async function connectRuntimeIsolates(pid: number): Promise<Map<string, Inspector>> {
  const ports = execFileSync("ss", ["-ltnpH"], { encoding: "utf8" })
    .split("\n")
    .filter((l) => l.includes(`pid=${pid},`))
    .map((l) => /127\.0\.0\.1:(\d+)/.exec(l)?.[1])
    .filter((p): p is string => !!p);
  for (const port of ports) {
    const targets = await listTargets(port).catch(() => undefined);
    if (!Array.isArray(targets)) continue;
    const out = new Map<string, Inspector>();
    for (const t of targets) {
      if (!t.webSocketDebuggerUrl || t.id.startsWith("core:user:")) continue;
      out.set(t.id, await connectUrl(t.webSocketDebuggerUrl));
    }
    return out;
  }
  return new Map();
}

async function connectUrl(url: string): Promise<Inspector> {
  // The inspector proxy of wrangler dev accepts local origins only.
  const ws = new WebSocket(url, { origin: "http://localhost" });
  await new Promise<void>((resolve, reject) => {
    setTimeout(() => reject(new Error("inspector did not open in 5 s")), 5000);
    ws.on("open", () => resolve());
    ws.on("error", (e) => reject(e as Error));
  });
  let id = 0;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const events = new Map<string, { count: number; bytes: number }>();
  ws.on("message", (data) => {
    const msg = JSON.parse(data.toString()) as { id?: number; method?: string; result?: unknown; error?: { message: string } };
    if (msg.id === undefined) {
      const e = events.get(msg.method ?? "?") ?? { count: 0, bytes: 0 };
      e.count++;
      e.bytes += data.length;
      events.set(msg.method ?? "?", e);
      return;
    }
    const w = waiting.get(msg.id);
    waiting.delete(msg.id);
    if (msg.error) w?.reject(new Error(msg.error.message));
    else w?.resolve(msg.result);
  });
  ws.on("close", () => {
    for (const w of waiting.values()) w.reject(new Error("inspector closed"));
    waiting.clear();
  });
  const call = <T>(method: string, params: Record<string, unknown> = {}, timeoutMs = 5_000) =>
    new Promise<T>((resolve, reject) => {
      const n = ++id;
      waiting.set(n, { resolve: resolve as (v: unknown) => void, reject });
      setTimeout(() => waiting.delete(n) && reject(new Error(`${method}: no answer in ${timeoutMs} ms`)), timeoutMs);
      ws.send(JSON.stringify({ id: n, method, params }));
    });
  const heap = () => call<HeapUsage>("Runtime.getHeapUsage");
  const gc = async () => {
    await call("HeapProfiler.takeHeapSnapshot", { reportProgress: false }, 120_000);
  };
  return {
    call,
    heap,
    gc,
    events,
    close: () => ws.close(),
  };
}
