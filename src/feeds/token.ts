/**
 * Opaque continuation tokens. `since` carries the change_seq high-water mark a delta sync resumes from;
 * `cursor` carries the keyset position of a full listing plus the high-water mark captured on its first
 * page, so that every page of one full sync shows the same snapshot boundary. Tampering only changes what
 * the caller itself sees, so the tokens are encoded, not signed.
 *
 * change_seq is counted per catalog partition (src/db/partitions.ts), so with N partitions each token holds one
 * position per partition (`v: 2`); with one it keeps the single-number form (`v: 1`). A token written for another
 * N is mapped onto this one: growing N → 2N moves bucket b from partition b % N to b % 2N with its change_seq, so
 * partition i resumes from the old position of partition i % N; shrinking takes the smallest of the merged ones
 * (a change may then be sent twice, never skipped).
 */
import { ApiError } from "../lib/errors";

type SinceToken = { v: 1; seq: number } | { v: 2; seq: number[] };
type CursorToken = { v: 1; after: string; hwm: number } | { v: 2; after: string; hwm: number[] };

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

/** Positions of a token made for `vec.length` partitions, mapped onto `n` (undefined when they cannot be). */
function remap(vec: number[], n: number): number[] | undefined {
  if (vec.length === n) return vec;
  if (n > vec.length && n % vec.length === 0) return Array.from({ length: n }, (_, i) => vec[i % vec.length]!);
  if (n < vec.length && vec.length % n === 0) return Array.from({ length: n }, (_, i) => Math.min(...vec.filter((_, j) => j % n === i)));
  return undefined;
}

const isSeq = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

function positions(v: unknown, value: unknown, n: number): number[] | undefined {
  if (v === 1 && isSeq(value)) return remap([value], n);
  if (v === 2 && Array.isArray(value) && value.length > 0 && value.length <= 64 && value.every(isSeq)) return remap(value, n);
  return undefined;
}

/** `seq` holds one position per partition. */
export function encodeSince(seq: number[]): string {
  return encode((seq.length === 1 ? { v: 1, seq: seq[0]! } : { v: 2, seq }) satisfies SinceToken);
}

/** One position per partition, for `partitions` partitions. */
export function decodeSince(token: string, partitions = 1): number[] {
  try {
    const t = decode(token) as Partial<{ v: number; seq: unknown }>;
    const out = positions(t?.v, t?.seq, partitions);
    if (out) return out;
  } catch {
    /* falls through to the 400 */
  }
  throw invalid("since");
}

export function encodeCursor(after: string, hwm: number[]): string {
  return encode((hwm.length === 1 ? { v: 1, after, hwm: hwm[0]! } : { v: 2, after, hwm }) satisfies CursorToken);
}

export function decodeCursor(token: string, partitions = 1): { after: string; hwm: number[] } {
  try {
    const t = decode(token) as Partial<{ v: number; after: unknown; hwm: unknown }>;
    const hwm = typeof t?.after === "string" ? positions(t.v, t.hwm, partitions) : undefined;
    if (hwm) return { after: t.after as string, hwm };
  } catch {
    /* falls through to the 400 */
  }
  throw invalid("cursor");
}
