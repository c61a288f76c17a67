/**
 * Promotions: a timeline of scheduled, active and ended promotions; create (with a preview of the SKUs it
 * matches and their prices before and after), edit and end early. Writes go through the admin promotion routes.
 */
import { z } from "zod";
import { allCatalogDbs } from "../db/partitions";
import { ApiError } from "../lib/errors";
import { now as clockNow } from "../lib/clock";
import { createApp } from "../lib/validation";
import { discountedAmount, type ValueType } from "../promotions/effective-price";
import { listPromotions, resolveTargets, view, type PromotionRow } from "../promotions/store";
import { TARGET_TYPES } from "../promotions/targets";
import { adminCall, done, formInput, operator, page, problemText, type ConsoleContext } from "./kit";
import { fmt, when, WriteForm } from "./ui";

export const promotionPages = createApp();

const DAY = 86_400_000;
const PAST = 7 * DAY;
const AHEAD = 21 * DAY;

type PromotionView = ReturnType<typeof view>;

async function allPromotions(dbs: readonly D1Database[], now: number): Promise<PromotionView[]> {
  const lists = await Promise.all((["active", "scheduled", "ended"] as const).map((status) => listPromotions(dbs, { status, limit: 100, now })));
  return lists
    .flat()
    .map((r: PromotionRow) => view(r, now))
    .sort((a, b) => Date.parse(a.starts_at) - Date.parse(b.starts_at));
}

function valueText(v: PromotionView["value"]): string {
  if (v.type === "percent_off") return `${(v.bps ?? 0) / 100}% off`;
  const amounts = Object.entries(v.amounts ?? {}).map(([cur, n]) => `${cur} ${(n / 100).toFixed(2)}`).join(", ");
  return v.type === "amount_off" ? `${amounts} off` : `fixed ${amounts}`;
}

function Timeline(props: { items: PromotionView[]; now: number }) {
  const from = props.now - PAST;
  const span = PAST + AHEAD;
  const x = (t: number) => Math.min(100, Math.max(0, ((t - from) / span) * 100));
  return (
    <ol class="timeline" id="timeline" aria-label="Promotions by start time">
      {props.items.map((p) => {
        const start = Date.parse(p.starts_at);
        const end = p.ends_at ? Date.parse(p.ends_at) : props.now + AHEAD;
        const left = x(start);
        const width = Math.max(0.8, x(end) - left);
        return (
          <li data-promotion={p.id}>
            <span>
              <span class={`badge ${p.status}`}>{p.status}</span>
            </span>
            <div>
              <a href={`/console/promotions/${encodeURIComponent(p.id)}`}>
                <strong>{p.name}</strong>
              </a>{" "}
              · {valueText(p.value)} · {p.target.type} {p.target.values.slice(0, 3).join(", ")}
              {p.target.values.length > 3 ? "…" : ""} · {fmt(p.target.matched_skus)} SKUs
              <div class="muted">
                {when(p.starts_at)} → {p.ends_at ? when(p.ends_at) : "open-ended"}
              </div>
              <svg class="bar" viewBox="0 0 100 4" preserveAspectRatio="none" width="100%" height="14" aria-hidden="true">
                <rect class={`st-${p.status}`} x={left.toFixed(2)} y="0" width={width.toFixed(2)} height="4"></rect>
                <line x1={x(props.now).toFixed(2)} x2={x(props.now).toFixed(2)} y1="0" y2="4" class="now"></line>
              </svg>
            </div>
          </li>
        );
      })}
    </ol>
  );
}

/** datetime-local values are taken as UTC (the console shows every time in UTC); seconds and milliseconds are kept. */
const LocalInstant = z.iso
  .datetime({ local: true, error: "must be a date and time that exists (YYYY-MM-DDTHH:MM, seconds optional)" })
  // Checked as a calendar date above (no 2026-02-30, no 25:00), so the Date below is always valid.
  .transform((s) => new Date(`${s}Z`).toISOString());
/** An optional datetime-local field: left empty, or an instant (a union would hide LocalInstant's message). */
const OptionalLocalInstant = z.preprocess((v) => (v === "" ? undefined : v), LocalInstant.optional());

/**
 * An instant as a datetime-local value, to the millisecond it is stored with: a value cut to the minute would move
 * the instant when the form is saved unchanged. `step` lets the browser show and submit that precision.
 */
function localInput(iso: string | null | undefined): { value: string; step: string } {
  if (!iso) return { value: "", step: "1" };
  const ms = iso.slice(20, 23);
  return ms && ms !== "000" ? { value: iso.slice(0, 23), step: "0.001" } : { value: iso.slice(0, 19), step: "1" };
}

const PromotionForm = z.object({
  name: z.string().trim().min(1).max(200),
  starts_at: LocalInstant,
  ends_at: OptionalLocalInstant,
  target_type: z.enum(TARGET_TYPES),
  target_values: z.string().trim().min(1).max(5000),
  value_type: z.enum(["percent_off", "amount_off", "fixed_price"]),
  percent: z.union([z.literal(""), z.coerce.number().min(0.01).max(100)]).optional(),
  amounts: z.string().trim().max(500).optional(),
  priority: z.coerce.number().int().min(-1_000_000).max(1_000_000).default(0),
  intent: z.enum(["preview", "create"]).default("preview"),
});
type PromotionFormInput = z.infer<typeof PromotionForm>;

function toApiBody(f: PromotionFormInput) {
  const values = f.target_values.split(/[\s,]+/).filter(Boolean);
  let value: { type: ValueType; bps?: number; amounts?: Record<string, number> };
  if (f.value_type === "percent_off") {
    if (f.percent === "" || f.percent === undefined) throw ApiError.badRequest("percent: required for a percent-off promotion.");
    value = { type: "percent_off", bps: Math.round(f.percent * 100) };
  } else {
    const amounts: Record<string, number> = {};
    for (const part of (f.amounts ?? "").split(/[\s,]+/).filter(Boolean)) {
      const m = /^([A-Za-z]{3})=(\d+(?:\.\d{1,2})?)$/.exec(part);
      if (!m) throw ApiError.badRequest(`amounts: '${part}' is not like USD=5.00.`);
      amounts[m[1]!.toUpperCase()] = Math.round(Number(m[2]) * 100);
    }
    if (!Object.keys(amounts).length) throw ApiError.badRequest("amounts: at least one, like USD=5.00, EUR=4.50.");
    value = { type: f.value_type, amounts };
  }
  return {
    name: f.name,
    starts_at: f.starts_at,
    ends_at: f.ends_at ? f.ends_at : null,
    target: { type: f.target_type, values },
    value,
    priority: f.priority,
  };
}

type Preview = { matched: number; products: number; rows: { sku: string; currency: string; before: number; after: number | null }[] };

async function preview(env: Env, body: ReturnType<typeof toApiBody>): Promise<Preview> {
  // Each catalog partition resolves the target over its own products and holds their prices.
  const dbs = allCatalogDbs(env);
  const targets = (await Promise.all(dbs.map((db) => resolveTargets(db, body.target)))).flat().sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0));
  const sample = JSON.stringify(targets.slice(0, 12).map((t) => t.sku));
  const results = targets.length
    ? (
        await Promise.all(
          dbs.map((db) =>
            db.prepare("SELECT sku, currency, amount FROM prices WHERE sku IN (SELECT value FROM json_each(?)) ORDER BY sku, currency")
              .bind(sample)
              .all<{ sku: string; currency: string; amount: number }>(),
          ),
        )
      )
        .flatMap((r) => r.results)
        .sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : a.currency < b.currency ? -1 : 1))
    : [];
  return {
    matched: targets.length,
    products: new Set(targets.map((t) => t.product_id)).size,
    rows: results.map((r) => ({ sku: r.sku, currency: r.currency, before: r.amount, after: discountedAmount(r.amount, body.value.type, body.value, r.currency) })),
  };
}

function PreviewTable({ p }: { p: Preview }) {
  const money = (n: number | null, cur: string) => (n === null ? "unchanged" : `${cur} ${(n / 100).toFixed(2)}`);
  return (
    <section class="panel" aria-labelledby="preview-h" id="preview">
      <h2 id="preview-h">
        Preview: <span data-figure="matched-skus">{fmt(p.matched)}</span> SKUs in {fmt(p.products)} products match
      </h2>
      {p.rows.length ? (
        <table>
          <caption class="sr-only">Prices before and after, first SKUs</caption>
          <thead>
            <tr>
              <th scope="col">SKU</th>
              <th scope="col">currency</th>
              <th scope="col" class="num">before</th>
              <th scope="col" class="num">after</th>
            </tr>
          </thead>
          <tbody>
            {p.rows.map((r) => (
              <tr>
                <td>{r.sku}</td>
                <td>{r.currency}</td>
                <td class="num">{money(r.before, r.currency)}</td>
                <td class="num">{money(r.after, r.currency)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p>Nothing matches: the promotion would be refused.</p>
      )}
    </section>
  );
}

function CreateForm(props: { c: ConsoleContext; f?: Partial<PromotionFormInput> & { starts_local?: string; ends_local?: string } }) {
  const op = operator(props.c);
  const f = props.f ?? {};
  const local = (iso: string | undefined) => localInput(iso).value;
  return (
    <WriteForm action="/console/promotions" csrf={op.csrf} role={op.session.role} label="Create a promotion">
      <label>
        Name
        <input name="name" required maxlength={200} value={f.name ?? ""} />
      </label>
      <label>
        Starts (UTC)
        <input name="starts_at" type="datetime-local" step="1" required value={f.starts_local ?? local(f.starts_at)} />
      </label>
      <label>
        Ends (UTC, optional)
        <input name="ends_at" type="datetime-local" step="1" value={f.ends_local ?? local(f.ends_at || undefined)} />
      </label>
      <label>
        Target
        <select name="target_type">
          {TARGET_TYPES.map((t) => (
            <option value={t} selected={f.target_type === t}>
              {t}
            </option>
          ))}
        </select>
      </label>
      <label>
        Target values (comma-separated)
        <input name="target_values" required value={f.target_values ?? ""} placeholder="cat-audio" />
      </label>
      <label>
        Discount
        <select name="value_type">
          {(["percent_off", "amount_off", "fixed_price"] as const).map((t) => (
            <option value={t} selected={f.value_type === t}>
              {t.replace("_", " ")}
            </option>
          ))}
        </select>
      </label>
      <label>
        Percent off
        <input name="percent" type="number" step="0.01" min="0.01" max="100" value={f.percent === undefined ? "" : String(f.percent)} />
      </label>
      <label>
        Amounts (USD=5.00, EUR=4.50)
        <input name="amounts" value={f.amounts ?? ""} />
      </label>
      <label>
        Priority
        <input name="priority" type="number" value={String(f.priority ?? 0)} />
      </label>
      <button type="submit" name="intent" value="preview" class="secondary">
        Preview
      </button>
      <button type="submit" name="intent" value="create">
        Create
      </button>
    </WriteForm>
  );
}

promotionPages.get("/console/promotions", async (c) => {
  const now = clockNow();
  const items = await allPromotions(allCatalogDbs(c.env), now);
  return page(
    c,
    "Promotions",
    <>
      <section class="panel" aria-labelledby="tl-h">
        <h2 id="tl-h">Timeline</h2>
        <p class="muted">
          Bars span {when(now - PAST)} → {when(now + AHEAD)}; now is {when(now)}.
        </p>
        {items.length ? <Timeline items={items} now={now} /> : <p>No promotions yet.</p>}
      </section>
      <section class="panel" aria-labelledby="new-h">
        <h2 id="new-h">New promotion</h2>
        <p class="muted">Preview first: it shows how many SKUs match and the price before and after for the first of them.</p>
        <CreateForm c={c} />
      </section>
    </>,
  );
});

promotionPages.post("/console/promotions", async (c) => {
  const f = await formInput(c, PromotionForm);
  const body = toApiBody(f);
  const raw = (await c.req.parseBody()) as Record<string, string>;
  const formState = { ...f, starts_local: raw.starts_at, ends_local: raw.ends_at };
  if (f.intent === "preview") {
    const p = await preview(c.env, body);
    return page(
      c,
      "Promotions · preview",
      <>
        <PreviewTable p={p} />
        <section class="panel" aria-labelledby="new-h">
          <h2 id="new-h">New promotion</h2>
          <CreateForm c={c} f={formState} />
        </section>
      </>,
    );
  }
  const res = await adminCall(c, "POST", "/admin/promotions", { ...body, currencies: [], markets: [] });
  if (res.status !== 201) {
    return page(
      c,
      "Promotions · not created",
      <section class="panel">
        <CreateForm c={c} f={formState} />
      </section>,
      res.status === 409 ? 409 : res.status === 422 ? 422 : 400,
      problemText(res),
    );
  }
  return done(c, "/console/promotions", `Created ${body.name}: ${String((res.body?.target as { matched_skus?: number })?.matched_skus ?? "")} SKUs.`);
});

promotionPages.get("/console/promotions/:id", async (c) => {
  const id = z.string().min(1).max(100).parse(c.req.param("id"));
  const res = await adminCall(c, "GET", `/admin/promotions/${encodeURIComponent(id)}`);
  if (res.status !== 200) throw ApiError.notFound(`No promotion ${id}.`);
  const p = res.body as unknown as PromotionView;
  const op = operator(c);
  const now = clockNow();
  const ends = localInput(p.ends_at);
  return page(
    c,
    `Promotion · ${p.name}`,
    <>
      <p>
        <span class={`badge ${p.status}`}>{p.status}</span> {valueText(p.value)} on {p.target.type} {p.target.values.join(", ")} ({fmt(p.target.matched_skus)} SKUs,{" "}
        {fmt(p.target.matched_products)} products), priority {p.priority}. {when(p.starts_at)} → {p.ends_at ? when(p.ends_at) : "open-ended"}. Version {p.version}.
      </p>
      <div class="cols">
        <section class="panel" aria-labelledby="edit-h">
          <h2 id="edit-h">Edit</h2>
          <WriteForm action={`/console/promotions/${encodeURIComponent(p.id)}/edit`} csrf={op.csrf} role={op.session.role} label="Edit promotion">
            <input type="hidden" name="if_match" value={String(p.version)} />
            <label>
              Name
              <input name="name" required maxlength={200} value={p.name} />
            </label>
            <label>
              Priority
              <input name="priority" type="number" value={String(p.priority)} />
            </label>
            <label>
              Ends (UTC, empty = open-ended)
              <input name="ends_at" type="datetime-local" value={ends.value} step={ends.step} />
            </label>
            <input type="hidden" name="ends_at_shown" value={ends.value} />
            <button type="submit">Save</button>
          </WriteForm>
        </section>
        {p.status !== "ended" ? (
          <section class="panel" aria-labelledby="end-h">
            <h2 id="end-h">End early</h2>
            <WriteForm action={`/console/promotions/${encodeURIComponent(p.id)}/end`} csrf={op.csrf} role={op.session.role} confirm={`End ${p.name} now?`} label="End promotion now">
              <input type="hidden" name="if_match" value={String(p.version)} />
              <button type="submit" class="danger">
                End now ({when(now)})
              </button>
            </WriteForm>
          </section>
        ) : null}
      </div>
      <p>
        <a href="/console/promotions">All promotions</a>
      </p>
    </>,
  );
});

const IfMatch = z.coerce.number().int().min(1);

promotionPages.post("/console/promotions/:id/edit", async (c) => {
  const id = z.string().min(1).max(100).parse(c.req.param("id"));
  const f = await formInput(
    c,
    z.object({
      if_match: IfMatch,
      name: z.string().trim().min(1).max(200),
      priority: z.coerce.number().int().min(-1_000_000).max(1_000_000),
      ends_at: OptionalLocalInstant,
      ends_at_shown: z.string().max(40).optional(),
    }),
  );
  // An end left as the page showed it is not sent: the stored instant stays exactly as it is (If-Match makes sure
  // the page showed the current one). The raw field is compared, since the parsed one is already an ISO string.
  const raw = (await c.req.parseBody()) as Record<string, unknown>;
  const endsChanged = f.ends_at_shown === undefined || raw.ends_at !== f.ends_at_shown;
  const patch = { name: f.name, priority: f.priority, ...(endsChanged ? { ends_at: f.ends_at || null } : {}) };
  const res = await adminCall(c, "PATCH", `/admin/promotions/${encodeURIComponent(id)}`, patch, { "if-match": `"${f.if_match}"` });
  if (res.status !== 200) return promotionProblem(c, id, res);
  return done(c, `/console/promotions/${encodeURIComponent(id)}`, `Saved (version ${String(res.body?.version)}).`);
});

promotionPages.post("/console/promotions/:id/end", async (c) => {
  const id = z.string().min(1).max(100).parse(c.req.param("id"));
  const f = await formInput(c, z.object({ if_match: IfMatch }));
  const res = await adminCall(c, "PATCH", `/admin/promotions/${encodeURIComponent(id)}`, { ends_at: new Date(clockNow()).toISOString() }, { "if-match": `"${f.if_match}"` });
  if (res.status !== 200) return promotionProblem(c, id, res);
  return done(c, "/console/promotions", `Ended ${String(res.body?.name)}.`);
});

function promotionProblem(c: ConsoleContext, id: string, res: Awaited<ReturnType<typeof adminCall>>) {
  const stale = res.status === 412;
  return page(
    c,
    stale ? "Promotion changed meanwhile" : "Promotion not saved",
    <p>
      {stale ? `Someone saved this promotion after you opened it (now version ${String(res.body?.current_version ?? "?")}). Nothing was written. ` : ""}
      <a href={`/console/promotions/${encodeURIComponent(id)}`}>Reload the promotion</a>
    </p>,
    stale ? 412 : res.status === 422 ? 422 : 400,
    problemText(res),
  );
}
