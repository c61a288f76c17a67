/**
 * Products: list and search (drafts included), edit title, status and prices with If-Match, archive; imports
 * with an upload progress bar and their rejected lines. Writes go through the admin product and import routes.
 */
import { allCatalogDbs, catalogDb } from "../db/partitions";
import { z } from "zod";
import { listAdminProducts, listImports } from "../catalog/admin-list";
import { loadProductDocument, type ProductDocument } from "../catalog/document";
import { ApiError } from "../lib/errors";
import { createApp } from "../lib/validation";
import { supportedCurrencies } from "../catalog/locale";
import { adminCall, done, formInput, operator, page, problemText, type ConsoleContext } from "./kit";
import { fmt, when, WriteForm } from "./ui";

export const productPages = createApp();

const STATUSES = ["active", "draft", "archived"] as const;
const ProductId = z.string().min(1).max(100);
const money = (n: number | undefined, cur: string) => (n === undefined ? "–" : `${cur} ${(n / 100).toFixed(2)}`);

productPages.get("/console/products", async (c) => {
  const q = z
    .object({ q: z.string().max(200).optional(), status: z.enum(STATUSES).or(z.literal("")).optional(), cursor: z.string().max(100).optional() })
    .safeParse(c.req.query());
  if (!q.success) throw ApiError.badRequest("Bad search.");
  const status = q.data.status || undefined;
  const list = await listAdminProducts(allCatalogDbs(c.env), { q: q.data.q, status, after: q.data.cursor, limit: 50 });
  const cur = c.env.DEFAULT_CURRENCY;
  const next = list.next_cursor ? `/console/products?${new URLSearchParams({ ...(status ? { status } : {}), cursor: list.next_cursor })}` : null;
  return page(
    c,
    "Products",
    <>
      <form method="get" action="/console/products" role="search" aria-label="Search products">
        <fieldset>
          <label for="pq">
            Search (id, SKU or words)
            <input id="pq" name="q" value={q.data.q ?? ""} maxlength={200} />
          </label>
          <label for="ps">
            Status
            <select id="ps" name="status">
              <option value="">any</option>
              {STATUSES.map((s) => (
                <option value={s} selected={status === s}>
                  {s}
                </option>
              ))}
            </select>
          </label>
          <button type="submit">Search</button>
        </fieldset>
      </form>
      <p>
        <a href="/console/imports">Imports: upload a file, see rejected lines</a>
      </p>
      <table id="products">
        <caption class="sr-only">Products</caption>
        <thead>
          <tr>
            <th scope="col">id</th>
            <th scope="col">title</th>
            <th scope="col">brand</th>
            <th scope="col">status</th>
            <th scope="col" class="num">variants</th>
            <th scope="col" class="num">from ({cur})</th>
            <th scope="col" class="num">version</th>
            <th scope="col">updated</th>
          </tr>
        </thead>
        <tbody>
          {list.items.map((p) => (
            <tr data-product={p.id}>
              <td>
                <a href={`/console/products/${encodeURIComponent(p.id)}`}>{p.id}</a>
              </td>
              <td>{p.title}</td>
              <td>{p.brand}</td>
              <td>
                <span class={`badge ${p.status === "active" ? "active" : p.status === "draft" ? "scheduled" : "ended"}`}>{p.status}</span>
              </td>
              <td class="num">{p.variants}</td>
              <td class="num">{money(p.min_prices[cur], cur)}</td>
              <td class="num">{p.version}</td>
              <td>{when(p.updated_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {!list.items.length ? <p>No products match.</p> : null}
      {next ? (
        <p>
          <a href={next} rel="next">
            Next page
          </a>
        </p>
      ) : null}
    </>,
  );
});

type Seen = { title: string; status: string; prices: Record<string, Record<string, number>> };

function seenOf(doc: ProductDocument): Seen {
  return { title: doc.title, status: doc.status, prices: Object.fromEntries(doc.variants.map((v) => [v.sku, v.prices])) };
}

/** What differs between what the operator saw and the product now, as readable lines. */
function changes(seen: Seen, now: ProductDocument): string[] {
  const out: string[] = [];
  if (seen.title !== now.title) out.push(`title: "${seen.title}" → "${now.title}"`);
  if (seen.status !== now.status) out.push(`status: ${seen.status} → ${now.status}`);
  for (const v of now.variants) {
    for (const [cur, amount] of Object.entries(v.prices)) {
      const before = seen.prices[v.sku]?.[cur];
      if (before !== amount) out.push(`${v.sku} ${cur}: ${money(before, cur)} → ${money(amount, cur)}`);
    }
  }
  return out;
}

async function productPage(c: ConsoleContext, id: string, stale?: { seen: Seen; message: string }) {
  const op = operator(c);
  const doc = await loadProductDocument(catalogDb(c.env, id), id);
  if (!doc) throw ApiError.notFound(`No product ${id}.`);
  const currencies = supportedCurrencies(c.env);
  const diff = stale ? changes(stale.seen, doc) : [];
  return page(
    c,
    `Product · ${doc.title}`,
    <>
      {stale ? (
        <div class="problem" role="alert" id="stale">
          <h2>Not saved: the product changed since you opened it (412)</h2>
          <p>{stale.message}</p>
          {diff.length ? (
            <ul>
              {diff.map((d) => (
                <li>{d}</li>
              ))}
            </ul>
          ) : (
            <p>Fields you can edit here are unchanged; another field was edited.</p>
          )}
          <p>The form shows the product as it is now (version {doc.version}).</p>
        </div>
      ) : null}
      <p>
        <code>{doc.id}</code> · {doc.brand} · {doc.category_id} · version {doc.version} · updated {when(doc.updated_at)}
      </p>
      <section class="panel" aria-labelledby="edit-h">
        <h2 id="edit-h">Edit</h2>
        <WriteForm action={`/console/products/${encodeURIComponent(doc.id)}/edit`} csrf={op.csrf} role={op.session.role} label="Edit product">
          <input type="hidden" name="if_match" value={String(doc.version)} />
          <input type="hidden" name="seen" value={JSON.stringify(seenOf(doc))} />
          <label>
            Title
            <input name="title" value={doc.title} required maxlength={300} size={40} />
          </label>
          <label>
            Status
            <select name="status">
              {STATUSES.map((s) => (
                <option value={s} selected={doc.status === s}>
                  {s}
                </option>
              ))}
            </select>
          </label>
          <table>
            <caption>Regular prices (major units)</caption>
            <thead>
              <tr>
                <th scope="col">SKU</th>
                {currencies.map((cur) => (
                  <th scope="col">{cur}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {doc.variants.map((v) => (
                <tr>
                  <th scope="row">{v.sku}</th>
                  {currencies.map((cur) => (
                    <td>
                      <input
                        name={`price.${v.sku}.${cur}`}
                        type="number"
                        step="0.01"
                        min="0"
                        aria-label={`${v.sku} price in ${cur}`}
                        value={v.prices[cur] === undefined ? "" : (v.prices[cur] / 100).toFixed(2)}
                      />
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
          <button type="submit">Save</button>
        </WriteForm>
      </section>
      {doc.status !== "archived" ? (
        <section class="panel" aria-labelledby="arch-h">
          <h2 id="arch-h">Archive</h2>
          <WriteForm action={`/console/products/${encodeURIComponent(doc.id)}/archive`} csrf={op.csrf} role={op.session.role} confirm={`Archive ${doc.title}? Shoppers get 410 Gone.`} label="Archive product">
            <input type="hidden" name="if_match" value={String(doc.version)} />
            <button type="submit" class="danger">
              Archive
            </button>
          </WriteForm>
        </section>
      ) : null}
    </>,
    stale ? 412 : 200,
  );
}

productPages.get("/console/products/:id", async (c) => productPage(c, ProductId.parse(c.req.param("id"))));

const SeenSchema = z.object({ title: z.string(), status: z.string(), prices: z.record(z.string(), z.record(z.string(), z.number())) });

productPages.post("/console/products/:id/edit", async (c) => {
  const id = ProductId.parse(c.req.param("id"));
  const body = (await c.req.parseBody()) as Record<string, string>;
  const f = await formInput(c, z.object({ if_match: z.coerce.number().int().min(1), title: z.string().trim().min(1).max(300), status: z.enum(STATUSES), seen: z.string().max(100_000) }));
  let seen: Seen;
  try {
    seen = SeenSchema.parse(JSON.parse(f.seen));
  } catch {
    throw ApiError.badRequest("The form is damaged; reload the product.");
  }
  const variants = new Map<string, Record<string, number>>();
  for (const [name, value] of Object.entries(body)) {
    const m = /^price\.(.+)\.([A-Z]{3})$/.exec(name);
    if (!m || value === "") continue;
    const amount = Math.round(Number(value) * 100);
    if (!Number.isFinite(amount) || amount < 0) throw ApiError.badRequest(`${m[1]} ${m[2]}: not a price.`);
    // Only changed prices are sent: the patch merges per currency.
    if (seen.prices[m[1]!]?.[m[2]!] === amount) continue;
    variants.set(m[1]!, { ...(variants.get(m[1]!) ?? {}), [m[2]!]: amount });
  }
  const patch: Record<string, unknown> = {};
  if (f.title !== seen.title) patch.title = f.title;
  if (f.status !== seen.status) patch.status = f.status;
  if (variants.size) patch.variants = [...variants].map(([sku, prices]) => ({ sku, prices }));
  if (!Object.keys(patch).length) return done(c, `/console/products/${encodeURIComponent(id)}`, "Nothing changed.");
  const res = await adminCall(c, "PATCH", `/admin/products/${encodeURIComponent(id)}`, patch, { "if-match": `"${f.if_match}"` });
  if (res.status === 412) return productPage(c, id, { seen, message: problemText(res) });
  if (res.status !== 200) return done(c, `/console/products/${encodeURIComponent(id)}`, `Not saved: ${problemText(res)}`, "error");
  return done(c, `/console/products/${encodeURIComponent(id)}`, `Saved: version ${String(res.body?.version)}.`);
});

productPages.post("/console/products/:id/archive", async (c) => {
  const id = ProductId.parse(c.req.param("id"));
  const f = await formInput(c, z.object({ if_match: z.coerce.number().int().min(1) }));
  const res = await adminCall(c, "DELETE", `/admin/products/${encodeURIComponent(id)}`, undefined, { "if-match": `"${f.if_match}"` });
  if (res.status !== 200) return done(c, `/console/products/${encodeURIComponent(id)}`, `Not archived: ${problemText(res)}`, "error");
  return done(c, `/console/products/${encodeURIComponent(id)}`, "Archived: shoppers now get 410.");
});

// ---- imports ---------------------------------------------------------------------------------------------------

productPages.get("/console/imports", async (c) => {
  const op = operator(c);
  const imports = await listImports(c.env.DB, 20);
  return page(
    c,
    "Imports",
    <>
      <section class="panel" aria-labelledby="up-h">
        <h2 id="up-h">Upload</h2>
        <p class="muted">NDJSON (one product per line, as PUT /admin/products takes it) or CSV. All accepted lines are published together; rejected lines are listed afterwards.</p>
        <form method="post" action="/console/imports/form" enctype="multipart/form-data" data-upload="/console/imports" data-progress="up-bar" data-status="up-status" aria-label="Upload an import">
          <input type="hidden" name="_csrf" value={op.csrf} />
          <fieldset disabled={op.session.role !== "admin"}>
            <label for="up-file">
              File (.ndjson or .csv)
              <input id="up-file" name="file" type="file" accept=".ndjson,.jsonl,.csv,application/x-ndjson,text/csv" required />
            </label>
            <button type="submit">Upload and import</button>
          </fieldset>
          <progress id="up-bar" max="1" value="0" aria-label="Upload progress"></progress>
          <p id="up-status" role="status" aria-live="polite"></p>
        </form>
      </section>
      <section class="panel" aria-labelledby="list-h">
        <h2 id="list-h">Latest imports</h2>
        <table id="imports">
          <thead>
            <tr>
              <th scope="col">started</th>
              <th scope="col">status</th>
              <th scope="col">format</th>
              <th scope="col" class="num">lines</th>
              <th scope="col" class="num">accepted</th>
              <th scope="col" class="num">rejected</th>
            </tr>
          </thead>
          <tbody>
            {imports.map((i) => (
              <tr>
                <td>
                  <a href={`/console/imports/${i.import_id}`}>{when(i.created_at)}</a>
                </td>
                <td>{i.status}</td>
                <td>{i.format}</td>
                <td class="num">{fmt(i.total_lines)}</td>
                <td class="num">{fmt(i.accepted)}</td>
                <td class="num">{fmt(i.rejected_count)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </>,
  );
});

/** The upload itself (the page's script streams the file here with the CSRF token in a header). */
productPages.post("/console/imports", async (c) => {
  const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  const res = await adminCall(c, "POST", "/admin/import", c.req.raw.body ?? new ReadableStream(), { "content-type": type });
  return c.json(res.body ?? { detail: "import failed" }, res.status as 200);
});

/** Without scripts: a multipart form post of the same file (buffered, as multipart needs). */
productPages.post("/console/imports/form", async (c) => {
  const body = await c.req.parseBody();
  const file = body["file"];
  if (!(file instanceof File)) throw ApiError.badRequest("Choose a file.");
  const type = /\.csv$/i.test(file.name) ? "text/csv" : "application/x-ndjson";
  const res = await adminCall(c, "POST", "/admin/import", file.stream(), { "content-type": type });
  const id = res.body?.import_id;
  if (typeof id !== "string") return done(c, "/console/imports", `Import failed: ${problemText(res)}`, "error");
  return c.redirect(`/console/imports/${id}`, 303);
});

productPages.get("/console/imports/:id", async (c) => {
  const id = z.string().uuid().safeParse(c.req.param("id"));
  if (!id.success) throw ApiError.notFound("No such import.");
  const res = await adminCall(c, "GET", `/admin/imports/${id.data}`);
  if (res.status !== 200 || !res.body) throw ApiError.notFound("No such import.");
  const i = res.body as { status: string; total_lines: number; accepted: number; rejected_count: number; rejected: { line: number; error: string }[]; duplicate_of?: string; created_at: number; finished_at: number | null };
  const finished = i.finished_at !== null;
  return page(
    c,
    "Import",
    <>
      <p id="import-status">
        Status <strong>{i.status}</strong>: {fmt(i.accepted)} accepted, {fmt(i.rejected_count)} rejected of {fmt(i.total_lines)} lines. Started {when(i.created_at)}
        {finished ? `, finished ${when(i.finished_at)}` : ""}.{i.duplicate_of ? ` The same file was imported before (${i.duplicate_of}): nothing was written again.` : ""}
      </p>
      <progress max={Math.max(1, i.total_lines)} value={finished ? Math.max(1, i.total_lines) : i.accepted + i.rejected_count} aria-label="Import progress"></progress>
      <h2>Rejected lines</h2>
      {i.rejected.length ? (
        <table id="rejected">
          <thead>
            <tr>
              <th scope="col" class="num">line</th>
              <th scope="col">why</th>
            </tr>
          </thead>
          <tbody>
            {i.rejected.map((r) => (
              <tr>
                <td class="num">{r.line}</td>
                <td>{r.error}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p>None.</p>
      )}
      <p>
        <a href="/console/imports">All imports</a>
      </p>
    </>,
  );
});
