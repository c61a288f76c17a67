/**
 * Opaque continuation tokens. `since` carries the change_seq high-water mark a delta sync resumes from;
 * `cursor` carries the keyset position of a full listing plus the high-water mark captured on its first
 * page, so that every page of one full sync shows the same snapshot boundary. Tampering only changes what
 * the caller itself sees, so the tokens are encoded, not signed.
 *
 * change_seq is counted per catalog partition (src/db/partitions.ts), so with N partitions each token holds one
 * position per partition (`v: 2`); with one it keeps the single-number form (`v: 1`). A token written for another
 * N is mapped onto this one. Growing N → 2N moves bucket b from partition b % N to b % 2N with its change_seq, so
 * partition i < N keeps its position and a new partition i ≥ N *inherits* the position of partition i − N: its
 * copied products carry that partition's numbers, up to the split mark the growth recorded, and it numbers its own
 * changes above the mark. The reader clamps an inherited position to the new partition's mark
 * (`resolvePositions`), since the old partition may have numbered past it until the flip: the copies above the
 * position are sent, and every change of its own. A token older than two doublings resumes the partitions whose
 * ancestors were split after it from 0 (their numbers mix several marks). Shrinking takes the smallest of the merged
 * positions. In every case a change may be sent twice, never skipped.
 */
import { ApiError } from "../lib/errors";
import { splitMark } from "./change-seq";

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

/** One position per partition; `inherited[i]`: partition i was split off after the token was made (see above). */
export type Positions = { seq: number[]; inherited: boolean[] };

/** How many splits separate partition i from the partitions a token for `len` of them knew (0: one of those). */
function generations(i: number, len: number): number {
  let gens = 0;
  // Partition c in [m, 2m) (m a power of two) was split off partition c − m when m grew to 2m.
  for (let c = i; c >= len; gens++) c -= 2 ** Math.floor(Math.log2(c));
  return gens;
}

/** Positions of a token made for `vec.length` partitions, mapped onto `n` (undefined when they cannot be). */
function remap(vec: number[], n: number): Positions | undefined {
  const own = (seq: number[]): Positions => ({ seq, inherited: seq.map(() => false) });
  if (vec.length === n) return own(vec);
  if (n > vec.length && n % vec.length === 0) {
    const gens = Array.from({ length: n }, (_, i) => generations(i, vec.length));
    return { seq: gens.map((g, i) => (g === 0 ? vec[i]! : g === 1 ? vec[i % vec.length]! : 0)), inherited: gens.map((g) => g === 1) };
  }
  if (n < vec.length && vec.length % n === 0) return own(Array.from({ length: n }, (_, i) => Math.min(...vec.filter((_, j) => j % n === i))));
  return undefined;
}

const isSeq = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

function positions(v: unknown, value: unknown, n: number): Positions | undefined {
  if (v === 1 && isSeq(value)) return remap([value], n);
  if (v === 2 && Array.isArray(value) && value.length > 0 && value.length <= 64 && value.every(isSeq)) return remap(value, n);
  return undefined;
}

/**
 * The positions to read each partition from (`dbs` in partition order): an inherited one clamped to the partition's
 * split mark. Only tokens made before a growth have any, so other reads cost nothing here.
 */
export async function resolvePositions(dbs: readonly D1Database[], at: Positions): Promise<number[]> {
  return Promise.all(at.seq.map(async (seq, i) => (at.inherited[i] ? Math.min(seq, (await splitMark(dbs[i]!)) ?? seq) : seq)));
}

/** `seq` holds one position per partition. */
export function encodeSince(seq: number[]): string {
  return encode((seq.length === 1 ? { v: 1, seq: seq[0]! } : { v: 2, seq }) satisfies SinceToken);
}

/** One position per partition, for `partitions` partitions (read them through `resolvePositions`). */
export function decodeSince(token: string, partitions = 1): Positions {
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

export function decodeCursor(token: string, partitions = 1): { after: string; hwm: Positions } {
  try {
    const t = decode(token) as Partial<{ v: number; after: unknown; hwm: unknown }>;
    const hwm = typeof t?.after === "string" ? positions(t.v, t.hwm, partitions) : undefined;
    if (hwm) return { after: t.after as string, hwm };
  } catch {
    /* falls through to the 400 */
  }
  throw invalid("cursor");
}
