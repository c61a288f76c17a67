/**
 * Affiliates: list (scope, usable keys, click counts) and create; per affiliate, edit scope and status with
 * If-Match, rotate keys (the new key is shown once, on the answer to the post, never stored or redirected) and
 * revoke them. Reads use the affiliate domain code, writes go through the admin affiliate routes.
 */
import { z } from "zod";
import type { Affiliate, AffiliateScope } from "../affiliates/account";
import { affiliateClicks, affiliateWithKeys, listAffiliates, type KeyInfo } from "../affiliates/manage-affiliates";
import { ApiError } from "../lib/errors";
import { createApp } from "../lib/validation";
import { adminCall, done, formInput, operator, page, problemText, type ConsoleContext } from "./kit";
import { fmt, Sparkline, when, WriteForm } from "./ui";

export const affiliatePages = createApp();

const AffiliateId = z.string().min(1).max(64);
const GRACE = [
  [0, "at once"],
  [3600, "in 1 hour"],
  [86_400, "in 1 day"],
  [7 * 86_400, "in 7 days"],
] as const;

/** Comma- or line-separated values of a text field, as a list (empty entries dropped). */
const list = (text: string | undefined) =>
  (text ?? "")
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter(Boolean);

function scopeText(scope: AffiliateScope): string {
  const parts = [
    scope.categories?.length ? `categories ${scope.categories.join(", ")}` : "",
    scope.brands?.length ? `brands ${scope.brands.join(", ")}` : "",
    scope.skus?.length ? `${fmt(scope.skus.length)} SKUs` : "",
  ].filter(Boolean);
  return parts.length ? parts.join("; ") : "whole catalog";
}

function NewKey(props: { affiliate: string; keyText: string; prefix: string }) {
  return (
    <div class="problem key-once" role="alert" id="new-key-box">
      <h2>New key for {props.affiliate}: copy it now</h2>
      <p>
        It is shown this once. Only its SHA-256 hash is stored; reloading this page will not show it again. Its prefix <code>{props.prefix}</code> identifies it
        below.
      </p>
      <p>
        <label for="new-key">
          API key
          <input id="new-key" readonly value={props.keyText} size={60} />
        </label>
      </p>
    </div>
  );
}

function ScopeFields(props: { scope?: AffiliateScope }) {
  return (
    <>
      <label>
        Categories (comma-separated; subcategories included)
        <input name="categories" value={(props.scope?.categories ?? []).join(", ")} maxlength={5000} size={30} />
      </label>
      <label>
        Brands
        <input name="brands" value={(props.scope?.brands ?? []).join(", ")} maxlength={5000} size={30} />
      </label>
      <label>
        SKUs (one per line or comma-separated)
        <textarea name="skus" rows={2} cols={30} maxlength={200_000}>
          {(props.scope?.skus ?? []).join("\n")}
        </textarea>
      </label>
    </>
  );
}

const scopeOf = (f: { categories?: string; brands?: string; skus?: string }): AffiliateScope => {
  const scope: AffiliateScope = {};
  const [categories, brands, skus] = [list(f.categories), list(f.brands), list(f.skus)];
  if (categories.length) scope.categories = categories;
  if (brands.length) scope.brands = brands;
  if (skus.length) scope.skus = skus;
  return scope;
};

async function listPage(c: ConsoleContext, created?: { affiliate: string; key: string; prefix: string }) {
  const op = operator(c);
  const cursor = z.string().max(64).optional().safeParse(c.req.query("cursor"));
  if (!cursor.success) throw ApiError.badRequest("Bad cursor.");
  const { items, next_cursor } = await listAffiliates(c.env.DB, { after: cursor.data, limit: 50 });
  return page(
    c,
    "Affiliates",
    <>
      {created ? <NewKey affiliate={created.affiliate} keyText={created.key} prefix={created.prefix} /> : null}
      <table id="affiliates">
        <caption class="sr-only">Affiliates</caption>
        <thead>
          <tr>
            <th scope="col">affiliate</th>
            <th scope="col">tracking id</th>
            <th scope="col">status</th>
            <th scope="col">scope</th>
            <th scope="col">usable keys</th>
            <th scope="col" class="num">clicks 24 h</th>
            <th scope="col" class="num">clicks 7 d</th>
            <th scope="col" class="num">clicks 30 d</th>
          </tr>
        </thead>
        <tbody>
          {items.map((i) => (
            <tr data-affiliate={i.affiliate.id}>
              <td>
                <a href={`/console/affiliates/${encodeURIComponent(i.affiliate.id)}`}>{i.affiliate.name}</a> <code>{i.affiliate.id}</code>
              </td>
              <td>{i.affiliate.tracking_id}</td>
              <td>
                <span class={`badge ${i.affiliate.status === "active" ? "active" : "ended"}`}>{i.affiliate.status}</span>
              </td>
              <td>{scopeText(i.affiliate.scope)}</td>
              <td>
                {i.keys.length
                  ? i.keys.map((k) => (
                      <span>
                        <code>{k.prefix}…</code> {k.state === "expiring" ? `(expires ${when(k.expires_at)})` : ""}{" "}
                      </span>
                    ))
                  : "none"}
                {i.retired_keys ? <span class="muted"> · {i.retired_keys} retired</span> : null}
              </td>
              <td class="num" data-field="clicks_24h">{fmt(i.clicks.last_24h)}</td>
              <td class="num">{fmt(i.clicks.last_7d)}</td>
              <td class="num">
                {fmt(i.clicks.last_30d)}
                {i.clicks.capped ? "+" : ""}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {!items.length ? <p>No affiliates yet.</p> : null}
      {next_cursor ? (
        <p>
          <a href={`/console/affiliates?${new URLSearchParams({ cursor: next_cursor })}`} rel="next">
            Next page
          </a>
        </p>
      ) : null}
      <p class="muted">
        Clicks are the redirects through <code>/r/&lt;tracking id&gt;/&lt;product&gt;</code>, counted from the D1 <code>clicks</code> table: every click outside
        production; in production it only holds clicks whose Analytics Engine write failed (the full count is the <code>edgeshelf_clicks</code> dataset).
      </p>
      <section class="panel" aria-labelledby="new-aff-h">
        <h2 id="new-aff-h">New affiliate</h2>
        <WriteForm action="/console/affiliates" csrf={op.csrf} role={op.session.role} label="Create an affiliate">
          <label>
            Name
            <input name="name" required maxlength={200} />
          </label>
          <label>
            Tracking id (a–z, 0–9, - and _)
            <input name="tracking_id" required pattern="[a-z0-9][a-z0-9_\-]{1,39}" maxlength={40} />
          </label>
          <label>
            Campaign (optional)
            <input name="campaign" maxlength={100} />
          </label>
          <label>
            Allowed origins for the widget (comma-separated)
            <input name="allowed_origins" maxlength={5000} placeholder="https://reviews.example" size={30} />
          </label>
          <ScopeFields />
          <button type="submit">Create and issue a key</button>
        </WriteForm>
      </section>
    </>,
  );
}

affiliatePages.get("/console/affiliates", (c) => listPage(c));

const Fields = {
  name: z.string().trim().min(1).max(200),
  campaign: z.string().trim().max(100).optional(),
  allowed_origins: z.string().max(5000).optional(),
  categories: z.string().max(5000).optional(),
  brands: z.string().max(5000).optional(),
  skus: z.string().max(200_000).optional(),
};

affiliatePages.post("/console/affiliates", async (c) => {
  const f = await formInput(c, z.object({ ...Fields, tracking_id: z.string().trim().min(1).max(40) }));
  const res = await adminCall(c, "POST", "/admin/affiliates", {
    name: f.name,
    tracking_id: f.tracking_id,
    campaign: f.campaign || null,
    allowed_origins: list(f.allowed_origins),
    scope: scopeOf(f),
  });
  if (res.status !== 201) return done(c, "/console/affiliates", `Not created: ${problemText(res)}`, "error");
  const body = res.body as { affiliate: Affiliate; key: { key: string; prefix: string } };
  return detailPage(c, body.affiliate.id, { key: body.key.key, prefix: body.key.prefix, message: `Created ${body.affiliate.name}.` });
});

type Seen = { name: string; status: string; campaign: string | null; allowed_origins: string[]; scope: AffiliateScope };

const seenOf = (a: Affiliate): Seen => ({ name: a.name, status: a.status, campaign: a.campaign, allowed_origins: a.allowed_origins, scope: a.scope });

function changes(seen: Seen, now: Affiliate): string[] {
  const cur = seenOf(now);
  return (Object.keys(cur) as (keyof Seen)[])
    .filter((k) => JSON.stringify(seen[k]) !== JSON.stringify(cur[k]))
    .map((k) => `${k.replace("_", " ")}: ${k === "scope" ? scopeText(seen.scope) : JSON.stringify(seen[k])} → ${k === "scope" ? scopeText(cur.scope) : JSON.stringify(cur[k])}`);
}

function KeysTable(props: { id: string; keys: KeyInfo[]; csrf: string; role: "admin" | "viewer" }) {
  return (
    <table id="keys">
      <caption class="sr-only">API keys</caption>
      <thead>
        <tr>
          <th scope="col">prefix</th>
          <th scope="col">label</th>
          <th scope="col">state</th>
          <th scope="col">created</th>
          <th scope="col">expires / revoked</th>
          <th scope="col">action</th>
        </tr>
      </thead>
      <tbody>
        {[...props.keys].reverse().map((k) => (
          <tr data-key={k.id} data-state={k.state}>
            <td>
              <code>{k.prefix}…</code>
            </td>
            <td>{k.label ?? ""}</td>
            <td>
              <span class={`badge ${k.state === "active" ? "active" : k.state === "expiring" ? "scheduled" : "ended"}`}>{k.state}</span>
            </td>
            <td>{when(k.created_at)}</td>
            <td>{k.revoked_at ? `revoked ${when(k.revoked_at)}` : k.expires_at ? when(k.expires_at) : "–"}</td>
            <td>
              {k.state === "active" || k.state === "expiring" ? (
                <WriteForm
                  action={`/console/affiliates/${encodeURIComponent(props.id)}/revoke`}
                  csrf={props.csrf}
                  role={props.role}
                  confirm={`Revoke key ${k.prefix}…? Feeds and widgets using it stop working at once.`}
                  label={`Revoke key ${k.prefix}`}
                >
                  <input type="hidden" name="key_id" value={k.id} />
                  <button type="submit" class="danger">
                    Revoke
                  </button>
                </WriteForm>
              ) : null}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

async function detailPage(c: ConsoleContext, id: string, extra: { key?: string; prefix?: string; message?: string; stale?: { seen: Seen; message: string } } = {}) {
  const op = operator(c);
  const [{ affiliate: a, keys }, clicks] = await Promise.all([affiliateWithKeys(c.env.DB, id), affiliateClicks(c.env.DB, id)]);
  const diff = extra.stale ? changes(extra.stale.seen, a) : [];
  return page(
    c,
    `Affiliate · ${a.name}`,
    <>
      {extra.message ? (
        <p class="flash ok" role="status">
          {extra.message}
        </p>
      ) : null}
      {extra.key && extra.prefix ? <NewKey affiliate={a.name} keyText={extra.key} prefix={extra.prefix} /> : null}
      {extra.stale ? (
        <div class="problem" role="alert" id="stale">
          <h2>Not saved: the affiliate changed since you opened it (412)</h2>
          <p>{extra.stale.message}</p>
          {diff.length ? (
            <ul>
              {diff.map((d) => (
                <li>{d}</li>
              ))}
            </ul>
          ) : (
            <p>The fields shown here are unchanged.</p>
          )}
          <p>The form shows the affiliate as it is now (version {a.version}).</p>
        </div>
      ) : null}
      <p>
        <code>{a.id}</code> · tracking id <code>{a.tracking_id}</code> · {a.status} · version {a.version} · created {when(a.created_at)} · updated {when(a.updated_at)}
      </p>
      <div class="cols">
        <section class="panel" aria-labelledby="clicks-h">
          <h2 id="clicks-h">Clicks</h2>
          <p id="click-counts">
            {fmt(clicks.last_24h)} in 24 h · {fmt(clicks.last_7d)} in 7 days · {fmt(clicks.last_30d)}
            {clicks.capped ? "+" : ""} in 30 days
          </p>
          <Sparkline values={clicks.per_day.map((d) => d.clicks)} label="Clicks per day, last 14 days" />
          <h3>Most clicked products (7 days)</h3>
          {clicks.top_products.length ? (
            <ol>
              {clicks.top_products.map((p) => (
                <li>
                  <a href={`/console/products/${encodeURIComponent(p.product_id)}`}>{p.product_id}</a>: {fmt(p.clicks)}
                </li>
              ))}
            </ol>
          ) : (
            <p>No clicks in 7 days.</p>
          )}
        </section>
        <section class="panel" aria-labelledby="rotate-h">
          <h2 id="rotate-h">Rotate keys</h2>
          <p class="muted">Issues a new key (shown once). The keys in use keep working for the grace period, so the affiliate can switch without a gap.</p>
          <WriteForm action={`/console/affiliates/${encodeURIComponent(a.id)}/rotate`} csrf={op.csrf} role={op.session.role} label="Rotate keys">
            <label>
              Current keys stop working
              <select name="grace_seconds">
                {GRACE.map(([s, text]) => (
                  <option value={String(s)} selected={s === 86_400}>
                    {text}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Label
              <input name="label" maxlength={100} placeholder="rotated key" />
            </label>
            <button type="submit">Issue a new key</button>
          </WriteForm>
        </section>
      </div>
      <section class="panel" aria-labelledby="keys-h">
        <h2 id="keys-h">Keys</h2>
        <KeysTable id={a.id} keys={keys} csrf={op.csrf} role={op.session.role} />
      </section>
      <section class="panel" aria-labelledby="edit-h">
        <h2 id="edit-h">Scope and settings</h2>
        <p class="muted">Scope: {scopeText(a.scope)}. Each list that is set restricts the feed, the widget and the click redirect.</p>
        <WriteForm action={`/console/affiliates/${encodeURIComponent(a.id)}/edit`} csrf={op.csrf} role={op.session.role} label="Edit affiliate">
          <input type="hidden" name="if_match" value={String(a.version)} />
          <input type="hidden" name="seen" value={JSON.stringify(seenOf(a))} />
          <label>
            Name
            <input name="name" value={a.name} required maxlength={200} />
          </label>
          <label>
            Status
            <select name="status">
              {(["active", "suspended"] as const).map((s) => (
                <option value={s} selected={a.status === s}>
                  {s}
                </option>
              ))}
            </select>
          </label>
          <label>
            Campaign
            <input name="campaign" value={a.campaign ?? ""} maxlength={100} />
          </label>
          <label>
            Allowed origins
            <input name="allowed_origins" value={a.allowed_origins.join(", ")} maxlength={5000} size={30} />
          </label>
          <ScopeFields scope={a.scope} />
          <button type="submit">Save</button>
        </WriteForm>
      </section>
      <p>
        <a href="/console/affiliates">All affiliates</a>
      </p>
    </>,
    extra.stale ? 412 : 200,
  );
}

affiliatePages.get("/console/affiliates/:id", (c) => detailPage(c, AffiliateId.parse(c.req.param("id"))));

affiliatePages.post("/console/affiliates/:id/rotate", async (c) => {
  const id = AffiliateId.parse(c.req.param("id"));
  const f = await formInput(c, z.object({ grace_seconds: z.coerce.number().int().min(0).max(30 * 86_400), label: z.string().trim().max(100).optional() }));
  const res = await adminCall(c, "POST", `/admin/affiliates/${encodeURIComponent(id)}/keys`, { grace_seconds: f.grace_seconds, label: f.label || "rotated key" });
  if (res.status !== 201) return done(c, `/console/affiliates/${encodeURIComponent(id)}`, `Not rotated: ${problemText(res)}`, "error");
  const key = (res.body as { key: { key: string; prefix: string } }).key;
  const grace = GRACE.find(([s]) => s === f.grace_seconds)?.[1] ?? `in ${f.grace_seconds} s`;
  return detailPage(c, id, { key: key.key, prefix: key.prefix, message: `New key issued; the previous keys stop working ${grace}.` });
});

affiliatePages.post("/console/affiliates/:id/revoke", async (c) => {
  const id = AffiliateId.parse(c.req.param("id"));
  const f = await formInput(c, z.object({ key_id: z.string().min(1).max(100) }));
  const res = await adminCall(c, "DELETE", `/admin/affiliates/${encodeURIComponent(id)}/keys/${encodeURIComponent(f.key_id)}`);
  const back = `/console/affiliates/${encodeURIComponent(id)}`;
  if (res.status !== 204) return done(c, back, `Not revoked: ${problemText(res)}`, "error");
  return done(c, back, "Key revoked: it no longer works anywhere.");
});

const SeenSchema = z.object({
  name: z.string(),
  status: z.string(),
  campaign: z.string().nullable(),
  allowed_origins: z.array(z.string()),
  scope: z.object({ categories: z.array(z.string()).optional(), brands: z.array(z.string()).optional(), skus: z.array(z.string()).optional() }),
});

affiliatePages.post("/console/affiliates/:id/edit", async (c) => {
  const id = AffiliateId.parse(c.req.param("id"));
  const f = await formInput(c, z.object({ ...Fields, status: z.enum(["active", "suspended"]), if_match: z.coerce.number().int().min(1), seen: z.string().max(300_000) }));
  let seen: Seen;
  try {
    seen = SeenSchema.parse(JSON.parse(f.seen));
  } catch {
    throw ApiError.badRequest("The form is damaged; reload the affiliate.");
  }
  const res = await adminCall(
    c,
    "PATCH",
    `/admin/affiliates/${encodeURIComponent(id)}`,
    { name: f.name, status: f.status, campaign: f.campaign || null, allowed_origins: list(f.allowed_origins), scope: scopeOf(f) },
    { "if-match": `"${f.if_match}"` },
  );
  if (res.status === 412) return detailPage(c, id, { stale: { seen, message: problemText(res) } });
  if (res.status !== 200) return done(c, `/console/affiliates/${encodeURIComponent(id)}`, `Not saved: ${problemText(res)}`, "error");
  return done(c, `/console/affiliates/${encodeURIComponent(id)}`, `Saved: version ${String((res.body?.affiliate as Affiliate | undefined)?.version)}.`);
});
