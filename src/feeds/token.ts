/**
 * Opaque continuation tokens. `since` carries the change_seq high-water mark a delta sync resumes from;
 * `cursor` carries the keyset position of a full listing plus the high-water mark captured on its first
 * page, so that every page of one full sync shows the same snapshot boundary. Tampering only changes what
 * the caller itself sees, so the tokens are encoded, not signed.
 */
import { ApiError } from "../lib/errors";

type SinceToken = { v: 1; seq: number };
type CursorToken = { v: 1; after: string; hwm: number };

function encode(value: unknown): string {
  return btoa(JSON.stringify(value)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function decode(token: string): unknown {
  const b64 = token.replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)));
}

function invalid(param: string): ApiError {
  return ApiError.badRequest(`Invalid ${param} token; use the value of a previous response's next_${param === "since" ? "since" : "cursor"}.`, {
    errors: [{ location: "query", path: param, message: "malformed token" }],
  });
}

export function encodeSince(seq: number): string {
  return encode({ v: 1, seq } satisfies SinceToken);
}

export function decodeSince(token: string): number {
  try {
    const t = decode(token) as Partial<SinceToken>;
    if (t?.v === 1 && Number.isSafeInteger(t.seq) && (t.seq as number) >= 0) return t.seq as number;
  } catch {
    /* falls through to the 400 */
  }
  throw invalid("since");
}

export function encodeCursor(after: string, hwm: number): string {
  return encode({ v: 1, after, hwm } satisfies CursorToken);
}

export function decodeCursor(token: string): { after: string; hwm: number } {
  try {
    const t = decode(token) as Partial<CursorToken>;
    if (t?.v === 1 && typeof t.after === "string" && Number.isSafeInteger(t.hwm) && (t.hwm as number) >= 0) {
      return { after: t.after, hwm: t.hwm as number };
    }
  } catch {
    /* falls through to the 400 */
  }
  throw invalid("cursor");
}
