/**
 * The operator console at /console: server-rendered pages (hono/jsx) over the same domain code as the admin
 * API. Forms work without scripts; /console/assets/console.js only adds auto-refresh, countdowns,
 * confirmations and upload progress. Every write needs an admin session and the session's CSRF token.
 */
import type { Next } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { z } from "zod";
import { ApiError, toApiError } from "../lib/errors";
import { createApp } from "../lib/validation";
import { sloReport } from "../metrics/slo";
import { OverviewTiles, overviewData, SloTable } from "./overview";
import {
  clearSignInFailures,
  createSession,
  csrfToken,
  csrfValid,
  newNonce,
  readSession,
  recordSignInFailure,
  revokeSession,
  roleForToken,
  SESSION_COOKIE,
  SESSION_TTL_MS,
  SIGNIN_COOKIE,
  signInLockedFor,
} from "./session";
import { Layout } from "./ui";
import { stockPages } from "./stock";
import { promotionPages } from "./promotions";
import { eventPages } from "./events";
import { productPages } from "./products";
import { affiliatePages } from "./affiliates";
import { recommendationPages } from "./recommendations";
import { cookieBase, formInput, isConsolePath, operator, page, PUBLIC, type ConsoleContext } from "./kit";

function clientOf(c: ConsoleContext): string {
  return `ip:${c.req.header("cf-connecting-ip") ?? "local"}`;
}

function wantsJson(c: ConsoleContext): boolean {
  return (c.req.header("accept") ?? "").includes("application/json");
}

export const consoleApp = createApp();

/** Security headers on every console answer, and errors rendered as pages for people (problems for scripts). */
async function consoleShell(c: ConsoleContext, next: Next) {
  if (!isConsolePath(c.req.path)) return next();
  await next();
  if (c.error && !wantsJson(c)) {
    const err = toApiError(c.error);
    const op = c.get("console");
    const res = await c.html(
      <Layout title={err.status === 429 ? "Too many attempts" : err.title} path={c.req.path} role={op?.session.role} csrf={op?.csrf} error={err.detail ?? err.title}>
        <p>
          <a href={c.req.header("referer")?.startsWith(new URL(c.req.url).origin) ? new URL(c.req.header("referer")!).pathname : "/console"}>Back</a>
        </p>
      </Layout>,
      err.status,
    );
    for (const [k, v] of Object.entries(err.headers)) res.headers.set(k, v);
    c.res = res;
  }
  c.res.headers.set("content-security-policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'");
  c.res.headers.set("x-frame-options", "DENY");
  c.res.headers.set("referrer-policy", "same-origin");
  c.res.headers.set("x-content-type-options", "nosniff");
  if (!c.req.path.startsWith("/console/assets/")) c.res.headers.set("cache-control", "no-store");
}

/**
 * Every console path but sign-in and the assets needs a live session. Writes also need: a same-origin request,
 * the session's CSRF token (form field `_csrf` or header `x-csrf-token`), and the admin role.
 */
async function consoleAuth(c: ConsoleContext, next: Next) {
  const path = c.req.path;
  if (!isConsolePath(path) || PUBLIC.has(path) || path.startsWith("/console/assets/")) return next();
  const session = await readSession(c.env, getCookie(c, SESSION_COOKIE));
  const write = c.req.method !== "GET" && c.req.method !== "HEAD";
  if (!session) {
    if (!write && !wantsJson(c)) return c.redirect(`/console/sign-in?next=${encodeURIComponent(path + new URL(c.req.url).search)}`, 303);
    throw ApiError.unauthorized("Your console session has ended; sign in again.");
  }
  const csrf = await csrfToken(c.env, session.id);
  c.set("console", { session, csrf });
  if (write) {
    const origin = c.req.header("origin");
    if (origin && origin !== new URL(c.req.url).origin) throw ApiError.forbidden("Cross-site request refused.");
    const type = c.req.header("content-type") ?? "";
    const fromForm = type.startsWith("application/x-www-form-urlencoded") || type.startsWith("multipart/form-data") ? (await c.req.parseBody())["_csrf"] : undefined;
    const token = c.req.header("x-csrf-token") ?? (typeof fromForm === "string" ? fromForm : undefined);
    if (!(await csrfValid(c.env, session.id, token))) throw ApiError.forbidden("Missing or wrong CSRF token: reload the page and try again.");
    if (session.role !== "admin" && path !== "/console/sign-out") throw ApiError.forbidden("Viewers cannot change anything; sign in with the admin token.");
  }
  await next();
}

consoleApp.use("/console", consoleShell, consoleAuth);
consoleApp.use("/console/*", consoleShell, consoleAuth);

consoleApp.get("/console/assets/:file{[a-z0-9-]+\\.(css|js)}", async (c) => {
  const res = await c.env.ASSETS.fetch(new Request(new URL(`/console/${c.req.param("file")}`, c.req.url)));
  if (!res.ok) throw ApiError.notFound("No such asset.");
  const out = new Response(res.body, res);
  out.headers.set("cache-control", "public, max-age=300");
  return out;
});

// ---- sign-in / sign-out ---------------------------------------------------------------------------------------

function safeNext(next: string | undefined): string {
  return next && /^\/console(\/[\w\-./?=&%]*)?$/.test(next) && !next.startsWith("//") ? next : "/console";
}

function SignInForm(props: { nonce: string; next: string }) {
  return (
    <form method="post" action="/console/sign-in" class="signin">
      <input type="hidden" name="_csrf" value={props.nonce} />
      <input type="hidden" name="next" value={props.next} />
      <label for="token">Admin or viewer token</label>
      <input id="token" name="token" type="password" autocomplete="current-password" required maxlength={256} />
      <button type="submit">Sign in</button>
    </form>
  );
}

function signInPage(c: ConsoleContext, status: 200 | 401 | 403 | 429, error?: string) {
  const nonce = newNonce();
  setCookie(c, SIGNIN_COOKIE, nonce, { ...cookieBase, maxAge: 15 * 60 });
  return c.html(
    <Layout title="Sign in" path="/console/sign-in" error={error}>
      <p>Sign in with the admin token (can change things) or the viewer token (read-only).</p>
      <SignInForm nonce={nonce} next={safeNext(c.req.query("next") ?? undefined)} />
    </Layout>,
    status,
  );
}

consoleApp.get("/console/sign-in", (c) => signInPage(c, 200));

const SignInSchema = z.object({ token: z.string().max(256), _csrf: z.string().max(100), next: z.string().max(500).optional() });

consoleApp.post("/console/sign-in", async (c) => {
  const client = clientOf(c);
  const locked = await signInLockedFor(c.env, client);
  if (locked > 0) {
    c.header("retry-after", String(Math.ceil(locked / 1000)));
    return signInPage(c, 429, `Too many wrong tokens: try again in ${Math.ceil(locked / 1000)} s.`);
  }
  const input = await formInput(c, SignInSchema);
  const nonce = getCookie(c, SIGNIN_COOKIE);
  if (!nonce || nonce !== input._csrf) return signInPage(c, 403, "The sign-in form expired; try again.");
  const role = await roleForToken(c.env, input.token);
  if (!role) {
    const lock = await recordSignInFailure(c.env, client);
    if (lock > 0) c.header("retry-after", String(Math.ceil(lock / 1000)));
    return signInPage(c, lock > 0 ? 429 : 401, lock > 0 ? `Wrong token. Too many attempts: wait ${Math.ceil(lock / 1000)} s.` : "Wrong token.");
  }
  await clearSignInFailures(c.env, client);
  const { cookie } = await createSession(c.env, role);
  deleteCookie(c, SIGNIN_COOKIE, cookieBase);
  setCookie(c, SESSION_COOKIE, cookie, { ...cookieBase, maxAge: SESSION_TTL_MS / 1000 });
  return c.redirect(safeNext(input.next), 303);
});

consoleApp.post("/console/sign-out", async (c) => {
  await revokeSession(c.env, operator(c).session.id);
  deleteCookie(c, SESSION_COOKIE, cookieBase);
  return c.redirect("/console/sign-in", 303);
});

// ---- overview and SLOs ----------------------------------------------------------------------------------------

consoleApp.get("/console", async (c) => {
  const d = await overviewData(c.env);
  return page(
    c,
    "Overview",
    <>
      <p class="muted">
        Live: refreshes every 10 s. Sparklines cover the last hour, one point per minute. Tier and latency figures count every request
        this deployment served (per-minute store); lag percentiles come from the consumer's samples.
      </p>
      <OverviewTiles d={d} />
    </>,
  );
});

/** The tiles alone, for the page's auto-refresh. */
consoleApp.get("/console/tiles", async (c) => {
  const d = await overviewData(c.env);
  return c.html(<OverviewTiles d={d} />);
});

consoleApp.get("/console/slo", async (c) => {
  const slo = await sloReport(c.env);
  return page(
    c,
    "Service level objectives",
    <>
      <p>
        Targets come from <code>SLO_TARGETS</code> (wrangler.toml). Each row is measured over the rolling {slo.config.window_minutes}-minute window;
        the error budget is the share of bad events the target allows, and what is left of it. Nothing is paused automatically.
      </p>
      {slo.burning.length ? (
        <p class="burn" role="alert">
          {slo.burning.length} objective{slo.burning.length > 1 ? "s are" : " is"} burning {slo.burning.length > 1 ? "their" : "its"} error budget.
        </p>
      ) : (
        <p class="flash ok">Every objective with data is within its budget.</p>
      )}
      <SloTable slo={slo} />
      <p class="muted">
        Latency thresholds are the metric store's bucket bounds ({slo.config.read_p95_ms} and {slo.config.read_p99_ms} ms); correctness counts dead
        letters (events that never applied) against events consumed.
      </p>
    </>,
  );
});

consoleApp.route("/", stockPages);
consoleApp.route("/", promotionPages);
consoleApp.route("/", eventPages);
consoleApp.route("/", productPages);
consoleApp.route("/", affiliatePages);
consoleApp.route("/", recommendationPages);
