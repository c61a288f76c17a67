/**
 * Console sign-in. The cookie holds `<payload>.<HMAC>` (session id, role, expiry), signed with a key derived
 * from ADMIN_TOKEN, so a forged or expired cookie is refused without touching D1, and rotating the admin token
 * ends every session. The session row in D1 makes sign-out real (the cookie stops working even if it was
 * copied). The CSRF token of a session is the HMAC of its id: nothing to store, and it cannot be computed
 * without the key. Wrong tokens are throttled per client in D1 (`console_signin_failures`).
 */
import { timingSafeEqualStrings } from "../lib/crypto";

export type Role = "admin" | "viewer";
export type Session = { id: string; role: Role; expiresAt: number };

export const SESSION_COOKIE = "es_console";
/** Set on the sign-in page and echoed in its form: login CSRF protection before any session exists. */
export const SIGNIN_COOKIE = "es_console_signin";
export const SESSION_TTL_MS = 8 * 60 * 60_000;

const FAILURE_WINDOW_MS = 15 * 60_000;
const FREE_FAILURES = 5;
const MAX_LOCK_MS = 15 * 60_000;

const encoder = new TextEncoder();
const keys = new Map<string, Promise<CryptoKey>>();

function signingKey(env: Pick<Env, "ADMIN_TOKEN">): Promise<CryptoKey> {
  const secret = `edgeshelf-console:${env.ADMIN_TOKEN}`;
  let key = keys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    keys.clear(); // only the current token's key is ever needed
    keys.set(secret, key);
  }
  return key;
}

function b64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromB64url(text: string): Uint8Array {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
}

async function sign(env: Pick<Env, "ADMIN_TOKEN">, data: string): Promise<string> {
  return b64url(new Uint8Array(await crypto.subtle.sign("HMAC", await signingKey(env), encoder.encode(data))));
}

async function verify(env: Pick<Env, "ADMIN_TOKEN">, data: string, signature: string): Promise<boolean> {
  try {
    const bytes = fromB64url(signature);
    // Only the canonical spelling counts: base64's unused trailing bits must not make a second valid cookie.
    if (b64url(bytes) !== signature) return false;
    return await crypto.subtle.verify("HMAC", await signingKey(env), bytes, encoder.encode(data));
  } catch {
    return false;
  }
}

/** Which role a token signs in as, compared in constant time; undefined for anything else. */
export async function roleForToken(env: Pick<Env, "ADMIN_TOKEN" | "VIEWER_TOKEN">, token: string): Promise<Role | undefined> {
  if (token.length === 0 || token.length > 256) return undefined;
  const [admin, viewer] = await Promise.all([
    env.ADMIN_TOKEN ? timingSafeEqualStrings(token, env.ADMIN_TOKEN) : false,
    env.VIEWER_TOKEN ? timingSafeEqualStrings(token, env.VIEWER_TOKEN) : false,
  ]);
  return admin ? "admin" : viewer ? "viewer" : undefined;
}

export async function createSession(env: Pick<Env, "ADMIN_TOKEN" | "DB">, role: Role, now = Date.now()): Promise<{ session: Session; cookie: string }> {
  const id = b64url(crypto.getRandomValues(new Uint8Array(18)));
  const session: Session = { id, role, expiresAt: now + SESSION_TTL_MS };
  await env.DB.batch([
    env.DB.prepare("INSERT INTO console_logins (id, role, created_at, expires_at) VALUES (?, ?, ?, ?)").bind(id, role, now, session.expiresAt),
    // Expired rows go as new ones arrive: the table holds only live and recently ended sessions.
    env.DB.prepare("DELETE FROM console_logins WHERE expires_at < ?").bind(now - 24 * 60 * 60_000),
  ]);
  const payload = `${id}.${role}.${session.expiresAt}`;
  return { session, cookie: `${payload}.${await sign(env, payload)}` };
}

/** The live session a cookie names, or undefined (bad signature, expired, revoked, or unknown). */
export async function readSession(env: Pick<Env, "ADMIN_TOKEN" | "DB">, cookie: string | undefined, now = Date.now()): Promise<Session | undefined> {
  if (!cookie || cookie.length > 300 || !env.ADMIN_TOKEN) return undefined;
  const parts = cookie.split(".");
  if (parts.length !== 4) return undefined;
  const [id, role, exp, signature] = parts as [string, string, string, string];
  if ((role !== "admin" && role !== "viewer") || !/^\d{1,15}$/.test(exp) || Number(exp) <= now) return undefined;
  if (!(await verify(env, `${id}.${role}.${exp}`, signature))) return undefined;
  const row = await env.DB.prepare("SELECT role, expires_at, revoked_at FROM console_logins WHERE id = ?")
    .bind(id)
    .first<{ role: string; expires_at: number; revoked_at: number | null }>();
  if (!row || row.revoked_at !== null || row.expires_at <= now || row.role !== role) return undefined;
  return { id, role, expiresAt: row.expires_at };
}

export async function revokeSession(env: Pick<Env, "DB">, id: string, now = Date.now()): Promise<void> {
  await env.DB.prepare("UPDATE console_logins SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").bind(now, id).run();
}

export async function csrfToken(env: Pick<Env, "ADMIN_TOKEN">, sessionId: string): Promise<string> {
  return sign(env, `csrf.${sessionId}`);
}

export async function csrfValid(env: Pick<Env, "ADMIN_TOKEN">, sessionId: string, token: string | undefined): Promise<boolean> {
  if (!token || token.length > 100) return false;
  return verify(env, `csrf.${sessionId}`, token);
}

/** A random value for the sign-in form's CSRF cookie. */
export function newNonce(): string {
  return b64url(crypto.getRandomValues(new Uint8Array(18)));
}

/** Milliseconds the client must still wait before trying again, 0 when it may try now. */
export async function signInLockedFor(env: Pick<Env, "DB">, client: string, now = Date.now()): Promise<number> {
  const row = await env.DB.prepare("SELECT locked_until FROM console_signin_failures WHERE client = ?").bind(client).first<{ locked_until: number }>();
  return row ? Math.max(0, row.locked_until - now) : 0;
}

/**
 * Counts a wrong token. The first few in a window are free; after that each one locks the client out for twice
 * as long as the last (30 s, 60 s, … up to 15 minutes). Returns the new lock in ms.
 */
export async function recordSignInFailure(env: Pick<Env, "DB">, client: string, now = Date.now()): Promise<number> {
  const row = await env.DB.prepare(
    `INSERT INTO console_signin_failures (client, failures, window_start, locked_until) VALUES (?1, 1, ?2, 0)
     ON CONFLICT (client) DO UPDATE SET
       failures = CASE WHEN window_start < ?2 - ?3 AND locked_until < ?2 THEN 1 ELSE failures + 1 END,
       window_start = CASE WHEN window_start < ?2 - ?3 AND locked_until < ?2 THEN ?2 ELSE window_start END
     RETURNING failures`,
  )
    .bind(client, now, FAILURE_WINDOW_MS)
    .first<{ failures: number }>();
  const over = (row?.failures ?? 1) - FREE_FAILURES;
  if (over <= 0) return 0;
  const lock = Math.min(MAX_LOCK_MS, 30_000 * 2 ** Math.min(over - 1, 10));
  await env.DB.batch([
    env.DB.prepare("UPDATE console_signin_failures SET locked_until = ? WHERE client = ?").bind(now + lock, client),
    env.DB.prepare("DELETE FROM console_signin_failures WHERE window_start < ? AND locked_until < ?").bind(now - 24 * 60 * 60_000, now),
  ]);
  return lock;
}

export async function clearSignInFailures(env: Pick<Env, "DB">, client: string): Promise<void> {
  await env.DB.prepare("DELETE FROM console_signin_failures WHERE client = ?").bind(client).run();
}
