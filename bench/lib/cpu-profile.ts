/**
 * Samples the CPU of the Worker's isolate under `wrangler dev` (the Worker and its Durable Objects share it) through
 * the inspector port, and sums self time per function. Time spent outside JavaScript (SQLite, RPC plumbing, the
 * local KV/cache/queue services) shows up as "(program)" or in the native frame that waited for it, so read the
 * JavaScript rows as "what our code costs" and the rest as the runtime's share.
 *
 * Needs Node's WebSocket (`node --experimental-websocket`, built in from Node 22):
 *   NODE_OPTIONS=--experimental-websocket npx tsx bench/reserve/run.ts --phase measure --profile 4
 */
type CdpNode = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] };
type CdpProfile = { nodes: CdpNode[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number };

export type ProfileRow = { fn: string; where: string; selfMs: number; share: number };

/** Collects a profile for `ms` while the caller's load runs; resolves with the top rows by self time. */
export async function profileIsolate(inspectorPort: number, run: () => Promise<unknown>, top = 25): Promise<{ rows: ProfileRow[]; byFile: ProfileRow[]; totalMs: number }> {
  const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()) as { webSocketDebuggerUrl?: string; title?: string }[];
  const url = targets.find((t) => t.webSocketDebuggerUrl)?.webSocketDebuggerUrl;
  if (!url) throw new Error(`no inspector target on port ${inspectorPort}`);
  const WS = (globalThis as unknown as { WebSocket?: typeof WebSocket }).WebSocket;
  if (!WS) throw new Error("WebSocket is not available: run with NODE_OPTIONS=--experimental-websocket");
  // The inspector proxy of wrangler dev accepts local origins only; undici's WebSocket takes extra headers.
  const ws = new (WS as unknown as new (u: string, init: unknown) => WebSocket)(url, { headers: { origin: "http://localhost" } });
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = (e) => reject(new Error(`inspector: ${String((e as ErrorEvent).message ?? e)}`));
  });
  let nextId = 0;
  const pending = new Map<number, (v: unknown) => void>();
  ws.onmessage = (m) => {
    const msg = JSON.parse(String(m.data)) as { id?: number; result?: unknown };
    if (msg.id !== undefined) pending.get(msg.id)?.(msg.result);
  };
  const send = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<unknown>((resolve) => {
      const id = ++nextId;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: 200 });
  await send("Profiler.start");
  await run();
  const { profile } = (await send("Profiler.stop")) as { profile: CdpProfile };
  ws.close();

  const self = new Map<number, number>();
  profile.samples.forEach((node, i) => self.set(node, (self.get(node) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  /** A native frame (SQL exec, RPC, crypto) is named after the JavaScript function that called it. */
  const caller = (n: CdpNode): CdpNode => {
    let p = parent.get(n.id);
    while (p !== undefined && !byId.get(p)!.callFrame.url) p = parent.get(p);
    return p === undefined ? n : byId.get(p)!;
  };
  const totalMs = [...self.values()].reduce((a, b) => a + b, 0);
  const sum = (key: (n: CdpNode) => { fn: string; where: string }) => {
    const acc = new Map<string, ProfileRow>();
    for (const [id, ms] of self) {
      const k = key(byId.get(id)!);
      const name = `${k.fn}\u0000${k.where}`;
      const row = acc.get(name) ?? { ...k, selfMs: 0, share: 0 };
      row.selfMs += ms;
      acc.set(name, row);
    }
    return [...acc.values()].map((r) => ({ ...r, share: r.selfMs / totalMs })).sort((a, b) => b.selfMs - a.selfMs).slice(0, top);
  };
  const file = (u: string) => u.replace(/^.*\/(src|node_modules|durable-objects)\//, "$1/") || "(native)";
  return {
    rows: sum((n) => {
      if (n.callFrame.url || n.callFrame.functionName.startsWith("(")) return { fn: n.callFrame.functionName || "(anonymous)", where: `${file(n.callFrame.url)}:${n.callFrame.lineNumber + 1}` };
      const c = caller(n);
      return { fn: `${n.callFrame.functionName || "(native)"} ← ${c.callFrame.functionName || "(anonymous)"}`, where: `${file(c.callFrame.url)}:${c.callFrame.lineNumber + 1}` };
    }),
    byFile: sum((n) => ({ fn: file(n.callFrame.url), where: "" })),
    totalMs,
  };
}
