/**
 * The one tiered read path of the public catalog: Cache API (this colo) → KV (global) → D1 (origin).
 *
 * Routes describe a read (cache key, how to read KV and D1, how to render) and get back a complete response
 * with `x-cache-tier`, `ETag`, `Cache-Control`, `Cache-Tag`, `Server-Timing`, 304 handling and stale-if-error.
 *
 * Monotonic reads ("never show a version older than one already shown"): every versioned response records
 * its document version in `x-doc-version`. The floor for a read is the newest version this isolate has served
 * and the version of the colo's last-good copy; an edge or KV copy below the floor is skipped, a D1 replica
 * below it is re-read from the primary, and nothing below the floor is ever written back to the cache or KV.
 *
 * Stale-if-error: each response is also stored under a long-lived "last good" key that purges leave alone.
 * When KV and D1 throw or time out (every binding call is bounded), that copy is served with `x-stale: true`
 * and a `Warning`; only when there is none does the read fail with 503.
 */
import { ApiError } from "../lib/errors";
import { withTimeout } from "../lib/resilience";
import { BoundedMap } from "../lib/isolate-memory";
import { cacheTagHeader, lastGoodKey } from "./cache-keys";

export type DocVersion = { version: number; stock_seq: number };

export type Rendered = {
  body: string;
  /** Opaque validator without quotes; must change whenever `body` does (version + render variant). */
  etag: string;
  tags: string[];
  version?: DocVersion;
  contentLanguage?: string;
  /**
   * Seconds until this body changes by itself (e.g. the next promotion boundary). Caps s-maxage, the edge
   * TTL and the KV expiry so no tier serves it past that moment.
   */
  maxAgeCap?: number;
};

export type CachePolicy = {
  /** Freshness at the edge and in shared caches. */
  sMaxAge: number;
  staleWhileRevalidate: number;
  /** How long the last-good copy is kept for stale-if-error. */
  staleIfError: number;
};

export type Timeouts = { edge: number; kv: number; d1: number };

export const DEFAULT_POLICY: CachePolicy = { sMaxAge: 60, staleWhileRevalidate: 30, staleIfError: 86_400 };
export const DEFAULT_TIMEOUTS: Timeouts = { edge: 250, kv: 1_000, d1: 3_000 };

export type OriginRead = {
  /** True on the second attempt, after the first answer was older than a version already served. */
  primary: boolean;
};

export type TieredRead<D> = {
  request: Request;
  /** Normalised key from cache-keys.ts. */
  cacheKey: string;
  waitUntil: (p: Promise<unknown>) => void;
  /** Monotonic-read identity (e.g. the product id); omit for unversioned responses such as listings. */
  versionKey?: string;
  versionOf?: (doc: D) => DocVersion;
  kv?: { read: () => Promise<D | null>; write: (doc: D, ttlSeconds: number | undefined) => Promise<unknown> };
  origin: (opts: OriginRead) => Promise<D | null>;
  /** Throw an ApiError (404, 410…) for documents that must not be shown. */
  render: (doc: D) => Rendered | Promise<Rendered>;
  notFound: () => ApiError;
  /** Skip the edge and KV (read-your-writes with a D1 bookmark). */
  bypassCache?: boolean;
  policy?: Partial<CachePolicy>;
  timeouts?: Partial<Timeouts>;
  /** Added to every response from this read (Vary, Content-Language, x-d1-bookmark…). */
  headers?: Record<string, string>;
  cache?: Cache;
  /**
   * The instant of this read (src/lib/clock.ts). An edge copy whose `maxAgeCap` ran out by this instant is a
   * miss, even if the Cache API (which counts whole seconds of wall time) would still return it.
   */
  now?: number;
};

// ---- monotonic floor, per isolate -------------------------------------------------------------------

// Keys are product ids and answer keys (long ones hashed); 2 MB holds about 15,000 of them.
const served = new BoundedMap<DocVersion>("read-path.served-floor", { maxBytes: 2 * 1024 * 1024, maxKeyLength: 64, sizeOf: () => 48 });

export function compareVersions(a: DocVersion, b: DocVersion): number {
  return a.version !== b.version ? a.version - b.version : a.stock_seq - b.stock_seq;
}

function maxVersion(a: DocVersion | undefined, b: DocVersion | undefined): DocVersion | undefined {
  if (!a) return b;
  if (!b) return a;
  return compareVersions(a, b) >= 0 ? a : b;
}

function noteServed(key: string, v: DocVersion): void {
  const prev = served.get(key);
  if (prev && compareVersions(prev, v) >= 0) return;
  served.set(key, v);
}

/** The newest version of `key` this isolate has answered with (exported for tests and the purger). */
export function servedVersion(key: string): DocVersion | undefined {
  return served.get(key);
}

const VERSION_HEADER = "x-doc-version";

export function formatVersion(v: DocVersion): string {
  return `${v.version}.${v.stock_seq}`;
}

export function parseVersion(header: string | null): DocVersion | undefined {
  if (!header) return undefined;
  const [version, seq] = header.split(".").map(Number);
  return Number.isFinite(version) && Number.isFinite(seq) ? { version: version!, stock_seq: seq! } : undefined;
}

// ---- headers ----------------------------------------------------------------------------------------

/** Internal headers on stored copies; stripped before a response leaves the worker. */
const CLIENT_CC = "x-es-client-cache-control";
/** Epoch ms after which a stored primary copy must not be served (next promotion boundary). */
const VALID_UNTIL = "x-es-valid-until";

function clientCacheControl(policy: CachePolicy, cap: number | undefined): { header: string; ttl: number } {
  let sMaxAge = policy.sMaxAge;
  let swr = policy.staleWhileRevalidate;
  if (cap !== undefined) {
    sMaxAge = Math.max(0, Math.min(sMaxAge, Math.floor(cap)));
    // Serving stale past a boundary would show the wrong price: no revalidation window across it.
    swr = Math.max(0, Math.min(swr, Math.floor(cap) - sMaxAge));
  }
  return {
    header: `public, max-age=0, s-maxage=${sMaxAge}, stale-while-revalidate=${swr}, stale-if-error=${policy.staleIfError}`,
    ttl: sMaxAge,
  };
}

/** A stored copy served later must not let shared caches keep it past its boundary: shrink s-maxage (and SWR). */
function capSMaxAge(cacheControl: string, secondsLeft: number): string {
  const left = Math.max(0, Math.floor(secondsLeft));
  return cacheControl
    .replace(/s-maxage=(\d+)/, (_, n: string) => `s-maxage=${Math.min(Number(n), left)}`)
    .replace(/stale-while-revalidate=(\d+)/, "stale-while-revalidate=0");
}

function etagMatches(ifNoneMatch: string | null, etag: string | null): boolean {
  if (!ifNoneMatch || !etag) return false;
  if (ifNoneMatch.trim() === "*") return true;
  const bare = etag.replace(/^W\//, "");
  return ifNoneMatch.split(",").some((t) => t.trim().replace(/^W\//, "") === bare);
}

class Timing {
  private parts: string[] = [];
  private readonly start = performance.now();
  async time<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const t = performance.now();
    try {
      return await fn();
    } finally {
      this.parts.push(`${name};dur=${(performance.now() - t).toFixed(2)}`);
    }
  }
  header(): string {
    return [...this.parts, `total;dur=${(performance.now() - this.start).toFixed(2)}`].join(", ");
  }
}

/** Turns a stored copy into the client's response (304 when the validator matches). */
function fromStored(stored: Response, req: Request, tier: string, timing: Timing, extra: Record<string, string>, stale: boolean): Response {
  const headers = new Headers(stored.headers);
  const clientCc = headers.get(CLIENT_CC);
  headers.delete(CLIENT_CC);
  headers.delete(VALID_UNTIL);
  headers.delete("age");
  headers.delete("cf-cache-status");
  headers.set("cache-control", stale ? "no-cache" : clientCc ?? "no-cache");
  headers.set("x-cache-tier", tier);
  if (stale) {
    headers.set("x-stale", "true");
    headers.set("warning", '110 edgeshelf "Response is Stale"');
  }
  for (const [k, v] of Object.entries(extra)) headers.set(k, v);
  headers.set("server-timing", timing.header());
  if (etagMatches(req.headers.get("if-none-match"), headers.get("etag"))) {
    headers.delete("content-type");
    headers.delete("content-length");
    return new Response(null, { status: 304, headers });
  }
  return new Response(stored.body, { status: stored.status, headers });
}

// ---- the read ---------------------------------------------------------------------------------------

export async function tieredRead<D>(opts: TieredRead<D>): Promise<Response> {
  const policy = { ...DEFAULT_POLICY, ...opts.policy };
  const timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
  const cache = opts.cache ?? caches.default;
  const timing = new Timing();
  const extra = opts.headers ?? {};
  const goodKey = lastGoodKey(opts.cacheKey);
  const isolateFloor = opts.versionKey ? served.get(opts.versionKey) : undefined;

  const matchBounded = (key: string) => withTimeout(cache.match(key), timeouts.edge, "edge").catch(() => undefined);

  if (!opts.bypassCache) {
    const hit = await timing.time("edge", () => matchBounded(opts.cacheKey));
    const until = Number(hit?.headers.get(VALID_UNTIL) ?? NaN);
    if (hit && Number.isFinite(until) && (opts.now ?? Date.now()) >= until) {
      await hit.body?.cancel();
    } else if (hit) {
      const v = parseVersion(hit.headers.get(VERSION_HEADER));
      if (!isolateFloor || !v || compareVersions(v, isolateFloor) >= 0) {
        if (opts.versionKey && v) noteServed(opts.versionKey, v);
        const res = fromStored(hit, opts.request, "edge", timing, extra, false);
        if (Number.isFinite(until)) res.headers.set("cache-control", capSMaxAge(res.headers.get("cache-control") ?? "", (until - (opts.now ?? Date.now())) / 1000));
        return res;
      }
      await hit.body?.cancel();
    }
  }

  // Miss: the colo's last-good copy both raises the floor and is the fallback if the origin fails.
  const lastGoodPromise = matchBounded(goodKey);
  let floor = isolateFloor;
  const older = (doc: D) => !!(opts.versionOf && floor && compareVersions(opts.versionOf(doc), floor) < 0);

  let doc: D | null = null;
  let tier: "kv" | "d1" = "d1";
  try {
    let kvDoc: D | null = null;
    if (opts.kv && !opts.bypassCache) {
      const kv = opts.kv;
      kvDoc = await timing.time("kv", () => withTimeout(kv.read(), timeouts.kv, "kv")).catch(() => null);
    }
    const lastGood = await lastGoodPromise;
    floor = maxVersion(floor, parseVersion(lastGood?.headers.get(VERSION_HEADER) ?? null));
    if (opts.versionKey && floor) noteServed(opts.versionKey, floor);
    if (kvDoc && !older(kvDoc)) {
      doc = kvDoc;
      tier = "kv";
    } else {
      doc = await timing.time("d1", () => withTimeout(opts.origin({ primary: false }), timeouts.d1, "d1"));
      if (doc && older(doc)) {
        // A lagging read replica: ask the primary rather than step back in time.
        doc = await timing.time("d1-primary", () => withTimeout(opts.origin({ primary: true }), timeouts.d1, "d1"));
      }
      if (doc === null) {
        await lastGood?.body?.cancel();
        throw opts.notFound();
      }
      if (older(doc)) throw new Error("origin is older than a version already served");
    }
    await lastGood?.body?.cancel();
  } catch (err) {
    // 4xx answers (404…) are answers; 5xx ApiErrors (timeouts, open breakers) are origin failures.
    if (err instanceof ApiError && err.status < 500) throw err;
    const lastGood = await lastGoodPromise;
    console.warn(JSON.stringify({ level: "warn", message: lastGood ? "origin failed, serving stale" : "origin failed, nothing cached", key: opts.cacheKey, cause: String(err) }));
    if (lastGood) return fromStored(lastGood, opts.request, "edge", timing, extra, true);
    throw ApiError.unavailable("The catalog origin is unavailable and no cached copy exists; retry shortly.", 2);
  }

  const rendered = await opts.render(doc);
  const { header: cacheControl, ttl } = clientCacheControl(policy, rendered.maxAgeCap);
  const etag = `"${rendered.etag}"`;
  const headers: Record<string, string> = {
    "content-type": "application/json; charset=utf-8",
    etag,
    "cache-tag": cacheTagHeader(rendered.tags),
  };
  if (rendered.version) headers[VERSION_HEADER] = formatVersion(rendered.version);
  if (rendered.contentLanguage) headers["content-language"] = rendered.contentLanguage;
  if (opts.versionKey && rendered.version) noteServed(opts.versionKey, rendered.version);

  if (tier === "d1" && opts.kv) {
    opts.waitUntil(withTimeout(opts.kv.write(doc, rendered.maxAgeCap), timeouts.kv * 2, "kv").catch(() => undefined));
  }
  // The change this copy may have raced: the consumer writes KV first and purges after, so a KV version newer than
  // the copy, read after the copy is stored, means a purge may already have run and missed it.
  const kvRead = opts.kv?.read;
  const versionOf = opts.versionOf;
  const newestKnown = kvRead && versionOf ? async () => {
    const d = await withTimeout(kvRead(), timeouts.kv, "kv");
    return d ? versionOf(d) : undefined;
  } : undefined;
  if (ttl > 0) opts.waitUntil(storeCopies(cache, opts.cacheKey, goodKey, rendered, headers, cacheControl, ttl, policy, timeouts, opts.now ?? Date.now(), newestKnown).catch(() => undefined));

  const out = new Headers(headers);
  out.set("cache-control", cacheControl);
  out.set("x-cache-tier", tier);
  for (const [k, v] of Object.entries(extra)) out.set(k, v);
  out.set("server-timing", timing.header());
  if (etagMatches(opts.request.headers.get("if-none-match"), etag)) {
    out.delete("content-type");
    return new Response(null, { status: 304, headers: out });
  }
  return new Response(rendered.body, { status: 200, headers: out });
}

/**
 * Writes the primary (fresh for `ttl`) and last-good copies, unless a newer version landed there meanwhile
 * (a concurrent read that saw a newer document must win; Cache API has no compare-and-set, so re-check).
 *
 * A read in flight while its product changes would otherwise put the old version back after the consumer's purge
 * (nothing newer is cached then, so the check above lets it in) and every isolate of the colo would serve it until
 * its TTL. So once the primary copy is stored, `newestKnown` (the KV document's version: the consumer writes KV
 * before it purges) is read again; when it is newer, this copy raced a purge and is deleted. Either the re-read
 * sees the new version, or it ran before the consumer's KV write and so before its purge, which then removes the
 * copy. This costs one KV read in the background of a miss, none on a hit. Production purges by tag go to every
 * colo, but each colo's KV may lag by its cache TTL: a copy read from a lagging KV is as fresh as that colo's KV
 * and is no worse than the next miss would be.
 */
async function storeCopies(
  cache: Cache,
  key: string,
  goodKey: string,
  rendered: Rendered,
  headers: Record<string, string>,
  clientCc: string,
  ttl: number,
  policy: CachePolicy,
  timeouts: Timeouts,
  now: number,
  newestKnown?: () => Promise<DocVersion | undefined>,
): Promise<void> {
  const put = async (k: string, maxAge: number) => {
    if (rendered.version) {
      const current = await withTimeout(cache.match(k), timeouts.edge, "edge").catch(() => undefined);
      const cv = parseVersion(current?.headers.get(VERSION_HEADER) ?? null);
      await current?.body?.cancel();
      if (cv && compareVersions(cv, rendered.version) > 0) return;
    }
    const h = new Headers(headers);
    h.set(CLIENT_CC, clientCc);
    if (rendered.maxAgeCap !== undefined && k === key) h.set(VALID_UNTIL, String(Math.floor(now + rendered.maxAgeCap * 1000)));
    h.set("cache-control", `public, max-age=${maxAge}`);
    await withTimeout(cache.put(k, new Response(rendered.body, { status: 200, headers: h })), timeouts.edge * 4, "edge");
  };
  const putPrimary = async () => {
    await put(key, ttl);
    if (!newestKnown || !rendered.version) return;
    const newest = await newestKnown().catch(() => undefined);
    if (newest && compareVersions(newest, rendered.version) > 0) await withTimeout(cache.delete(key), timeouts.edge * 4, "edge");
  };
  await Promise.all([putPrimary(), put(goodKey, policy.staleIfError)]);
}
