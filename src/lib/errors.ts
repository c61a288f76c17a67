import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { ZodError } from "zod";
import type { AppEnv } from "../env";

const PROBLEM_BASE = "https://edgeshelf.dev/problems/";

/** RFC 9457 problem body. Extra members (shortfalls, unknown_skus, errors…) ride alongside. */
export type Problem = {
  type: string;
  title: string;
  status: number;
  detail?: string;
  request_id: string;
  [extension: string]: unknown;
};

/**
 * The one error type of the API. Throw it anywhere in a handler; `app.onError` turns it into
 * `application/problem+json`. `slug` becomes the problem `type` URI.
 */
export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly slug: string,
    readonly title: string,
    readonly detail?: string,
    readonly extensions: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail ?? title);
    this.name = "ApiError";
  }

  static badRequest(detail: string, extensions?: Record<string, unknown>) {
    return new ApiError(400, "bad-request", "Bad Request", detail, extensions);
  }
  static unauthorized(detail = "A valid bearer token is required.") {
    return new ApiError(401, "unauthorized", "Unauthorized", detail, {}, { "WWW-Authenticate": 'Bearer realm="edgeshelf"' });
  }
  static forbidden(detail: string) {
    return new ApiError(403, "forbidden", "Forbidden", detail);
  }
  static notFound(detail: string) {
    return new ApiError(404, "not-found", "Not Found", detail);
  }
  static conflict(detail: string, extensions?: Record<string, unknown>) {
    return new ApiError(409, "conflict", "Conflict", detail, extensions);
  }
  /** 412: the client's If-Match (or other precondition) does not hold; `currentVersion` tells it what would. */
  static preconditionFailed(detail: string, currentVersion?: number) {
    return new ApiError(412, "precondition-failed", "Precondition Failed", detail, currentVersion === undefined ? {} : { current_version: currentVersion });
  }
  /** 428: a write that would replace something must say which version it replaces. */
  static preconditionRequired(detail: string, currentVersion: number) {
    return new ApiError(428, "precondition-required", "Precondition Required", detail, { current_version: currentVersion });
  }
  static unprocessable(detail: string, extensions?: Record<string, unknown>) {
    return new ApiError(422, "unprocessable", "Unprocessable Content", detail, extensions);
  }
  static unavailable(detail: string, retryAfterSeconds = 1) {
    return new ApiError(503, "unavailable", "Service Unavailable", detail, {}, { "Retry-After": String(retryAfterSeconds) });
  }
}

export function problemResponse(c: Context<AppEnv>, err: ApiError): Response {
  const body: Problem = {
    ...err.extensions,
    type: PROBLEM_BASE + err.slug,
    title: err.title,
    status: err.status,
    request_id: c.get("requestId") ?? "unknown",
  };
  if (err.detail !== undefined) body.detail = err.detail;
  const headers = new Headers(err.headers);
  headers.set("content-type", "application/problem+json");
  headers.set("cache-control", "no-store");
  return new Response(JSON.stringify(body), { status: err.status, headers });
}

export type FieldError = { location: string; path: string; message: string };

export function fieldErrors(location: string, error: ZodError): FieldError[] {
  return error.issues.map((issue) => ({ location, path: issue.path.map(String).join("."), message: issue.message }));
}

/** The 400 for client input that fails its schema, listing each field; `detail` names the first. */
export function invalidInput(location: string, error: ZodError): ApiError {
  const errors = fieldErrors(location, error);
  const first = errors[0];
  return ApiError.badRequest(first ? `Invalid ${first.location}${first.path ? ` field '${first.path}'` : ""}: ${first.message}` : "Invalid request.", { errors });
}

/** Maps anything thrown into a problem; unknown errors become an opaque 500 (never a stack trace). */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  // A schema's .parse() throws this, and .parse() is only ever called on what a client sent (a console URL's id, …):
  // the client's mistake. Our own data (stored rows, queue messages, configuration, DO results) is checked with
  // safeParse where it is read and never rethrown as a ZodError, so a fault of ours cannot pass for a 4xx here.
  if (err instanceof ZodError) return invalidInput("input", err);
  if (err instanceof HTTPException) {
    const status = err.status as ContentfulStatusCode;
    const slug = status === 413 ? "payload-too-large" : status === 415 ? "unsupported-media-type" : "bad-request";
    const title = status === 413 ? "Payload Too Large" : status === 415 ? "Unsupported Media Type" : "Bad Request";
    return new ApiError(status, slug, title, err.message || title);
  }
  return new ApiError(500, "internal", "Internal Server Error", "An unexpected error occurred; it has been logged.");
}

export function onError(err: unknown, c: Context<AppEnv>): Response {
  const apiError = toApiError(err);
  // Expected client errors are not logged with stacks: under load that alone costs most of the throughput.
  if (apiError.status >= 500) {
    console.error(JSON.stringify({ level: "error", request_id: c.get("requestId"), message: String(err) }));
  }
  return problemResponse(c, apiError);
}
