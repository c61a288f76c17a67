/**
 * What the generated OpenAPI document cannot know from one route's definition: the answers the cross-cutting
 * middleware of src/app.ts gives on every route (414/431 request shape, 413/415 bodies, 429 rate limits, 401/403
 * keys, 503 breakers and load shedding, 500), the security each path prefix requires, the servers, and the one
 * problem shape of every error. It is derived from the same functions the middleware uses (`routeClass`), so a
 * route added later is described correctly without touching this file, and test/openapi.test.ts checks that every
 * operation ends up with security and problem responses.
 */
import { routeClass } from "../lib/rate-limit";

type Json = Record<string, unknown>;
type Operation = Json & {
  operationId?: string;
  summary?: string;
  security?: Requirement[];
  parameters?: Json[];
  requestBody?: Json;
  responses?: Record<string, Json>;
};
export type OpenApiDocument = Json & {
  paths?: Record<string, Record<string, unknown>>;
  components?: Json & { schemas?: Record<string, unknown>; responses?: Record<string, unknown>; securitySchemes?: Record<string, unknown> };
  servers?: { url: string; description?: string; variables?: Record<string, { default: string; description?: string }> }[];
};

export const METHODS = ["get", "put", "post", "patch", "delete", "head", "options"] as const;

export const SECURITY_SCHEMES = {
  adminToken: { type: "http", scheme: "bearer", description: "Operators: `Authorization: Bearer <ADMIN_TOKEN>` (locally `dev-admin-token`)." },
  storefrontKey: { type: "http", scheme: "bearer", description: "Checkouts: `Authorization: Bearer <storefront key>` (locally `dev-storefront-key`)." },
  affiliateKey: { type: "http", scheme: "bearer", description: "Affiliates: `Authorization: Bearer <affiliate key>` (locally `demo-affiliate-key`)." },
  affiliateBasic: { type: "http", scheme: "basic", description: "Affiliates whose fetcher only sends a user name and password (Merchant Center): any user name, the affiliate key as password." },
  affiliateKeyQuery: { type: "apiKey", in: "query", name: "key", description: "Browser embeds: `?key=<affiliate key>`, accepted only from the affiliate's allowed origins (Origin/Referer)." },
} as const;

type Requirement = Partial<Record<keyof typeof SECURITY_SCHEMES, string[]>>;

/** Who may call a path: the middleware of each sub-app decides by prefix, and so does this. */
export function securityFor(path: string): Requirement[] {
  if (path.startsWith("/admin/") || path === "/admin") return [{ adminToken: [] }];
  if (path.startsWith("/v1/reservations")) return [{ storefrontKey: [] }];
  if (path.startsWith("/v1/feeds/")) return [{ affiliateKey: [] }, { affiliateBasic: [] }, { affiliateKeyQuery: [] }];
  return [];
}

const PROBLEM_REF = { $ref: "#/components/schemas/Problem" };
const PROBLEM_SCHEMA = {
  type: "object",
  description: "RFC 9457 problem details; extension members (errors, shortfalls, rule, current_version…) ride alongside.",
  properties: {
    type: { type: "string", format: "uri" },
    title: { type: "string" },
    status: { type: "integer" },
    detail: { type: "string" },
    request_id: { type: "string" },
  },
  required: ["type", "title", "status", "request_id"],
  additionalProperties: {},
};

type Shared = { name: string; slug: string; title: string; description: string; detail: string; headers?: Record<string, Json> };

const RETRY_AFTER = { "Retry-After": { description: "Seconds to wait before retrying.", schema: { type: "integer" } } };
const RATE_HEADERS = {
  ...RETRY_AFTER,
  "RateLimit-Limit": { description: "Requests allowed per period for this route class.", schema: { type: "integer" } },
  "RateLimit-Remaining": { description: "Requests left in the current period.", schema: { type: "integer" } },
  "RateLimit-Reset": { description: "Seconds until the period resets.", schema: { type: "integer" } },
  "RateLimit-Policy": { description: "The policy, e.g. `1000;w=10`.", schema: { type: "string" } },
};

/** Answers shared by many operations, as named components (one definition, one example each). */
const SHARED: Record<string, Shared> = {
  "400": { name: "BadRequest", slug: "bad-request", title: "Bad Request", description: "Invalid parameter, header or body; `errors` lists each field.", detail: "Invalid query field 'limit': Too big: expected number to be <=100" },
  "401": { name: "Unauthorized", slug: "unauthorized", title: "Unauthorized", description: "Missing, unknown, expired or revoked credentials.", detail: "Unknown, expired or revoked key.", headers: { "WWW-Authenticate": { description: "`Bearer realm=\"edgeshelf\"`", schema: { type: "string" } } } },
  "403": { name: "Forbidden", slug: "forbidden", title: "Forbidden", description: "The key is valid but may not do this (wrong kind of key, or `?key=` from an origin the affiliate has not allowed).", detail: "This key may not reserve stock; use a storefront key." },
  "404": { name: "NotFound", slug: "not-found", title: "Not Found", description: "No such resource (or not visible to this key).", detail: "No product 'p-999999'." },
  "413": { name: "PayloadTooLarge", slug: "payload-too-large", title: "Payload Too Large", description: "The body exceeds 1 MiB (100 MiB for the bulk import).", detail: "The request body exceeds 1048576 bytes." },
  "414": { name: "UriTooLong", slug: "uri-too-long", title: "URI Too Long", description: "The URL exceeds 8 KiB.", detail: "The URL exceeds 8192 bytes." },
  "415": { name: "UnsupportedMediaType", slug: "unsupported-media-type", title: "Unsupported Media Type", description: "The body is not `application/json` (or, for the import, NDJSON/CSV).", detail: "Send the body as application/json." },
  "429": { name: "TooManyRequests", slug: "rate-limited", title: "Too Many Requests", description: "The client's rate limit for this route class is used up (or, for reservations, its hold cap: `hold-limit`).", detail: "Rate limit of the browse class exceeded; retry after the reset.", headers: RATE_HEADERS },
  "431": { name: "HeadersTooLarge", slug: "request-header-fields-too-large", title: "Request Header Fields Too Large", description: "A header exceeds 8 KiB, or all together 16 KiB.", detail: "The request headers exceed 16384 bytes." },
  "500": { name: "InternalError", slug: "internal", title: "Internal Server Error", description: "An unexpected error; it is logged with the request id.", detail: "An unexpected error occurred; it has been logged." },
  "503": { name: "Unavailable", slug: "unavailable", title: "Service Unavailable", description: "A dependency is failing (circuit breaker open) or catalog reads are being shed to serve checkouts; retry after `Retry-After`.", detail: "The catalog database is unavailable; retry shortly.", headers: RETRY_AFTER },
};

function sharedResponse(s: Shared, code: string): Json {
  return {
    description: s.description,
    ...(s.headers ? { headers: s.headers } : {}),
    content: {
      "application/problem+json": {
        schema: PROBLEM_REF,
        example: { type: `https://edgeshelf.dev/problems/${s.slug}`, title: s.title, status: Number(code), detail: s.detail, request_id: "0f8e2c4a-5b7d-4e21-9a3c-6d1f0b2e8a47" },
      },
    },
  };
}

const sampleFor = (path: string) => path.replace(/\{[^}]+\}/g, "x");

function operationIdFor(method: string, path: string): string {
  const words = path
    .split("/")
    .filter(Boolean)
    .map((seg) => (seg.startsWith("{") ? `by-${seg.slice(1, -1)}` : seg))
    .join("-")
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean);
  return [method, ...words].map((w, i) => (i === 0 ? w.toLowerCase() : w[0]!.toUpperCase() + w.slice(1))).join("");
}

/** Adds what the middleware makes true of every operation, leaving whatever a route declared itself untouched. */
export function completeContract<T extends object>(generated: T): T {
  const doc = generated as OpenApiDocument;
  const components = (doc.components ??= {});
  components.securitySchemes = { ...SECURITY_SCHEMES, ...(components.securitySchemes ?? {}) };
  components.schemas = { Problem: PROBLEM_SCHEMA, ...(components.schemas ?? {}) };
  const responses = (components.responses ??= {}) as Record<string, unknown>;

  doc.servers ??= [
    { url: "/", description: "This server (the origin the reference page or the client was loaded from)" },
    { url: "http://localhost:8787", description: "Local development (`npm run dev`)" },
    {
      url: "https://{worker}.{subdomain}.workers.dev",
      description: "Production (`wrangler deploy --env production`), or your own route",
      variables: { worker: { default: "edgeshelf" }, subdomain: { default: "your-account", description: "Your workers.dev subdomain" } },
    },
  ] as { url: string; description?: string }[];

  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const method of METHODS) {
      const op = item[method] as Operation | undefined;
      if (!op) continue;
      op.operationId ??= operationIdFor(method, path);
      op.security ??= securityFor(path);
      const r = (op.responses ??= {});
      const add = (code: string) => {
        if (r[code]) return;
        const shared = SHARED[code]!;
        responses[shared.name] ??= sharedResponse(shared, code);
        r[code] = { $ref: `#/components/responses/${shared.name}` };
      };
      const hasInput = (op.parameters?.length ?? 0) > 0 || op.requestBody !== undefined;
      if (hasInput) add("400");
      if (op.security.length > 0) add("401");
      if (op.security.some((s) => "storefrontKey" in s || "affiliateKey" in s)) add("403");
      if (op.requestBody !== undefined) {
        add("413");
        add("415");
      }
      if (routeClass(method.toUpperCase(), sampleFor(path), new URLSearchParams()) !== undefined) add("429");
      add("414");
      add("431");
      add("500");
      add("503");
      // A route's own error entries without a body get the problem shape every error has.
      for (const [code, res] of Object.entries(r)) {
        if (Number(code) < 400 || "$ref" in res || res.content) continue;
        res.content = { "application/problem+json": { schema: PROBLEM_REF } };
      }
    }
  }
  return generated;
}
