import { createMiddleware } from "hono/factory";
import { bodyLimit } from "hono/body-limit";
import type { AppEnv } from "../env";
import { ApiError } from "./errors";
import { guardEnv } from "./guarded-env";

/** Request-shape limits, enforced before any handler reads the request. */
export const LIMITS = {
  /** JSON bodies: the largest legitimate one (a product with every translation) is far below this. */
  bodyBytes: 1024 * 1024,
  /** Bulk import streams NDJSON/CSV: 100,000 lines fit comfortably. */
  importBodyBytes: 100 * 1024 * 1024,
  headerBytes: 16 * 1024,
  singleHeaderBytes: 8 * 1024,
  urlBytes: 8 * 1024,
  /** The longest legitimate query (200 brand names, a cursor) stays well below this. */
  queryBytes: 4 * 1024,
  /** Any one query value (the longest real ones are cursors of a few hundred bytes). */
  queryValueBytes: 2 * 1024,
} as const;

/** The admin import, and the console's upload of the same file (which calls the same import code). */
const IMPORT_PATHS = new Set(["/admin/import", "/console/imports"]);
/** A part of a multi-part import takes the same body as a whole import. */
const IMPORT_PART_PATH = /^\/admin\/imports\/[^/]+\/parts\/[^/]+$/;
const isImportPath = (path: string) => IMPORT_PATHS.has(path) || IMPORT_PART_PATH.test(path);
/** The operator console posts HTML forms. */
const CONSOLE_FORM_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data"];
const isConsolePath = (path: string) => path === "/console" || path.startsWith("/console/");
/**
 * Headers whose values end up in a response header, a storage key or SQL. Only printable ASCII is accepted:
 * anything else there is a broken or hostile client, never a shopper.
 */
const ECHOED_HEADERS = ["idempotency-key", "x-d1-bookmark", "x-shopper-country", "x-shopper-region", "accept-language", "if-none-match", "if-match", "origin", "referer"];
const PRINTABLE_ASCII = /^[\x20-\x7e\t]*$/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

const IMPORT_TYPES = ["application/x-ndjson", "application/ndjson", "application/jsonl", "text/csv", "application/json"];
const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/**
 * Every binding the handlers see is bounded by a timeout and a circuit breaker (src/lib/guarded-env.ts); the
 * reservation routes get their own D1 breaker, so catalog traffic cannot open it.
 */
export const guardBindings = createMiddleware<AppEnv>(async (c, next) => {
  c.env = guardEnv(c.env, c.req.path.startsWith("/v1/reservations") ? "checkout" : "catalog");
  await next();
});

function tooLarge(what: string, limit: number): ApiError {
  return new ApiError(413, "payload-too-large", "Payload Too Large", `The ${what} exceeds ${limit} bytes.`, { limit_bytes: limit });
}

/** 414 for overlong URLs, 431 for oversized headers: cheap checks that spare the router and the validators. */
export const requestShapeLimits = createMiddleware<AppEnv>(async (c, next) => {
  const url = c.req.url;
  if (url.length > LIMITS.urlBytes) {
    throw new ApiError(414, "uri-too-long", "URI Too Long", `The URL exceeds ${LIMITS.urlBytes} bytes.`);
  }
  const q = url.indexOf("?");
  if (q >= 0 && url.length - q - 1 > LIMITS.queryBytes) {
    throw new ApiError(414, "uri-too-long", "URI Too Long", `The query string exceeds ${LIMITS.queryBytes} bytes.`);
  }
  let total = 0;
  for (const [name, value] of c.req.raw.headers) {
    const size = name.length + value.length;
    total += size;
    if (size > LIMITS.singleHeaderBytes || total > LIMITS.headerBytes) {
      throw new ApiError(
        431,
        "header-too-large",
        "Request Header Fields Too Large",
        `Headers are limited to ${LIMITS.singleHeaderBytes} bytes each and ${LIMITS.headerBytes} bytes in total.`,
      );
    }
  }
  await next();
});

function hasBody(req: Request): boolean {
  if (!req.body) return false;
  const length = req.headers.get("content-length");
  if (length !== null) return length.trim() !== "0";
  return true;
}

function badInput(location: string, path: string, message: string): ApiError {
  return ApiError.badRequest(`Invalid ${location}${path ? ` '${path}'` : ""}: ${message}.`, { errors: [{ location, path, message }] });
}

/** Strict percent-decoding: a malformed escape or invalid UTF-8 is a 400, never passed on half-decoded. */
function decodeStrict(raw: string, location: string, name: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, " "));
  } catch {
    throw badInput(location, name, "malformed percent-encoding or invalid UTF-8");
  }
}

/**
 * 400 for control characters (NUL, CR, LF…), invalid UTF-8 and oversized values anywhere in the path or the
 * query, and for non-printable echoed headers. These values become cache keys, Cache-Tag headers, KV keys and
 * SQL parameters further in; refusing them here keeps every handler's zod schema about meaning, not bytes.
 */
export const inputHygiene = createMiddleware<AppEnv>(async (c, next) => {
  const url = c.req.url;
  const start = url.indexOf("/", url.indexOf("//") + 2);
  const q = url.indexOf("?", start);
  const path = url.slice(start, q < 0 ? undefined : q);
  if (CONTROL.test(decodeStrict(path, "path", ""))) throw badInput("path", "", "control characters are not allowed");
  if (q >= 0) {
    for (const pair of url.slice(q + 1).split("&")) {
      if (!pair) continue;
      const eq = pair.indexOf("=");
      const name = decodeStrict(eq < 0 ? pair : pair.slice(0, eq), "query", "");
      const value = eq < 0 ? "" : decodeStrict(pair.slice(eq + 1), "query", name.slice(0, 40));
      if (CONTROL.test(name) || CONTROL.test(value)) throw badInput("query", name.slice(0, 40), "control characters are not allowed");
      if (value.length > LIMITS.queryValueBytes) throw badInput("query", name.slice(0, 40), `longer than ${LIMITS.queryValueBytes} characters`);
    }
  }
  for (const name of ECHOED_HEADERS) {
    const value = c.req.raw.headers.get(name);
    if (value !== null && !PRINTABLE_ASCII.test(value)) throw badInput("header", name, "only printable ASCII is allowed");
  }
  await next();
});

/** 415 unless the body is JSON (or, for the bulk import, one of its documented line formats). */
export const contentTypeCheck = createMiddleware<AppEnv>(async (c, next) => {
  if (BODY_METHODS.has(c.req.method) && hasBody(c.req.raw)) {
    const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    const isImport = isImportPath(c.req.path);
    const ok = isImport
      ? IMPORT_TYPES.includes(type)
      : type === "application/json" || /^application\/[a-z0-9.+-]+\+json$/.test(type) || (isConsolePath(c.req.path) && CONSOLE_FORM_TYPES.includes(type));
    if (!ok) {
      const accepted = isImport ? IMPORT_TYPES : ["application/json"];
      throw new ApiError(
        415,
        "unsupported-media-type",
        "Unsupported Media Type",
        `Send the body as ${accepted.join(" or ")}${type ? ` (got ${type})` : " with a Content-Type header"}.`,
        { accepted },
        { "Accept-Post": accepted.join(", ") },
      );
    }
  }
  await next();
});

const jsonBodyLimit = bodyLimit({
  maxSize: LIMITS.bodyBytes,
  onError: () => {
    throw tooLarge("request body", LIMITS.bodyBytes);
  },
});

/**
 * The import is streamed by its handler, so it is not buffered here: a declared length is checked up front and
 * an undeclared one is counted as the handler reads, failing the read with 413 past the limit.
 */
const importBodyLimit = createMiddleware<AppEnv>(async (c, next) => {
  const req = c.req.raw;
  if (!req.body) return next();
  const declared = req.headers.get("content-length");
  if (declared !== null && !req.headers.has("transfer-encoding")) {
    if (Number.parseInt(declared, 10) > LIMITS.importBodyBytes) throw tooLarge("import", LIMITS.importBodyBytes);
    return next();
  }
  let seen = 0;
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      seen += chunk.byteLength;
      if (seen > LIMITS.importBodyBytes) controller.error(tooLarge("import", LIMITS.importBodyBytes));
      else controller.enqueue(chunk);
    },
  });
  c.req.raw = new Request(req, { body: req.body.pipeThrough(counter) });
  await next();
});

/** 413 past the body limit; the bulk import gets its own, larger, streaming limit. */
export const bodySizeLimit = createMiddleware<AppEnv>(async (c, next) => {
  if (!BODY_METHODS.has(c.req.method)) return next();
  return isImportPath(c.req.path) ? importBodyLimit(c, next) : jsonBodyLimit(c, next);
});

/**
 * Reads what a handler left unread of a request body before the answer goes out (a 401, 429 or 4xx given before
 * the body mattered). A connection whose request body is still unread cannot carry the next request, and the
 * caller sees a dropped connection instead of our answer; under `wrangler dev` its proxy turned that into 503s for
 * unauthenticated reservation posts. Only bodies the limits allow are read; a larger or undeclared one is
 * cancelled (it was refused with 413, or never wanted).
 */
export const drainUnreadBody = createMiddleware<AppEnv>(async (c, next) => {
  await next();
  const req = c.req.raw;
  if (!req.body || req.bodyUsed) return;
  const declared = Number.parseInt(req.headers.get("content-length") ?? "", 10);
  // A body refused with 413 is read and dropped too, up to a bound: cancelling it mid-upload left the connection
  // hanging under `wrangler dev` (the client never saw the 413). Past the bound, or undeclared, it is cancelled.
  if (Number.isFinite(declared) && declared <= DRAIN_MAX_BYTES) await req.body.pipeTo(new WritableStream()).catch(() => undefined);
  else await req.body.cancel().catch(() => undefined);
});

/** How much of an unread request body is read to keep the connection usable (Workers accept up to 100 MB). */
const DRAIN_MAX_BYTES = 16 * 1024 * 1024;
