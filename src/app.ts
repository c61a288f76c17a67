import { cors } from "hono/cors";
import type { AppEnv } from "./env";
import { onError } from "./lib/errors";
import { notFoundHandler } from "./lib/not-found";
import { requestId } from "./lib/request-id";
import { createApp } from "./lib/validation";
import { docsApp } from "./routes/docs";
import { healthApp } from "./routes/health";

/** Builds the whole API: cross-cutting middleware first, then one sub-app per resource. */
export function buildApp() {
  const app = createApp();
  app.use("*", requestId);
  app.use("/v1/*", cors({ origin: "*", allowMethods: ["GET", "HEAD", "OPTIONS"], exposeHeaders: ["ETag", "x-cache-tier", "x-request-id", "Server-Timing"] }));

  app.route("/", healthApp);

  app.route("/", docsApp(app));
  app.onError(onError);
  app.notFound(notFoundHandler(app));
  return app;
}

export type App = ReturnType<typeof buildApp>;
export type { AppEnv };
