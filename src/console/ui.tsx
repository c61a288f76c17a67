/** Small server-rendered building blocks of the console: layout, sparklines, forms. */
import type { Child } from "hono/jsx";
import type { Role } from "./session";

export const NAV = [
  ["/console", "Overview"],
  ["/console/slo", "SLOs"],
  ["/console/stock", "Stock"],
  ["/console/products", "Products"],
  ["/console/promotions", "Promotions"],
  ["/console/events", "Events"],
  ["/console/affiliates", "Affiliates"],
  ["/console/recommendations", "Recommendations"],
] as const;

export function Layout(props: { title: string; path: string; role?: Role; csrf?: string; flash?: string; error?: string; children?: Child }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${props.title} · edgeshelf console`}</title>
        <link rel="stylesheet" href="/console/assets/console.css" />
        <script src="/console/assets/console.js" defer></script>
      </head>
      <body>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header class="top">
          <span class="brand">edgeshelf console</span>
          {props.role ? (
            <nav aria-label="Console sections">
              <ul>
                {NAV.map(([href, label]) => (
                  <li>
                    <a href={href} aria-current={props.path === href ? "page" : undefined}>
                      {label}
                    </a>
                  </li>
                ))}
              </ul>
            </nav>
          ) : null}
          {props.role && props.csrf ? (
            <form method="post" action="/console/sign-out" class="signout">
              <CsrfField token={props.csrf} />
              <span class={`role role-${props.role}`}>{props.role === "admin" ? "Admin" : "Viewer (read-only)"}</span>
              <button type="submit">Sign out</button>
            </form>
          ) : null}
        </header>
        <main id="main" tabindex={-1}>
          <h1>{props.title}</h1>
          {props.flash ? (
            <p class="flash ok" role="status">
              {props.flash}
            </p>
          ) : null}
          {props.error ? (
            <p class="flash err" role="alert">
              {props.error}
            </p>
          ) : null}
          {props.children}
        </main>
      </body>
    </html>
  );
}

export function CsrfField(props: { token: string }) {
  return <input type="hidden" name="_csrf" value={props.token} />;
}

/**
 * An inline SVG line over the values (one per minute), with an accessible summary. Drawn on the server: no
 * charting script, and it renders with scripts off.
 */
export function Sparkline(props: { values: number[]; label: string; unit?: string }) {
  const w = 160;
  const h = 32;
  const vals = props.values;
  const max = Math.max(1, ...vals);
  const step = vals.length > 1 ? w / (vals.length - 1) : w;
  const points = vals.map((v, i) => `${(i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`).join(" ");
  const last = vals.at(-1) ?? 0;
  const summary = `${props.label}: last hour, peak ${fmt(max === 1 && Math.max(...vals, 0) === 0 ? 0 : max)}${props.unit ?? ""}, latest ${fmt(last)}${props.unit ?? ""}`;
  return (
    <svg class="spark" viewBox={`0 0 ${w} ${h}`} width={w} height={h} role="img" aria-label={summary}>
      <title>{summary}</title>
      <polyline fill="none" stroke="currentColor" stroke-width="1.5" points={points} />
    </svg>
  );
}

export function fmt(n: number | null | undefined, digits = 0): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "–";
  return n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function pct(share: number | null | undefined, digits = 2): string {
  if (share === null || share === undefined || !Number.isFinite(share)) return "–";
  return `${(share * 100).toFixed(digits)}%`;
}

export function ms(n: number | null | undefined): string {
  if (n === null || n === undefined) return "–";
  if (!Number.isFinite(n)) return "> 5 s";
  return n >= 1000 ? `${(n / 1000).toFixed(n >= 10_000 ? 0 : 1)} s` : `${n} ms`;
}

export function when(t: number | string | null | undefined): string {
  if (t === null || t === undefined) return "–";
  return new Date(t).toISOString().replace("T", " ").replace(/\.\d{3}Z$/, " UTC");
}

export function Tile(props: { title: string; id: string; children?: Child; tone?: "ok" | "warn" | "bad" }) {
  return (
    <section class={`tile ${props.tone ?? ""}`} aria-labelledby={`t-${props.id}`} data-tile={props.id}>
      <h2 id={`t-${props.id}`}>{props.title}</h2>
      {props.children}
    </section>
  );
}

/** The form of a write: viewers see it disabled (the server refuses their posts anyway). */
export function WriteForm(props: { action: string; csrf: string; role: Role; children?: Child; class?: string; confirm?: string; label?: string }) {
  const readOnly = props.role !== "admin";
  return (
    <form method="post" action={props.action} class={props.class} data-confirm={props.confirm} aria-label={props.label}>
      <CsrfField token={props.csrf} />
      <fieldset disabled={readOnly}>{props.children}</fieldset>
      {readOnly ? <p class="muted">Read-only: viewers cannot change anything.</p> : null}
    </form>
  );
}
