/**
 * Stock page: one SKU's counts per location (strong read from its Durable Objects), set and adjust forms,
 * hot marking, and the low-stock and sold-out lists (from the availability projection).
 */
import { z } from "zod";
import { allCatalogDbs } from "../db/partitions";
import { ApiError } from "../lib/errors";
import { createApp } from "../lib/validation";
import { activeLocations, unknownLocations } from "../stock/locations";
import { readStockRows } from "../stock/availability";
import { hotStatus, markHot, MAX_SUB_SHARDS, unmarkHot } from "../stock/hot";
import { shardNameForSku, stockStub } from "../stock/routing";
import { holdsOfSku, type ShardHold } from "../stock/holds";
import { mergedLedger, type MergedLedgerRow } from "../stock/ledger";
import type { StockRow } from "../stock/types";
import { adminCall, done, formInput, operator, page, problemText, type ConsoleContext } from "./kit";
import { fmt, when, WriteForm } from "./ui";

export const stockPages = createApp();

const Sku = z.string().trim().min(1).max(128);
const Count = z.coerce.number().int().min(0).max(1_000_000_000);

/** How many of the newest out-of-stock rows the sold-out list looks at. */
const SOLD_OUT_CANDIDATES = 2000;

type LowRow = { sku: string; location_id: string; on_hand: number; reserved: number; available: number };
type SoldOutRow = { sku: string; at: number };

/**
 * Both lists over every catalog partition (a SKU's availability lives with its product): each partition answers
 * its own first 25, and the merge keeps the first 25 of all in the same order.
 */
async function lists(dbs: readonly D1Database[]): Promise<{ low: LowRow[]; soldOut: SoldOutRow[] }> {
  const parts = await Promise.all(dbs.map(listsIn));
  if (parts.length === 1) return parts[0]!;
  const bySku = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return {
    low: parts.flatMap((p) => p.low).sort((a, b) => a.available - b.available || bySku(a.sku, b.sku)).slice(0, 25),
    soldOut: parts.flatMap((p) => p.soldOut).sort((a, b) => b.at - a.at).slice(0, 25),
  };
}

async function listsIn(db: D1Database): Promise<{ low: LowRow[]; soldOut: SoldOutRow[] }> {
  const [low, soldOut] = await db.batch([
    db.prepare(
      `SELECT sku, location_id, on_hand, reserved, available FROM availability
       WHERE status = 'low_stock' ORDER BY available, sku LIMIT 25`,
    ),
    // A SKU is sold out when no location has anything sellable. Candidates are the newest out-of-stock rows only,
    // so the page costs the same at any catalog size: SKUs that sold out long ago drop off the list.
    db.prepare(
      `SELECT c.sku, max(c.updated_at) AS at
       FROM (SELECT sku, updated_at FROM availability WHERE status = 'out_of_stock'
             ORDER BY updated_at DESC LIMIT ${SOLD_OUT_CANDIDATES}) c
       WHERE NOT EXISTS (SELECT 1 FROM availability b WHERE b.sku = c.sku AND b.status != 'out_of_stock')
       GROUP BY c.sku ORDER BY at DESC LIMIT 25`,
    ),
  ]);
  return { low: low!.results as LowRow[], soldOut: soldOut!.results as SoldOutRow[] };
}

function Lists(props: { low: LowRow[]; soldOut: SoldOutRow[] }) {
  const link = (sku: string) => <a href={`/console/stock?sku=${encodeURIComponent(sku)}`}>{sku}</a>;
  return (
    <div class="cols">
      <section class="panel" aria-labelledby="low-h">
        <h2 id="low-h">Low stock</h2>
        <p class="muted">From the availability projection (updated by stock events, usually within a second).</p>
        {props.low.length ? (
          <table>
            <thead>
              <tr>
                <th scope="col">SKU</th>
                <th scope="col">location</th>
                <th scope="col" class="num">on hand</th>
                <th scope="col" class="num">reserved</th>
                <th scope="col" class="num">available</th>
              </tr>
            </thead>
            <tbody>
              {props.low.map((r) => (
                <tr>
                  <td>{link(r.sku)}</td>
                  <td>{r.location_id}</td>
                  <td class="num">{fmt(r.on_hand)}</td>
                  <td class="num">{fmt(r.reserved)}</td>
                  <td class="num">{fmt(r.available)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p>Nothing low.</p>
        )}
      </section>
      <section class="panel" aria-labelledby="sold-h">
        <h2 id="sold-h">Recently sold out</h2>
        {props.soldOut.length ? (
          <ul id="sold-out">
            {props.soldOut.map((r) => (
              <li>{link(r.sku)}</li>
            ))}
          </ul>
        ) : (
          <p>Nothing sold out.</p>
        )}
      </section>
    </div>
  );
}

function SkuSearch(props: { sku?: string }) {
  return (
    <form method="get" action="/console/stock" role="search" aria-label="Find a SKU">
      <fieldset>
        <label for="sku-q">
          SKU
          <input id="sku-q" name="sku" value={props.sku ?? ""} required maxlength={128} placeholder="SKU-000001-1" />
        </label>
        <button type="submit">Show stock</button>
      </fieldset>
    </form>
  );
}

const LEDGER_PAGE = 50;
const LedgerCursor = z.string().regex(/^\d{1,15}(\.\d{1,15}){0,64}$/);

/** Counts per location (for a hot SKU summed over home and sub-shards by the strong read), holds, a ledger page. */
async function rowsFor(env: Env, sku: string, ledgerCursor: string | undefined) {
  const [rows, hot, holds, ledger] = await Promise.all([
    readStockRows(env, [sku]),
    hotStatus(env, sku),
    holdsOfSku(env, sku, 100),
    mergedLedger(env, sku, ledgerCursor, LEDGER_PAGE, "desc"),
  ]);
  return { rows, hot, holds, ledger };
}

function countdown(ms: number): string {
  const left = Math.max(0, Math.round(ms / 1000));
  return left === 0 ? "expired" : `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
}

function Holds(props: { sku: string; holds: ShardHold[]; csrf: string; role: "admin" | "viewer"; now: number }) {
  if (!props.holds.length) return <p id="no-holds">No live holds.</p>;
  return (
    <table id="holds">
      <caption class="sr-only">Live holds of {props.sku}</caption>
      <thead>
        <tr>
          <th scope="col">reservation</th>
          <th scope="col" class="num">qty</th>
          <th scope="col">location</th>
          <th scope="col">expires in</th>
          <th scope="col">storefront key</th>
          <th scope="col">object</th>
          <th scope="col">action</th>
        </tr>
      </thead>
      <tbody>
        {props.holds.map((h) => (
          <tr data-reservation={h.reservation_id}>
            <td>
              <code>{h.reservation_id}</code>
            </td>
            <td class="num">{fmt(h.quantity)}</td>
            <td>{h.location}</td>
            <td>
              <time data-countdown={String(h.expires_at)} datetime={new Date(h.expires_at).toISOString()}>
                {countdown(h.expires_at - props.now)}
              </time>
            </td>
            <td>{h.holder ?? "–"}</td>
            <td>{h.shard}</td>
            <td>
              <WriteForm
                action={`/console/stock/${encodeURIComponent(props.sku)}/release`}
                csrf={props.csrf}
                role={props.role}
                confirm={`Force-release reservation ${h.reservation_id}? Every hold of it goes back to stock and the checkout loses it.`}
                label={`Force-release ${h.reservation_id}`}
              >
                <input type="hidden" name="reservation_id" value={h.reservation_id} />
                <button type="submit" class="danger">
                  Force-release
                </button>
              </WriteForm>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Movements(props: { items: MergedLedgerRow[] }) {
  if (!props.items.length) return <p>No movements yet.</p>;
  return (
    <table id="ledger">
      <caption class="sr-only">Stock movements, newest first</caption>
      <thead>
        <tr>
          <th scope="col">at</th>
          <th scope="col">kind</th>
          <th scope="col">location</th>
          <th scope="col" class="num">Δ on hand</th>
          <th scope="col" class="num">Δ reserved</th>
          <th scope="col" class="num">on hand after</th>
          <th scope="col">reason / reservation</th>
          <th scope="col">actor</th>
          <th scope="col">shard</th>
        </tr>
      </thead>
      <tbody>
        {props.items.map((m) => (
          <tr data-row={`${m.shard}#${m.id}`}>
            <td>{when(m.at)}</td>
            <td>{m.kind}</td>
            <td>{m.location}</td>
            <td class="num">{m.delta_on_hand}</td>
            <td class="num">{m.delta_reserved}</td>
            <td class="num">{m.on_hand_after}</td>
            <td>{m.reason ?? m.reservation_id ?? ""}</td>
            <td>{m.actor ?? ""}</td>
            <td>{m.shard}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function StockTable(props: { sku: string; rows: StockRow[] }) {
  const sum = (f: (r: StockRow) => number) => props.rows.reduce((n, r) => n + f(r), 0);
  return (
    <table id="stock-rows">
      <caption class="sr-only">Stock of {props.sku} per location</caption>
      <thead>
        <tr>
          <th scope="col">location</th>
          <th scope="col" class="num">on hand</th>
          <th scope="col" class="num">reserved</th>
          <th scope="col" class="num">safety</th>
          <th scope="col" class="num">available</th>
          <th scope="col" class="num">low-stock at</th>
        </tr>
      </thead>
      <tbody>
        {props.rows.map((r) => (
          <tr data-location={r.location}>
            <th scope="row">{r.location}</th>
            <td class="num" data-field="on_hand">{fmt(r.on_hand)}</td>
            <td class="num" data-field="reserved">{fmt(r.reserved)}</td>
            <td class="num">{fmt(r.safety_stock)}</td>
            <td class="num" data-field="available">{fmt(r.available)}</td>
            <td class="num">{fmt(r.low_stock)}</td>
          </tr>
        ))}
      </tbody>
      <tfoot>
        <tr>
          <th scope="row">all locations</th>
          <td class="num">{fmt(sum((r) => r.on_hand))}</td>
          <td class="num">{fmt(sum((r) => r.reserved))}</td>
          <td class="num">{fmt(sum((r) => r.safety_stock))}</td>
          <td class="num">{fmt(sum((r) => Math.max(0, r.available)))}</td>
          <td></td>
        </tr>
      </tfoot>
    </table>
  );
}

async function skuPage(c: ConsoleContext, sku: string, status: 200 | 412 = 200, stale?: { location: string; seen: Record<string, number> }, ledgerCursor?: string) {
  const op = operator(c);
  const [{ rows, hot, holds, ledger }, locations] = await Promise.all([rowsFor(c.env, sku, ledgerCursor), activeLocations(c.env)]);
  const skuUrl = `/console/stock?sku=${encodeURIComponent(sku)}`;
  const seq = rows[0]?.seq ?? 0;
  const eventId = `console-${crypto.randomUUID()}`;
  const now = stale ? rows.find((r) => r.location === stale.location) : undefined;
  return page(
    c,
    `Stock · ${sku}`,
    <>
      <SkuSearch sku={sku} />
      {stale ? (
        <div class="problem" role="alert" id="stale">
          <h2>Not saved: the stock changed since you loaded it (412)</h2>
          <p>Someone else (a checkout, a warehouse feed or another operator) changed {sku} after you opened the form. Nothing was written. What changed at {stale.location}:</p>
          <table>
            <thead>
              <tr>
                <th scope="col">field</th>
                <th scope="col" class="num">you saw</th>
                <th scope="col" class="num">now</th>
              </tr>
            </thead>
            <tbody>
              {(["on_hand", "reserved", "safety_stock"] as const).map((f) => (
                <tr class={now && stale.seen[f] !== now[f] ? "slo-at_risk" : undefined}>
                  <th scope="row">{f.replace("_", " ")}</th>
                  <td class="num">{fmt(stale.seen[f])}</td>
                  <td class="num">{fmt(now?.[f])}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <p>The form below shows the current figures; submit again if your change still applies.</p>
        </div>
      ) : null}
      <section class="panel" aria-labelledby="counts-h">
        <h2 id="counts-h">Per location</h2>
        <p class="muted">
          Strong read from the SKU's stock object (version {seq}){hot.hot ? `, summed with its ${hot.sub_shards} hot sub-shards` : ""}.
        </p>
        <StockTable sku={sku} rows={rows} />
        {hot.hot || hot.state ? (
          <p>
            Hot: {hot.sub_shards} sub-shards ({hot.state}); in total on hand {fmt(hot.totals.on_hand)}, reserved {fmt(hot.totals.reserved)}, available{" "}
            {fmt(hot.totals.available)}, free quotas {fmt(hot.totals.quotas)}, in transit {fmt(hot.in_transit)}.
          </p>
        ) : null}
      </section>
      <section class="panel" aria-labelledby="holds-h">
        <h2 id="holds-h">Live holds ({fmt(holds.reduce((n, h) => n + h.quantity, 0))} units)</h2>
        <Holds sku={sku} holds={holds} csrf={op.csrf} role={op.session.role} now={Date.now()} />
      </section>
      <div class="cols">
        <section class="panel" aria-labelledby="set-h">
          <h2 id="set-h">Set on hand</h2>
          {rows.map((r) => (
            <WriteForm action={`/console/stock/${encodeURIComponent(sku)}/set`} csrf={op.csrf} role={op.session.role} label={`Set stock at ${r.location}`}>
              <input type="hidden" name="location" value={r.location} />
              <input type="hidden" name="if_match" value={String(seq)} />
              <input type="hidden" name="seen_on_hand" value={String(r.on_hand)} />
              <input type="hidden" name="seen_reserved" value={String(r.reserved)} />
              <input type="hidden" name="seen_safety_stock" value={String(r.safety_stock)} />
              <strong>{r.location}</strong>
              <label>
                On hand
                <input name="on_hand" type="number" min={0} value={String(r.on_hand)} required />
              </label>
              <label>
                Safety stock
                <input name="safety_stock" type="number" min={0} value={String(r.safety_stock)} />
              </label>
              <button type="submit">Set</button>
            </WriteForm>
          ))}
        </section>
        <section class="panel" aria-labelledby="adj-h">
          <h2 id="adj-h">Adjust (movement)</h2>
          <WriteForm action={`/console/stock/${encodeURIComponent(sku)}/adjust`} csrf={op.csrf} role={op.session.role} label="Adjust stock">
            <input type="hidden" name="event_id" value={eventId} />
            <input type="hidden" name="if_match" value={String(seq)} />
            <input type="hidden" name="seen" value={JSON.stringify(Object.fromEntries(rows.map((r) => [r.location, { on_hand: r.on_hand, reserved: r.reserved, safety_stock: r.safety_stock }])))} />
            <label>
              Location
              <select name="location">
                {locations.map((l) => (
                  <option value={l.id} selected={stale?.location === l.id}>
                    {l.id}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Change (±units)
              <input name="delta" type="number" required />
            </label>
            <label>
              Reason
              <input name="reason" required maxlength={200} placeholder="damaged, recount, transfer…" />
            </label>
            <button type="submit">Apply</button>
          </WriteForm>
          <p class="muted">
            Applies only if the SKU has not changed since this page was loaded (If-Match, version {seq}); submitting the same form twice is recognised by its event id.
          </p>
          <h2>Hot SKU</h2>
          {hot.hot ? (
            <WriteForm action={`/console/stock/${encodeURIComponent(sku)}/unhot`} csrf={op.csrf} role={op.session.role} confirm={`Un-mark ${sku}? Free quotas fold back to the home shard.`} label="Un-mark hot">
              <button type="submit" class="secondary">
                Un-mark hot
              </button>
            </WriteForm>
          ) : (
            <WriteForm action={`/console/stock/${encodeURIComponent(sku)}/hot`} csrf={op.csrf} role={op.session.role} confirm={`Split ${sku}'s free stock into escrow sub-shards?`} label="Mark hot">
              <label>
                Sub-shards
                <input name="sub_shards" type="number" min={2} max={MAX_SUB_SHARDS} value="8" required />
              </label>
              <button type="submit">Mark hot</button>
            </WriteForm>
          )}
        </section>
      </div>
      <section class="panel" aria-labelledby="ledger-h">
        <h2 id="ledger-h">Ledger</h2>
        <p class="muted">
          Every movement of every object that ever held {sku} (home shard and hot sub-shards), merged in time order, newest first,{" "}
          {LEDGER_PAGE} per page{ledgerCursor ? " (an older page)" : ""}; the shard column names the object that wrote each row.
        </p>
        <Movements items={ledger.items} />
        <p>
          {ledgerCursor ? (
            <>
              <a href={`${skuUrl}#ledger-h`}>Newest movements</a>{" "}
            </>
          ) : null}
          {ledger.next_cursor ? (
            <a href={`${skuUrl}&ledger=${ledger.next_cursor}#ledger-h`} rel="next" id="ledger-older">
              Older movements
            </a>
          ) : null}
        </p>
      </section>
    </>,
    status,
  );
}

stockPages.get("/console/stock", async (c) => {
  const raw = c.req.query("sku");
  if (raw !== undefined && raw.trim() !== "") {
    const sku = Sku.safeParse(raw);
    if (!sku.success) throw ApiError.badRequest("A SKU is 1–128 characters.");
    const cursor = LedgerCursor.optional().safeParse(c.req.query("ledger") || undefined);
    if (!cursor.success) throw ApiError.badRequest("Bad ledger position.");
    return skuPage(c, sku.data, 200, undefined, cursor.data);
  }
  const l = await lists(allCatalogDbs(c.env));
  return page(
    c,
    "Stock",
    <>
      <SkuSearch />
      <Lists low={l.low} soldOut={l.soldOut} />
    </>,
  );
});

const SetForm = z.object({
  location: z.string().min(1).max(64),
  on_hand: Count,
  safety_stock: z.union([z.literal(""), Count]).optional(),
  if_match: z.coerce.number().int().min(0),
  seen_on_hand: z.coerce.number().int(),
  seen_reserved: z.coerce.number().int(),
  seen_safety_stock: z.coerce.number().int(),
});

stockPages.post("/console/stock/:sku/set", async (c) => {
  const sku = Sku.parse(c.req.param("sku"));
  const f = await formInput(c, SetForm);
  if ((await unknownLocations(c.env, [f.location])).length) throw ApiError.unprocessable(`Unknown location ${f.location}.`);
  const res = await stockStub(c.env, shardNameForSku(c.env, sku)).setStock({
    sku,
    location: f.location,
    on_hand: f.on_hand,
    safety_stock: f.safety_stock === "" || f.safety_stock === undefined ? undefined : f.safety_stock,
    actor: "console",
    expected_seq: f.if_match,
  });
  if (!res.ok && res.error === "unknown_skus") throw ApiError.unprocessable(`Unknown SKU: ${sku}.`);
  if (!res.ok) {
    return skuPage(c, sku, 412, { location: f.location, seen: { on_hand: f.seen_on_hand, reserved: f.seen_reserved, safety_stock: f.seen_safety_stock } });
  }
  return done(c, `/console/stock?sku=${encodeURIComponent(sku)}`, `Set ${sku} at ${f.location} to ${res.row.on_hand} on hand.`);
});

const Seen = z.record(z.string(), z.object({ on_hand: z.number(), reserved: z.number(), safety_stock: z.number() }));

const AdjustForm = z.object({
  location: z.string().min(1).max(64),
  delta: z.coerce.number().int().min(-1_000_000).max(1_000_000).refine((d) => d !== 0, "must not be 0"),
  reason: z.string().trim().min(1).max(200),
  event_id: z.string().regex(/^console-[0-9a-f-]{36}$/),
  if_match: z.coerce.number().int().min(0),
  seen: z.string().max(20_000),
});

/** Through the admin route with If-Match, so the console and the API refuse a stale movement the same way. */
stockPages.post("/console/stock/:sku/adjust", async (c) => {
  const sku = Sku.parse(c.req.param("sku"));
  const { if_match, seen: seenText, ...f } = await formInput(c, AdjustForm);
  let seen: z.infer<typeof Seen>;
  try {
    seen = Seen.parse(JSON.parse(seenText));
  } catch {
    throw ApiError.badRequest("The form is damaged; reload the SKU.");
  }
  const res = await adminCall(c, "POST", `/admin/stock/${encodeURIComponent(sku)}/adjustments`, f, { "if-match": `"${if_match}"` });
  if (res.status === 412) {
    const before = seen[f.location] ?? { on_hand: 0, reserved: 0, safety_stock: 0 };
    return skuPage(c, sku, 412, { location: f.location, seen: before });
  }
  if (res.status !== 200) return done(c, `/console/stock?sku=${encodeURIComponent(sku)}`, `Not applied: ${problemText(res)}`, "error");
  const r = res.body as { status: string; on_hand?: number; detail?: string };
  const msg =
    r.status === "applied"
      ? `Applied ${f.delta > 0 ? "+" : ""}${f.delta} at ${f.location}: ${r.on_hand} on hand.`
      : r.status === "duplicate"
        ? "Already applied (this form was submitted before); nothing changed."
        : `Refused: ${r.detail ?? "rejected"}.`;
  return done(c, `/console/stock?sku=${encodeURIComponent(sku)}`, msg, r.status === "rejected" ? "error" : "ok");
});

stockPages.post("/console/stock/:sku/hot", async (c) => {
  const sku = Sku.parse(c.req.param("sku"));
  const f = await formInput(c, z.object({ sub_shards: z.coerce.number().int().min(2).max(MAX_SUB_SHARDS) }));
  const s = await markHot(c.env, sku, f.sub_shards, "console");
  return done(c, `/console/stock?sku=${encodeURIComponent(sku)}`, `${sku} is hot: ${s.sub_shards} sub-shards.`);
});

stockPages.post("/console/stock/:sku/unhot", async (c) => {
  const sku = Sku.parse(c.req.param("sku"));
  await unmarkHot(c.env, sku, "console");
  return done(c, `/console/stock?sku=${encodeURIComponent(sku)}`, `${sku} is no longer hot; free quotas folded back.`);
});

stockPages.post("/console/stock/:sku/release", async (c) => {
  const sku = Sku.parse(c.req.param("sku"));
  const f = await formInput(c, z.object({ reservation_id: z.string().regex(/^rsv_\d{1,4}_[0-9a-f]{32}$/, "not a reservation id") }));
  const res = await adminCall(c, "POST", `/admin/reservations/${f.reservation_id}/release`);
  const back = `/console/stock?sku=${encodeURIComponent(sku)}`;
  if (res.status !== 200) return done(c, back, `Not released: ${problemText(res)}`, "error");
  return done(c, back, `Reservation ${f.reservation_id} force-released (${String(res.body?.status)}).`);
});
