/**
 * Conditional GET for feeds. The ETag is a hash of the exact bytes served (it covers live availability,
 * which moves without a catalog version bump), so a poller's If-None-Match is answered with 304 exactly
 * when it already holds this body.
 */
import { sha256Hex } from "../lib/crypto";

export function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  if (ifNoneMatch.trim() === "*") return true;
  const bare = etag.replace(/^W\//, "");
  return ifNoneMatch.split(",").some((t) => t.trim().replace(/^W\//, "") === bare);
}

export type ConditionalOptions = {
  contentType: string;
  cacheControl: string;
  /** Epoch ms; when set, Last-Modified is sent and If-Modified-Since is honoured (when no If-None-Match). */
  lastModified?: number;
  /** Epoch ms at which the data behind `lastModified` was read (taken before the read); defaults to now. */
  readAt?: number;
  honourIfModifiedSince?: boolean;
  vary?: string;
};

export async function conditionalResponse(request: Request, bodyText: string, opts: ConditionalOptions): Promise<Response> {
  const etag = `"${(await sha256Hex(bodyText)).slice(0, 32)}"`;
  const headers = new Headers({ etag, "cache-control": opts.cacheControl, "content-type": opts.contentType });
  if (opts.vary) headers.set("vary", opts.vary);
  let lastModifiedSec: number | undefined;
  if (opts.lastModified !== undefined && opts.lastModified > 0) {
    lastModifiedSec = Math.floor(opts.lastModified / 1000);
    // HTTP dates count whole seconds. A change in the same second as the read (or stamped later, by a skewed
    // clock) could be followed by another change in that second, and an If-Modified-Since echoing that second
    // could not tell the two apart: such a date is weak (RFC 9110 8.8.2.2). Sending the second before makes the
    // client's next If-Modified-Since miss it, so it gets a 200 once, then a date that validates.
    const readSec = Math.floor((opts.readAt ?? Date.now()) / 1000);
    headers.set("last-modified", new Date(Math.min(lastModifiedSec, readSec - 1) * 1000).toUTCString());
  }
  const inm = request.headers.get("if-none-match") ?? undefined;
  let notModified = etagMatches(inm, etag);
  if (!inm && opts.honourIfModifiedSince && lastModifiedSec !== undefined) {
    // Every date this sends covers the whole of its second (above), so the comparison at seconds is exact.
    const ims = Date.parse(request.headers.get("if-modified-since") ?? "");
    if (Number.isFinite(ims) && lastModifiedSec * 1000 <= ims) notModified = true;
  }
  if (notModified) {
    headers.delete("content-type");
    return new Response(null, { status: 304, headers });
  }
  return new Response(request.method === "HEAD" ? null : bodyText, { status: 200, headers });
}
