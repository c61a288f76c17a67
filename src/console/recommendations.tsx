/**
 * Recommendations: the rebuild with live progress (the panel refreshes itself every 2 s while the page is open),
 * and a pins editor per product (complementary, related, exclude) with If-Match, beside the stored lists it
 * shapes. Reads use the recommendation domain code; writes go through the admin recommendation routes.
 */
import { z } from "zod";
import { ApiError } from "../lib/errors";
import { createApp } from "../lib/validation";
import { recommendationMetrics } from "../recommendations/jobs";
import { pinsOf, type PinsView } from "../recommendations/manage-pins";
import { adminCall, done, formInput, operator, page, problemText, type ConsoleContext } from "./kit";
import { fmt, when, WriteForm } from "./ui";

export const recommendationPages = createApp();

const ProductId = z.string().trim().min(1).max(100);
const KINDS = ["complementary", "related", "exclude"] as const;
type Kind = (typeof KINDS)[number];

const ids = (text: string | undefined) =>
  (text ?? "")
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);

type Metrics = Awaited<ReturnType<typeof recommendationMetrics>>;

/** The rebuild panel alone: the page embeds it and its script swaps in a fresh copy every 2 s. */
function RebuildPanel(props: { m: Metrics }) {
  const run = props.m.rebuild_running;
  const last = props.m.last_rebuild;
  return (
    <section class="panel" id="rebuild" aria-labelledby="rebuild-h" data-refresh="/console/recommendations/progress" data-interval="2" data-state={run ? "running" : "idle"}>
      <h2 id="rebuild-h">Rebuild</h2>
      {run ? (
        <>
          <p id="rebuild-status" role="status">
            Running <code>{run.id}</code> since {when(run.started_at)}: {fmt(run.processed)} of {fmt(run.total)} products.
          </p>
          <progress id="rebuild-bar" max={Math.max(1, run.total)} value={Math.min(run.processed, Math.max(1, run.total))} aria-label="Rebuild progress"></progress>
        </>
      ) : (
        <p id="rebuild-status" role="status">
          No rebuild running.
          {last ? ` Last rebuild ${last.id} finished ${when(last.finished_at)}: ${fmt(last.processed)} of ${fmt(last.total)} products in ${fmt(last.duration_ms)} ms.` : " No rebuild has finished yet."}
        </p>
      )}
      <p class="muted">
        {fmt(props.m.dirty_products)} products wait for the incremental run (every cron tick)
        {props.m.last_incremental ? `; the last one, ${when(props.m.last_incremental.at)}, recomputed ${fmt(props.m.last_incremental.recomputed)}` : ""}.
      </p>
    </section>
  );
}

function StoredListTable(props: { title: string; list: PinsView["lists"]["related"] }) {
  return (
    <section class="panel" aria-label={`Stored ${props.title} list`}>
      <h3>{props.title}</h3>
      {props.list ? (
        <>
          <p class="muted">
            Version {props.list.version}, computed {when(props.list.computed_at)}.
          </p>
          <ol id={`list-${props.title}`}>
            {props.list.items.slice(0, 12).map((i) => (
              <li data-item={i.id}>
                <a href={`/console/products/${encodeURIComponent(i.id)}`}>{i.id}</a> · {i.reason} · {i.score.toFixed(3)}
              </li>
            ))}
          </ol>
        </>
      ) : (
        <p>Not computed yet.</p>
      )}
    </section>
  );
}

async function recommendationsPage(c: ConsoleContext, productId?: string, stale?: { seen: Record<Kind, string[]>; message: string }) {
  const op = operator(c);
  const [m, view] = await Promise.all([recommendationMetrics(c.env.DB), productId ? pinsOf(c.env, productId) : Promise.resolve(undefined)]);
  const pins = view?.pins;
  const diff = stale && view ? KINDS.filter((k) => JSON.stringify(stale.seen[k]) !== JSON.stringify(pins?.[k] ?? [])) : [];
  return page(
    c,
    "Recommendations",
    <>
      <RebuildPanel m={m} />
      <WriteForm action="/console/recommendations/rebuild" csrf={op.csrf} role={op.session.role} label="Start a rebuild">
        <span class="muted">Recomputes every active product's related and complementary lists in chunks; a running rebuild is not started twice.</span>
        <button type="submit">Rebuild all lists</button>
      </WriteForm>
      <section class="panel" aria-labelledby="pins-h">
        <h2 id="pins-h">Pins</h2>
        <form method="get" action="/console/recommendations" role="search" aria-label="Find a product's pins">
          <fieldset>
            <label for="pin-product">
              Product id
              <input id="pin-product" name="product" value={productId ?? ""} required maxlength={100} placeholder="p-000001" />
            </label>
            <button type="submit">Edit pins</button>
          </fieldset>
        </form>
        {view ? (
          <>
            {stale ? (
              <div class="problem" role="alert" id="stale">
                <h3>Not saved: the pins changed since you opened them (412)</h3>
                <p>{stale.message}</p>
                <ul>
                  {diff.map((k) => (
                    <li>
                      {k}: {stale.seen[k].join(", ") || "none"} → {(pins?.[k] ?? []).join(", ") || "none"}
                    </li>
                  ))}
                </ul>
                <p>The form shows the pins as they are now{pins ? ` (version ${pins.version})` : ""}.</p>
              </div>
            ) : null}
            <p>
              <a href={`/console/products/${encodeURIComponent(view.product_id)}`}>{view.product_id}</a>:{" "}
              {pins ? `pins version ${pins.version}` : "no pins yet"}. Pinned products come first, in this order; excluded ones are never recommended for it.
            </p>
            <WriteForm action={`/console/recommendations/${encodeURIComponent(view.product_id)}/pins`} csrf={op.csrf} role={op.session.role} label="Edit pins">
              <input type="hidden" name="if_match" value={pins ? String(pins.version) : ""} />
              <input type="hidden" name="seen" value={JSON.stringify(Object.fromEntries(KINDS.map((k) => [k, pins?.[k] ?? []])))} />
              {KINDS.map((k) => (
                <label>
                  {k === "exclude" ? "Never recommend (product ids)" : `Pinned ${k} (product ids, in order)`}
                  <textarea name={k} rows={3} cols={24} maxlength={5000}>
                    {(pins?.[k] ?? []).join("\n")}
                  </textarea>
                </label>
              ))}
              <button type="submit">Save pins</button>
            </WriteForm>
            <div class="cols">
              <StoredListTable title="complementary" list={view.lists.complementary} />
              <StoredListTable title="related" list={view.lists.related} />
            </div>
          </>
        ) : null}
      </section>
    </>,
    stale ? 412 : 200,
  );
}

recommendationPages.get("/console/recommendations", async (c) => {
  const raw = c.req.query("product");
  if (raw === undefined || raw.trim() === "") return recommendationsPage(c);
  const id = ProductId.safeParse(raw);
  if (!id.success) throw ApiError.badRequest("A product id is 1–100 characters.");
  return recommendationsPage(c, id.data);
});

recommendationPages.get("/console/recommendations/progress", async (c) => c.html(<RebuildPanel m={await recommendationMetrics(c.env.DB)} />));

recommendationPages.post("/console/recommendations/rebuild", async (c) => {
  const res = await adminCall(c, "POST", "/admin/recommendations/rebuild");
  if (res.status !== 202) return done(c, "/console/recommendations", `Not started: ${problemText(res)}`, "error");
  const started = res.body?.started === true;
  const job = res.body?.job as { id: string } | undefined;
  return done(c, "/console/recommendations", started ? `Rebuild ${job?.id} started.` : `Rebuild ${job?.id} is already running.`);
});

const SeenSchema = z.object({ complementary: z.array(z.string()), related: z.array(z.string()), exclude: z.array(z.string()) });

recommendationPages.post("/console/recommendations/:id/pins", async (c) => {
  const id = ProductId.parse(c.req.param("id"));
  const f = await formInput(
    c,
    z.object({ if_match: z.union([z.literal(""), z.coerce.number().int().min(1)]), seen: z.string().max(20_000), complementary: z.string().max(5000).optional(), related: z.string().max(5000).optional(), exclude: z.string().max(5000).optional() }),
  );
  let seen: Record<Kind, string[]>;
  try {
    seen = SeenSchema.parse(JSON.parse(f.seen));
  } catch {
    throw ApiError.badRequest("The form is damaged; reload the pins.");
  }
  const back = `/console/recommendations?product=${encodeURIComponent(id)}`;
  const body = { complementary: ids(f.complementary), related: ids(f.related), exclude: ids(f.exclude) };
  const res = await adminCall(c, "PUT", `/admin/products/${encodeURIComponent(id)}/recommendations`, body, f.if_match === "" ? {} : { "if-match": `"${f.if_match}"` });
  // 428: pins were created by someone else after the form (which had none) was loaded; the same story as a 412.
  if (res.status === 412 || res.status === 428) return recommendationsPage(c, id, { seen, message: problemText(res) });
  if (res.status !== 200) return done(c, back, `Not saved: ${problemText(res)}`, "error");
  const version = res.headers.get("etag")?.replace(/"/g, "");
  return done(c, back, `Pins saved (version ${version}); the product's lists were recomputed.`);
});
