/**
 * Byte budgets for everything this isolate keeps between requests.
 *
 * A production isolate has 128 MB for code, requests in flight and these structures together, and one isolate
 * serves every client of a colo, hostile ones included. So every per-isolate map or memo is a `BoundedMap` (or
 * registers its own accounting): keys longer than `maxKeyLength` are replaced by a hash, entries are evicted
 * oldest first once the structure's byte budget is reached, and `isolateMemory()` adds them all up for
 * /admin/metrics and the memory tests. Sizes are estimates (UTF-16 strings plus a fixed overhead per entry),
 * good enough to bound growth, not to profile.
 */

/** The sum of every registered structure's budget stays under this share of the isolate's 128 MB. */
export const ISOLATE_ACCOUNTED_BUDGET_BYTES = 24 * 1024 * 1024;

const ENTRY_OVERHEAD = 64;

type Accounted = { bytes: () => number; entries: () => number; budget: () => number };
const groups = new Map<string, Set<Accounted>>();

/** Adds a structure to the accounting under `name` (several instances of one kind share a name). */
export function registerAccounted(name: string, part: Accounted): void {
  let group = groups.get(name);
  if (!group) {
    group = new Set();
    groups.set(name, group);
  }
  group.add(part);
}

export type IsolateMemory = {
  bytes: number;
  budget: number;
  parts: Record<string, { bytes: number; entries: number; budget: number; instances: number }>;
};

/** Accounted bytes of every per-isolate structure, and their budgets. */
export function isolateMemory(): IsolateMemory {
  const parts: IsolateMemory["parts"] = {};
  let bytes = 0;
  let budget = 0;
  for (const [name, group] of groups) {
    const p = { bytes: 0, entries: 0, budget: 0, instances: group.size };
    for (const a of group) {
      p.bytes += a.bytes();
      p.entries += a.entries();
      p.budget += a.budget();
    }
    parts[name] = p;
    bytes += p.bytes;
    budget += p.budget;
  }
  return { bytes, budget, parts };
}

/** Two 32-bit FNV-1a passes with different offsets: a 16-hex-digit, effectively collision-free key. */
export function hashKey(text: string): string {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x01000193) ^ (b >>> 15);
  }
  return `#${(a >>> 0).toString(16).padStart(8, "0")}${(b >>> 0).toString(16).padStart(8, "0")}`;
}

export type BoundedMapOptions<V> = {
  /** Byte budget of keys + values + overhead; oldest entries go first past it. */
  maxBytes: number;
  /** Keys longer than this are stored as a hash of themselves. */
  maxKeyLength?: number;
  /** Estimated bytes of one value. */
  sizeOf: (value: V) => number;
};

/** A Map with a byte budget and bounded keys, evicting in insertion order (a `set` refreshes an entry). */
export class BoundedMap<V> {
  private readonly map = new Map<string, { value: V; bytes: number }>();
  private used = 0;
  private readonly maxKeyLength: number;

  constructor(
    readonly name: string,
    private readonly o: BoundedMapOptions<V>,
  ) {
    this.maxKeyLength = o.maxKeyLength ?? 128;
    registerAccounted(name, { bytes: () => this.used, entries: () => this.map.size, budget: () => this.o.maxBytes });
  }

  private key(key: string): string {
    return key.length > this.maxKeyLength ? hashKey(key) : key;
  }

  get(key: string): V | undefined {
    return this.map.get(this.key(key))?.value;
  }

  has(key: string): boolean {
    return this.map.has(this.key(key));
  }

  /** `valueBytes` overrides `sizeOf` when the caller knows better (e.g. the JSON length a value was parsed from). */
  set(key: string, value: V, valueBytes = this.o.sizeOf(value)): void {
    const k = this.key(key);
    this.delete(k);
    const bytes = k.length * 2 + valueBytes + ENTRY_OVERHEAD;
    if (bytes > this.o.maxBytes) return;
    this.map.set(k, { value, bytes });
    this.used += bytes;
    while (this.used > this.o.maxBytes) {
      const oldest = this.map.keys().next().value;
      if (oldest === undefined) break;
      this.delete(oldest);
    }
  }

  delete(key: string): void {
    const k = this.key(key);
    const e = this.map.get(k);
    if (!e) return;
    this.map.delete(k);
    this.used -= e.bytes;
  }

  clear(): void {
    this.map.clear();
    this.used = 0;
  }

  get size(): number {
    return this.map.size;
  }

  get bytes(): number {
    return this.used;
  }
}

/** Estimated bytes of a string held in memory (UTF-16). */
export const stringBytes = (s: string) => s.length * 2;
