import { SELF } from "cloudflare:test";

export const ADMIN_TOKEN = "test-admin-token";
export const STOREFRONT_KEY = "dev-storefront-key";
export const BASE = "http://edgeshelf.test";

export type Problem = { type: string; title: string; status: number; detail?: string; request_id: string; [k: string]: unknown };

/** Fetch through the real Worker entry (`SELF`), so middleware, routing and errors are all exercised. */
export function call(path: string, init: RequestInit = {}): Promise<Response> {
  return SELF.fetch(BASE + path, init);
}

export function json(method: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return call(path, {
    method,
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

export function admin(headers: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers };
}

export function storefront(headers: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${STOREFRONT_KEY}`, ...headers };
}

export async function expectProblem(res: Response, status: number): Promise<Problem> {
  const text = await res.text();
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${text}`);
  const type = res.headers.get("content-type") ?? "";
  if (!type.startsWith("application/problem+json")) throw new Error(`expected problem+json, got ${type}: ${text}`);
  const body = JSON.parse(text) as Problem;
  if (body.status !== status || !body.request_id || !body.type || !body.title) {
    throw new Error(`malformed problem body: ${text}`);
  }
  return body;
}

let counter = 0;
/** Ids unique within a test file (storage is shared by the tests of one file). */
export function uid(prefix: string): string {
  counter += 1;
  return `${prefix}-${Date.now().toString(36)}-${counter}`;
}
