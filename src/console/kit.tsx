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
export function done(c: ConsoleContext, to: string, message: string) {
  setCookie(c, FLASH_COOKIE, encodeURIComponent(message.slice(0, 300)), { ...cookieBase, maxAge: 60 });
  return c.redirect(to, 303);
}

function takeFlash(c: ConsoleContext): string | undefined {
  const v = getCookie(c, FLASH_COOKIE);
  if (!v) return undefined;
  deleteCookie(c, FLASH_COOKIE, cookieBase);
  try {
    return decodeURIComponent(v);
  } catch {
    return undefined;
  }
}

/** Renders a full console page for the signed-in operator. */
export function page(c: ConsoleContext, title: string, body: unknown, status: 200 | 400 | 403 | 404 | 409 | 412 | 422 = 200, error?: string) {
  const op = c.get("console");
  return c.html(
    <Layout title={title} path={new URL(c.req.url).pathname} role={op?.session.role} csrf={op?.csrf} flash={takeFlash(c)} error={error}>
      {body as never}
    </Layout>,
    status,
  );
}

