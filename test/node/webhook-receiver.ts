/**
 * A real HTTP receiver for webhook tests, run in Node next to the Workers test pool (started by vitest.config.ts
 * on a free port, handed to the tests as WEBHOOK_RECEIVER_URL). It verifies every delivery with the
 * `standardwebhooks` package, as an integrator's receiver would, and records what it saw.
 *
 *   POST /hook/<mode>/<name>   a delivery; mode ok (204) | fail (500) | fail-first (503 the first time this endpoint
 *                              sees a webhook-id, then 204) | slow (answers 204 after 5 s)
 *   PUT  /__secret/<name>      the signing secret of endpoint <name> (body: the secret)
 *   GET  /__received?endpoint=<name>   what <name> received, in arrival order
 */
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

export type Received = {
  endpoint: string; mode: string; id: string; timestamp: string; verified: boolean; error?: string;
  status: number; at: number; payload: { type?: string; timestamp?: string; data?: Record<string, unknown> } | null;
};

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export async function startWebhookReceiver(): Promise<string> {
  const secrets = new Map<string, string>();
  const received: Received[] = [];
  const seen = new Set<string>();
  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? "/", "http://receiver");
      const parts = url.pathname.split("/").filter(Boolean);
      const body = await readBody(req);
      if (req.method === "PUT" && parts[0] === "__secret" && parts[1]) {
        secrets.set(parts[1], body);
        res.writeHead(204).end();
        return;
      }
      if (req.method === "GET" && parts[0] === "__received") {
        const name = url.searchParams.get("endpoint");
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(received.filter((r) => r.endpoint === name)));
        return;
      }
      if (req.method !== "POST" || parts[0] !== "hook" || !parts[1] || !parts[2]) {
        res.writeHead(404).end();
        return;
      }
      const [, mode, name] = parts as [string, string, string];
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      const entry: Received = {
        endpoint: name, mode, id: headers["webhook-id"] ?? "", timestamp: headers["webhook-timestamp"] ?? "", verified: false,
        status: 204, at: Date.now(), payload: null,
      };
      try {
        const secret = secrets.get(name);
        if (!secret) throw new Error(`no secret registered for ${name}`);
        entry.payload = new Webhook(secret).verify(body, headers) as Received["payload"];
        entry.verified = true;
      } catch (err) {
        entry.error = String(err);
      }
      if (mode === "fail") entry.status = 500;
      // Per endpoint: another endpoint receiving the same event first must not use up this one's first failure.
      const key = `${name}\n${entry.id}`;
      if (mode === "fail-first" && !seen.has(key)) entry.status = 503;
      seen.add(key);
      received.push(entry);
      if (mode === "slow") await new Promise((r) => setTimeout(r, 5_000));
      res.writeHead(entry.status).end();
    })().catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  // Never keeps the test process alive on its own.
  server.unref();
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
