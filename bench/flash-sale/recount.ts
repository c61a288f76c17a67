/**
 * "Recount during the storm": warehouse recounts (absolute sets) and damage (negative adjustments, each sent
 * twice as a feed retry would) arrive while shoppers buy one hot SKU split over K = 8 sub-shards, some of them
 * committing or releasing at once. Holds are promises: a write that takes the count below what is held must
 * say "oversold by N", and no unit may be oversold beyond what was said. After the storm the readers, the
 * hot-SKU totals and the ledger must reconcile. Used by bench/flash-sale/run.ts.
 */
import { fmt, statusJson } from "../lib/stats";

export type RecountOptions = {
  origin: string;
  admin: Record<string, string>;
  storefront: Record<string, string>;
  shoppers: number;
  seconds: number;
  connections: number;
  stock: number;
};

type Write = { kind: "set" | "damage" | "retry"; status: number; oversold: number; outcome?: string };

const SKU = "FLASH-RECOUNT";
const LOCATION = "loc-us-east";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function recountStorm(o: RecountOptions): Promise<{ markdown: string; beyond: number }> {
  const call = async (method: string, path: string, headers: Record<string, string>, body?: unknown) => {
    try {
      const res = await fetch(o.origin + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      return { status: res.status, body: text ? (JSON.parse(text) as any) : undefined };
    } catch {
      return { status: 0, body: undefined };
    }
  };
  const must = async (method: string, path: string, body?: unknown) => {
    const r = await call(method, path, o.admin, body);
    if (r.status !== 200 && r.status !== 201) throw new Error(`${method} ${path} → ${r.status}: ${JSON.stringify(r.body)}`);
    return r.body;
  };

  await must("PUT", "/admin/products/flash-recount", { slug: "flash-recount", title: "Flash recount", brand: "Bench", category_id: "cat-running", variants: [{ sku: SKU, prices: { USD: 1999, EUR: 1899, GBP: 1699 } }] });
  await must("PUT", `/admin/stock/${SKU}`, { location: LOCATION, on_hand: o.stock });
  await must("POST", `/admin/stock/${SKU}/hot`, { sub_shards: 8 });

  const shop = { holds: 0, commits: 0, releases: 0, statuses: new Map<number, number>() };
  const writes: Write[] = [];
  const end = performance.now() + o.seconds * 1000;

  const shopper = async () => {
    while (performance.now() < end) {
      const res = await call("POST", "/v1/reservations", { ...o.storefront, "idempotency-key": crypto.randomUUID(), "x-shopper-id": `recount-${Math.floor(Math.random() * o.shoppers)}` }, {
        items: [{ sku: SKU, quantity: 1 }],
        ttl_seconds: 3600,
      });
      shop.statuses.set(res.status, (shop.statuses.get(res.status) ?? 0) + 1);
      if (res.status !== 201) continue;
      shop.holds++;
      const roll = Math.random();
      // Some checkouts finish at once (the units leave the shelf at a sub-shard), a few are abandoned.
      if (roll < 0.3 && (await call("POST", `/v1/reservations/${res.body.id}/commit`, o.storefront, {})).status === 200) shop.commits++;
      else if (roll > 0.9 && (await call("DELETE", `/v1/reservations/${res.body.id}`, o.storefront)).status === 200) shop.releases++;
    }
  };

  const warehouse = async () => {
    let n = 0;
    while (performance.now() < end) {
      await sleep(600);
      n++;
      if (n % 2) {
        // Damage found on the shelf, sent by a feed that retries every message once.
        const line = { sku: SKU, location: LOCATION, delta: -(1 + Math.floor(Math.random() * 4)), reason: "damaged", event_id: crypto.randomUUID() };
        for (const kind of ["damage", "retry"] as const) {
          const r = await call("POST", "/admin/stock/adjustments", o.admin, [line]);
          const out = r.body?.results?.[0];
          writes.push({ kind, status: r.status, oversold: out?.oversold ?? 0, outcome: out?.status });
        }
      } else {
        // A recount: what the shelf holds now, usually a few units short of the books, sometimes a found box.
        const a = await call("GET", `/v1/availability?skus=${SKU}`, {});
        const onHand = a.body?.items?.[0]?.on_hand as number | undefined;
        if (onHand === undefined) continue;
        const counted = Math.max(0, onHand + (n % 6 === 0 ? 2 : -Math.floor(Math.random() * 4)));
        const r = await call("PUT", `/admin/stock/${SKU}`, o.admin, { location: LOCATION, on_hand: counted });
        writes.push({ kind: "set", status: r.status, oversold: r.body?.oversold ?? 0 });
      }
    }
  };

  const started = performance.now();
  await Promise.all([...Array.from({ length: o.connections }, shopper), warehouse()]);
  const seconds = (performance.now() - started) / 1000;
  // Let sub-shards report and any transfer sweeper run before reconciling.
  await sleep(3000);

  const avail = (await must("GET", `/v1/availability?skus=${SKU}&by_location=true`)).items[0] as { on_hand: number; reserved: number; available: number };
  const hot = (await must("GET", `/admin/stock/${SKU}/hot`)) as { totals: { on_hand: number; reserved: number; committed: number }; in_transit: number };
  const ledger: { kind: string; delta_on_hand: number; delta_reserved: number; reason: string | null }[] = [];
  let cursor: string | null = null;
  do {
    const page = (await must("GET", `/admin/stock/${SKU}/ledger?limit=1000${cursor ? `&cursor=${cursor}` : ""}`)) as { items: typeof ledger; next_cursor: string | null };
    ledger.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  const replay = ledger.reduce((t, l) => ({ on_hand: t.on_hand + l.delta_on_hand, reserved: t.reserved + l.delta_reserved }), { on_hand: 0, reserved: 0 });

  const live = shop.holds - shop.commits - shop.releases;
  const actual = Math.max(0, avail.reserved - Math.max(0, avail.on_hand)) + Math.max(0, -avail.on_hand);
  const applied = writes.filter((w) => w.status === 200);
  const lastReported = applied.at(-1)?.oversold ?? 0;
  const beyond = Math.max(0, actual - lastReported);
  const reported = applied.filter((w) => w.oversold > 0);
  const retries = writes.filter((w) => w.kind === "retry");
  const count = (k: Write["kind"]) => writes.filter((w) => w.kind === k).length;

  const markdown = `## Recount during the storm

${o.connections} shoppers buy one unit each of a hot SKU (K = 8, ${o.stock} units at ${LOCATION}) for ${fmt(seconds, 0)} s; 30 % commit at
once, 10 % release. Meanwhile the warehouse sends, every 0.6 s in turn, damage (\`POST /admin/stock/adjustments\`, −1…−4,
each message sent twice as a retrying feed would) and a recount (\`PUT /admin/stock/${SKU}\` with the count read from
availability, usually 0–3 units short, every third recount a found box of +2).

| | count |
|---|---|
| reservation answers | ${statusJson(shop.statuses)} |
| holds granted / committed / released / still held (client's books) | ${shop.holds} / ${shop.commits} / ${shop.releases} / ${live} |
| admin writes: recounts / damage / retried damage | ${count("set")} / ${count("damage")} / ${count("retry")} (statuses ${statusJson(new Map([...new Set(writes.map((w) => w.status))].map((s) => [s, writes.filter((w) => w.status === s).length])))}) |
| retried damage answered \`duplicate\` | ${retries.filter((w) => w.outcome === "duplicate").length} of ${retries.length} |
| writes that reported "oversold by N" | ${reported.length} (largest N ${Math.max(0, ...reported.map((w) => w.oversold))}, last write's N ${lastReported}) |

After the storm (3 s later):

- availability: on_hand ${avail.on_hand}, reserved ${avail.reserved}, available ${avail.available}; hot-SKU totals: on_hand ${hot.totals.on_hand}, reserved ${hot.totals.reserved}, committed ${hot.totals.committed}, in transit ${hot.in_transit}
- ledger replay (${ledger.length} rows of the ledger route): on_hand ${replay.on_hand}, reserved ${replay.reserved}${replay.on_hand === avail.on_hand && replay.reserved === avail.reserved ? " — matches availability" : " — **differs from availability**"}
- reserved ${avail.reserved === live ? "equals" : "**differs from**"} the client's own count of live holds (${live})
- units held beyond the physical count now: ${actual}; reported by the last admin write: ${lastReported}
- **oversold beyond what was reported: ${beyond}**
`;
  return { markdown, beyond };
}
