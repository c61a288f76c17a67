/** What every console page shares: the operator, form parsing, post/redirect/get messages, the page frame. */
import type { Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import type { z } from "zod";
import type { AppEnv } from "../env";
import { ApiError } from "../lib/errors";
import { fieldErrors } from "../lib/validation";
import { Layout } from "./ui";

export type ConsoleContext = Context<AppEnv>;

export const FLASH_COOKIE = "es_console_flash";
export const cookieBase = { httpOnly: true, secure: true, sameSite: "Strict", path: "/console" } as const;

export const isConsolePath = (p: string) => p === "/console" || p.startsWith("/console/");
export const PUBLIC = new Set(["/console/sign-in"]);

/** The signed-in operator; only called behind the auth middleware. */
export function operator(c: ConsoleContext) {
  const v = c.get("console");
  if (!v) throw ApiError.unauthorized("Sign in first.");
  return v;
}

/** Parses a posted form with a zod schema; bad input is a 400 (shown on the page by the error middleware). */
export async function formInput<T extends z.ZodType>(c: ConsoleContext, schema: T): Promise<z.infer<T>> {
  const body = await c.req.parseBody();
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const errors = fieldErrors("form", parsed.error);
    throw ApiError.badRequest(errors.map((e) => `${e.path || "form"}: ${e.message}`).join("; "), { errors });
  }
  return parsed.data;
}

/** Post/redirect/get: the message rides in a short-lived cookie, never in the URL. */
export function done(c: ConsoleContext, to: string, message: string, kind: "ok" | "error" = "ok") {
  setCookie(c, FLASH_COOKIE, encodeURIComponent(`${kind === "error" ? "!" : " "}${message.slice(0, 300)}`), { ...cookieBase, maxAge: 60 });
  return c.redirect(to, 303);
}

function takeFlash(c: ConsoleContext): { ok?: string; error?: string } {
  const v = getCookie(c, FLASH_COOKIE);
  if (!v) return {};
  deleteCookie(c, FLASH_COOKIE, cookieBase);
  try {
    const text = decodeURIComponent(v);
    return text.startsWith("!") ? { error: text.slice(1) } : { ok: text.slice(1) };
  } catch {
    return {};
  }
}

/** Renders a full console page for the signed-in operator. */
export function page(c: ConsoleContext, title: string, body: unknown, status: 200 | 400 | 403 | 404 | 409 | 412 | 422 = 200, error?: string) {
  const op = c.get("console");
  const flash = takeFlash(c);
  return c.html(
    <Layout title={title} path={new URL(c.req.url).pathname} role={op?.session.role} csrf={op?.csrf} flash={flash.ok} error={error ?? flash.error}>
      {body as never}
    </Layout>,
    status,
  );
}


type FetchApp = { fetch: (req: Request, env: Env, ctx: ExecutionContext) => Response | Promise<Response> };
let adminApi: FetchApp | undefined;

/** The whole API, so console writes go through the admin routes themselves (same validation, rules and events). */
export function useAdminApi(app: FetchApp): void {
  adminApi = app;
}

export type AdminAnswer = { status: number; headers: Headers; body: Record<string, unknown> | null };

/**
 * Calls an admin route in-process as the console's admin. Only reached behind the console's auth middleware,
 * which has already required an admin session and a valid CSRF token for the write.
 */
export async function adminCall(c: ConsoleContext, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<AdminAnswer> {
  if (!adminApi) throw new Error("console: admin API not bound");
  // A stream (an uploaded import) is passed through as it arrives, never buffered here.
  const raw = body instanceof ReadableStream;
  const req = new Request(new URL(path, c.req.url), {
    method,
    headers: { authorization: `Bearer ${c.env.ADMIN_TOKEN}`, ...(body === undefined || raw ? {} : { "content-type": "application/json" }), ...headers },
    body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
  });
  const res = await adminApi.fetch(req, c.env, c.executionCtx as unknown as ExecutionContext);
  const text = await res.text();
  let parsed: Record<string, unknown> | null = null;
  try {
    parsed = text ? (JSON.parse(text) as Record<string, unknown>) : null;
  } catch {
    parsed = null;
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

/** A problem answer of the admin API as one readable line. */
export function problemText(a: AdminAnswer): string {
  const b = a.body ?? {};
  const errors = Array.isArray(b.errors) ? (b.errors as { path?: string; message?: string }[]).map((e) => `${e.path ?? ""}: ${e.message ?? ""}`).join("; ") : "";
  return `${String(b.title ?? a.status)}: ${String(b.detail ?? "")}${errors && !String(b.detail ?? "").includes(errors) ? ` (${errors})` : ""}`;
}
