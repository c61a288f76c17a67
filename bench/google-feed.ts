/**
 * The whole catalog for Merchant Center: one streamed google-xml / google-tsv response against walking the JSON
 * feed page by page (the baseline, measured in the same run), on a real `wrangler dev` (own port, own --persist-to).
 * Every request goes through the typed client (client/).
 *   npx tsx bench/google-feed.ts --products 5000 --rounds 5
 * Reports p50/p95/p99 of the time to the last byte (and to the first byte of the stream), bytes and items per
 * second, each as a ratio to the JSON walk.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createEdgeshelfClient } from "../client/src/index";
import { freshDatabase, startDevServer } from "./lib/dev-server";
import { fmt, percentile } from "./lib/stats";

const { values } = parseArgs({
  options: {
    products: { type: "string", default: "5000" },
    rounds: { type: "string", default: "5" },
    port: { type: "string", default: "8854" },
    "inspector-port": { type: "string", default: "9354" },
  },
});
const PERSIST = path.resolve(".wrangler/bench-google-feed");
const KEY = "demo-affiliate-key";

type Sample = { total: number; firstByte: number; bytes: number; items: number };

async function readStream(body: ReadableStream<Uint8Array>, started: number): Promise<{ bytes: number; firstByte: number; text: string }> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let bytes = 0;
  let firstByte = 0;
  let text = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (bytes === 0) firstByte = performance.now() - started;
    bytes += value.byteLength;
    text += decoder.decode(value, { stream: true });
  }
  return { bytes, firstByte, text };
}

async function main() {
  const products = Number(values.products);
  console.log(`seeding ${products} products into ${PERSIST}`);
  freshDatabase(PERSIST, products);
  const server = await startDevServer({ port: values.port, persist: PERSIST, inspectorPort: values["inspector-port"] });
  const client = createEdgeshelfClient({ baseUrl: server.origin, token: KEY });
  try {
    const jsonWalk = async (): Promise<Sample> => {
      const started = performance.now();
      let cursor: string | undefined;
      let items = 0;
      let bytes = 0;
      let firstByte = 0;
      do {
        const { data, response } = await client.GET("/v1/feeds/products", { params: { query: { format: "google", currency: "USD", limit: 1000, cursor } } });
        if (response.status !== 200 || !data) throw new Error(`json page answered ${response.status}`);
        if (firstByte === 0) firstByte = performance.now() - started;
        const page = data as { items: unknown[]; next_cursor: string | null; has_more: boolean };
        items += page.items.length;
        bytes += Number(response.headers.get("content-length") ?? JSON.stringify(data).length);
        cursor = page.has_more ? (page.next_cursor ?? undefined) : undefined;
      } while (cursor);
      return { total: performance.now() - started, firstByte, bytes, items };
    };
    const streamed = (format: "google-xml" | "google-tsv") => async (): Promise<Sample> => {
      const started = performance.now();
      const { response } = await client.GET("/v1/feeds/products", { params: { query: { format, currency: "USD" } }, parseAs: "stream" });
      if (response.status !== 200 || !response.body) throw new Error(`${format} answered ${response.status}`);
      const { bytes, firstByte, text } = await readStream(response.body, started);
      const items = format === "google-xml" ? text.split("<item>").length - 1 : text.split("\n").filter(Boolean).length - 1;
      return { total: performance.now() - started, firstByte, bytes, items };
    };
    const rows: [string, () => Promise<Sample>][] = [
      ["JSON `google` pages of 1,000 (baseline)", jsonWalk],
      ["google-xml, one streamed response", streamed("google-xml")],
      ["google-tsv, one streamed response", streamed("google-tsv")],
    ];
    await jsonWalk(); // warm the isolate and D1 pages
    const samples = new Map<string, Sample[]>(rows.map(([name]) => [name, []]));
    // Alternating rounds, so drift on a shared machine hits every row alike.
    for (let round = 0; round < Number(values.rounds); round++) for (const [name, run] of rows) samples.get(name)!.push(await run());

    const stats = rows.map(([name]) => {
      const s = samples.get(name)!;
      const totals = s.map((x) => x.total).sort((a, b) => a - b);
      const firsts = s.map((x) => x.firstByte).sort((a, b) => a - b);
      return { name, p50: percentile(totals, 50), p95: percentile(totals, 95), p99: percentile(totals, 99), first: percentile(firsts, 50), bytes: s[0]!.bytes, items: s[0]!.items };
    });
    const base = stats[0]!;
    const lines = [
      "# Google Merchant feed: one streamed file vs walking JSON pages",
      "",
      `Command: \`npx tsx bench/google-feed.ts --products ${products} --rounds ${values.rounds}\` (wrangler dev, local D1; ${new Date().toISOString()}; machine shared with other sessions, load average ${loadavg().map((l) => l.toFixed(1)).join(" / ")}).`,
      "Time to the last byte of the whole catalog in USD, through the typed client; rounds alternate between rows.",
      "",
      "| how | items | bytes | p50 ms | p95 ms | p99 ms | first byte p50 ms | p50 ÷ baseline | items/s |",
      "|---|---|---|---|---|---|---|---|---|",
      ...stats.map((r) => `| ${r.name} | ${r.items} | ${r.bytes} | ${fmt(r.p50, 0)} | ${fmt(r.p95, 0)} | ${fmt(r.p99, 0)} | ${fmt(r.first, 0)} | ${fmt(r.p50 / base.p50, 2)} | ${fmt((r.items / r.p50) * 1000, 0)} |`),
      "",
      `With ${values.rounds} rounds, p95 and p99 are the slowest samples. The streamed formats start sending after the first page of 1,000 products is read and never hold more than one page in memory.`,
      "",
    ];
    console.log(lines.join("\n"));
    mkdirSync("bench/results", { recursive: true });
    writeFileSync("bench/results/google-feed.md", lines.join("\n"));
  } finally {
    server.stop();
  }
}

await main();
