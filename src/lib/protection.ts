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
} as const;

/** The admin import, and the console's upload of the same file (which calls the same import code). */
const IMPORT_PATHS = new Set(["/admin/import", "/console/imports"]);
/** The operator console posts HTML forms. */
const CONSOLE_FORM_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data"];
const isConsolePath = (path: string) => path === "/console" || path.startsWith("/console/");
const IMPORT_TYPES = ["application/x-ndjson", "application/ndjson", "application/jsonl", "text/csv", "application/json"];
const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** Every binding the handlers see is bounded by a timeout and a circuit breaker (src/lib/guarded-env.ts). */
export const guardBindings = createMiddleware<AppEnv>(async (c, next) => {
  c.env = guardEnv(c.env);
  await next();
});

function tooLarge(what: string, limit: number): ApiError {
  return new ApiError(413, "payload-too-large", "Payload Too Large", `The ${what} exceeds ${limit} bytes.`, { limit_bytes: limit });
}

/** 414 for overlong URLs, 431 for oversized headers: cheap checks that spare the router and the validators. */
export const requestShapeLimits = createMiddleware<AppEnv>(async (c, next) => {
  if (c.req.url.length > LIMITS.urlBytes) {
    throw new ApiError(414, "uri-too-long", "URI Too Long", `The URL exceeds ${LIMITS.urlBytes} bytes.`);
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

/** 415 unless the body is JSON (or, for the bulk import, one of its documented line formats). */
export const contentTypeCheck = createMiddleware<AppEnv>(async (c, next) => {
  if (BODY_METHODS.has(c.req.method) && hasBody(c.req.raw)) {
    const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    const isImport = IMPORT_PATHS.has(c.req.path);
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
  return IMPORT_PATHS.has(c.req.path) ? importBodyLimit(c, next) : jsonBodyLimit(c, next);
});
