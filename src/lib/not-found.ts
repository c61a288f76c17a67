import type { Context, Hono } from "hono";
import type { AppEnv } from "../env";
import { ApiError, problemResponse } from "./errors";

type RouteShape = { pattern: RegExp; method: string };

function compile(path: string): RegExp {
  const source = path
    .split("/")
    .map((segment) => {
      if (segment === "*") return ".*";
      if (segment.startsWith(":")) return "[^/]+";
      return segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    })
    .join("/");
  return new RegExp(`^${source}/?$`);
}

/**
 * Hono answers 404 for a known path with the wrong method; clients deserve 405 with `Allow`.
 * The route table is read once, lazily, after every sub-app has been mounted.
 */
export function notFoundHandler(app: Hono<AppEnv>) {
  let shapes: RouteShape[] | undefined;
  return (c: Context<AppEnv>) => {
    shapes ??= app.routes
      .filter((r) => r.method !== "ALL" && r.path !== "*")
      .map((r) => ({ pattern: compile(r.path), method: r.method }));
    const path = new URL(c.req.url).pathname;
    const allowed = [...new Set(shapes.filter((s) => s.pattern.test(path)).map((s) => s.method))];
    if (allowed.length > 0) {
      if (allowed.includes("GET")) allowed.push("HEAD");
      const err = new ApiError(
        405,
        "method-not-allowed",
        "Method Not Allowed",
        `${c.req.method} is not allowed on ${path}; use ${allowed.join(", ")}.`,
        {},
        { Allow: allowed.join(", ") },
      );
      return problemResponse(c, err);
    }
    return problemResponse(c, ApiError.notFound(`No route matches ${c.req.method} ${path}.`));
  };
}
