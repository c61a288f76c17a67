import { createRoute, z } from "@hono/zod-openapi";
import { supportedCurrencies } from "../catalog/locale";
import { requireStorefront } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { createApp } from "../lib/validation";
import { shopperRegion } from "../stock/locations";
import { holderKey, SHOPPER_HEADER, SHOPPER_ID_PATTERN, shopperIdentity } from "../stock/shopper";
import {
  commitReservation,
  createReservation,
  DEFAULT_TTL_SECONDS,
  extendReservation,
  getReservation,
  MAX_LINES,
  MAX_QUANTITY,
  MAX_TTL_SECONDS,
  releaseReservation,
} from "../stock/reservations";
import { MarketCode, problem } from "./common";

const Sku = z.string().min(1).max(128).openapi({ example: "SKU-000001-1" });
const Ttl = z.number().int().min(1).max(MAX_TTL_SECONDS);

const CreateBody = z
  .object({
    items: z
      .array(
        z.object({
          sku: Sku,
          quantity: z.number().int().min(1).max(MAX_QUANTITY),
          location: z.string().min(1).max(64).optional().openapi({ example: "loc-us-east" }),
        }),
      )
      .min(1)
      .max(MAX_LINES),
    ttl_seconds: Ttl.optional().openapi({ description: `Hold duration; default ${DEFAULT_TTL_SECONDS}.`, example: 600 }),
    currency: z.string().regex(/^[A-Z]{3}$/).optional().openapi({ description: "Currency of the unit-price snapshot; default DEFAULT_CURRENCY.", example: "USD" }),
    market: MarketCode.optional().openapi({ description: "Shopper market, as named on the product read: market-limited promotions apply to the unit-price snapshot only with it.", example: "DE" }),
  })
  .openapi("ReservationRequest");

export const ReservationSchema = z
  .object({
    id: z.string().openapi({ example: "rsv_3_0f6c…" }),
    status: z.enum(["pending", "held", "committing", "committed", "released", "expired", "failed"]),
    expires_at: z.string(),
    currency: z.string(),
    items: z.array(
      z.object({
        sku: z.string(),
        quantity: z.number(),
        location: z.string(),
        unit_price: z.number().openapi({ description: "Price per unit in force when the hold was made (minor units); commit keeps it." }),
        currency: z.string(),
        regular_price: z.number(),
        promotion_id: z.string().nullable(),
      }),
    ),
    created_at: z.string(),
    committed_at: z.string().nullable(),
    released_at: z.string().nullable(),
  })
  .openapi("Reservation");

const IdParams = z.object({ id: z.string().min(1).max(64).openapi({ param: { name: "id", in: "path" } }) });
const security = [{ storefrontKey: [] }];
const json = (description: string) => ({ description, content: { "application/json": { schema: ReservationSchema } } });
const authErrors = { 401: problem("Missing, unknown or revoked key."), 403: problem("The key is not a storefront key.") };

const createRouteDef = createRoute({
  method: "post",
  path: "/v1/reservations",
  tags: ["Reservations"],
  summary: "Hold stock for a cart, all or nothing",
  description:
    "Holds every line or none (a saga across stock shards, compensated on failure). `Idempotency-Key` is required and scoped to the storefront key and, when the request carries `x-shopper-id`, to that shopper: the same key with the same body (and the same `x-shopper-id`) replays the original answer; with another body it is a 422. The same key sent for two different shoppers makes two reservations, so a retry must repeat the `x-shopper-id` of the first request; without `x-shopper-id` the key is scoped to the storefront key alone. Lines without `location` go to the shopper's region (`x-shopper-region: NA|EU|APAC` or `request.cf`), else the location with the most stock. `x-shopper-id` names the shopper or cart behind the storefront key (else the client IP counts): hoarding caps and the reservation rate limit apply per shopper. Unit prices come from the product document the product page is rendered from.",
  security,
  request: {
    headers: z.object({
      "idempotency-key": z.string().min(1).max(255).openapi({ description: "Unique per checkout attempt." }),
      [SHOPPER_HEADER]: z
        .string()
        .regex(SHOPPER_ID_PATTERN, "1-128 printable ASCII characters, no spaces")
        .optional()
        .openapi({ description: "The shopper or cart behind the storefront key (hoarding caps and rate limits count it; default: the client IP). Also scopes the Idempotency-Key: send the same value on every retry.", example: "cart-8f14e45f" }),
    }),
    body: { required: true, content: { "application/json": { schema: CreateBody } } },
  },
  responses: {
    201: json("Held. Replays carry `Idempotent-Replayed: true`."),
    400: problem("Invalid body, or no Idempotency-Key."),
    ...authErrors,
    409: problem("Not enough stock (`shortfalls: [{sku, requested, available}]`), or the same key is still in flight."),
    422: problem("Unknown SKUs (`unknown_skus`), SKUs of draft or archived products (`inactive_skus`), unknown locations, no price in the currency, or the key reused with another body."),
    429: problem("The shopper's hoarding cap (`scope`: `sku` or `total`, with `limit`, `held`, `requested`) or rate limit; see Retry-After."),
    503: problem("A shard did not answer; nothing is held."),
  },
});

const getRouteDef = createRoute({
  method: "get",
  path: "/v1/reservations/{id}",
  tags: ["Reservations"],
  summary: "Read a reservation (a hold past its deadline reads `expired` at once)",
  security,
  request: { params: IdParams },
  responses: { 200: json("The reservation."), ...authErrors, 404: problem("No such reservation.") },
});

const extendRouteDef = createRoute({
  method: "post",
  path: "/v1/reservations/{id}/extend",
  tags: ["Reservations"],
  summary: "Move the deadline of a live hold to now + ttl_seconds",
  security,
  request: { params: IdParams, body: { required: true, content: { "application/json": { schema: z.object({ ttl_seconds: Ttl }) } } } },
  description:
    "Every stock shard moves its holds first; the reservation's deadline moves only once all of them confirmed. If one does not answer, the answer is 503 and the old deadline stays in force.",
  responses: {
    200: json("Extended."),
    ...authErrors,
    404: problem("No such reservation."),
    409: problem("Not live (expired, committed or released)."),
    503: problem("A stock shard did not answer; the old deadline stays in force."),
  },
});

const commitRouteDef = createRoute({
  method: "post",
  path: "/v1/reservations/{id}/commit",
  tags: ["Reservations"],
  summary: "Make the hold permanent (decrements on_hand); idempotent",
  security,
  request: { params: IdParams },
  description:
    "The coordinator commits every stock shard holding the reservation's lines. If a shard does not answer, the commit is still accepted (202, `status: committing`): it cannot be undone, the shard keeps the units held, and the coordinator completes it in the background (or on a repeat of this call). `reservation.committed` is emitted exactly once, when every shard has applied it.",
  responses: {
    200: json("Committed (also on repeats)."),
    202: json("Accepted and `committing`: a shard did not answer yet; completed in the background."),
    ...authErrors,
    404: problem("No such reservation."),
    409: problem("Expired or released."),
  },
});

const deleteRouteDef = createRoute({
  method: "delete",
  path: "/v1/reservations/{id}",
  tags: ["Reservations"],
  summary: "Release the hold; idempotent",
  security,
  request: { params: IdParams },
  responses: { 200: json("Released (or already ended)."), ...authErrors, 404: problem("No such reservation."), 409: problem("Already committed.") },
});

/** The storefront key that owns the reservations of this request; any other kind of key is refused with 403. */
function requireStorefrontKeyId(principal: unknown): string {
  const p = principal as { kind?: string; keyId?: string } | undefined;
  if (p?.kind !== "storefront" || !p.keyId) throw ApiError.forbidden("This key may not reserve stock; use a storefront key.");
  return p.keyId;
}

export const reservationsApp = createApp();
// One registration: "/v1/reservations/*" also matches "/v1/reservations", and a second would look the key up twice.
reservationsApp.use("/v1/reservations/*", requireStorefront);

reservationsApp
  .openapi(createRouteDef, async (c) => {
    const body = c.req.valid("json");
    const currency = body.currency ?? c.env.DEFAULT_CURRENCY;
    const supported = supportedCurrencies(c.env);
    if (!supported.includes(currency)) throw ApiError.unprocessable(`Unsupported currency ${currency}; use one of ${supported.join(", ")}.`);
    const owner = requireStorefrontKeyId(c.get("principal"));
    const result = await createReservation(c.env, {
      keyId: owner,
      idempotencyKey: c.req.valid("header")["idempotency-key"],
      lines: body.items,
      ttlSeconds: body.ttl_seconds ?? DEFAULT_TTL_SECONDS,
      currency,
      market: body.market?.toUpperCase(),
      region: shopperRegion(c.req.raw),
      holder: await holderKey(owner, shopperIdentity(c.req.raw)),
      shopperNamed: c.req.valid("header")[SHOPPER_HEADER] !== undefined,
      waitUntil: (p) => c.executionCtx.waitUntil(p),
    });
    c.header("cache-control", "no-store");
    c.header("location", `/v1/reservations/${result.body.id}`);
    if (result.replayed) c.header("idempotent-replayed", "true");
    return c.json(result.body, 201);
  })
  .openapi(getRouteDef, async (c) => {
    const owner = requireStorefrontKeyId(c.get("principal"));
    c.header("cache-control", "no-store");
    return c.json(await getReservation(c.env, c.req.valid("param").id, owner), 200);
  })
  .openapi(extendRouteDef, async (c) => {
    const owner = requireStorefrontKeyId(c.get("principal"));
    c.header("cache-control", "no-store");
    return c.json(await extendReservation(c.env, c.req.valid("param").id, c.req.valid("json").ttl_seconds, owner), 200);
  })
  .openapi(commitRouteDef, async (c) => {
    const owner = requireStorefrontKeyId(c.get("principal"));
    c.header("cache-control", "no-store");
    const { status, view } = await commitReservation(c.env, c.req.valid("param").id, owner);
    if (status === 202) {
      c.header("retry-after", "5");
      return c.json(view, 202);
    }
    return c.json(view, 200);
  })
  .openapi(deleteRouteDef, async (c) => {
    const owner = requireStorefrontKeyId(c.get("principal"));
    c.header("cache-control", "no-store");
    return c.json(await releaseReservation(c.env, c.req.valid("param").id, owner), 200);
  });
