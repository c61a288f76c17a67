import { createRoute, z } from "@hono/zod-openapi";
import { requireAdmin } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { createApp } from "../lib/validation";
import { clearSoldOut } from "../stock/flash-gate";
import { unknownLocations } from "../stock/locations";
import { groupByShard, shardNameForSku, stockStub } from "../stock/routing";
import { mergedLedger } from "../stock/ledger";
import type { AdjustmentOutcome } from "../stock/types";
import { etag, parseIfMatch, problem } from "./common";

const security = [{ adminToken: [] }];
const Count = z.number().int().min(0).max(1_000_000_000);
const SkuParams = z.object({ sku: z.string().min(1).max(128).openapi({ param: { name: "sku", in: "path" }, example: "SKU-000001-1" }) });

const StockRowSchema = z
  .object({
    sku: z.string(),
    location: z.string(),
    on_hand: z.number(),
    reserved: z.number(),
    safety_stock: z.number(),
    low_stock: z.number(),
    backorder_limit: z.number().nullable(),
    available: z.number(),
    seq: z.number(),
  })
  .openapi("StockRow");

const putRoute = createRoute({
  method: "put",
  path: "/admin/stock/{sku}",
  tags: ["Admin: stock"],
  summary: "Set the on-hand count (and optionally safety stock, low-stock threshold, backorder limit) at a location",
  description:
    "`on_hand` is the new physical count of the location. Recorded in the ledger as a `set` movement with the delta from the previous count. Holds are promises and stay: when more units are held than the new count, the answer says `oversold: N`, the ledger gets an `oversold` row and a `stock.oversold` event is sent. On a hot SKU the free quotas of the sub-shards are recalled or debited so that no object can sell a unit beyond the new count. Optional `If-Match` with the SKU's `seq` (the `ETag` of this answer): the set applies only if nothing changed the SKU since, else 412 with the current rows.",
  security,
  request: {
    params: SkuParams,
    headers: z.object({ "if-match": z.string().max(40).optional().openapi({ description: 'The SKU\'s `seq` as returned in `ETag`, e.g. "12".' }) }),
    body: {
      required: true,
      content: {
        "application/json": {
          schema: z.object({
            location: z.string().min(1).max(64),
            on_hand: Count,
            safety_stock: Count.optional(),
            low_stock: Count.optional(),
            backorder_limit: Count.nullable().optional(),
          }),
        },
      },
    },
  },
  responses: {
    200: {
      description: "The new counts (summed over the home shard and any sub-shards).",
      content: {
        "application/json": {
          schema: StockRowSchema.extend({
            oversold: z.number().openapi({ description: "Units held beyond the new count: holds stay, the shortfall is reported (ledger `oversold`, `stock.oversold` event)." }),
          }),
        },
      },
    },
    401: problem("Missing or wrong admin token."),
    412: problem("If-Match did not match the SKU's seq: nothing written; `current_version` and `rows` say what it is now."),
    422: problem("Unknown SKU or location."),
  },
});

const AdjustmentSchema = z.object({
  sku: z.string().min(1).max(128),
  location: z.string().min(1).max(64),
  delta: z.number().int().min(-1_000_000).max(1_000_000).refine((d) => d !== 0, "delta must not be 0"),
  reason: z.string().min(1).max(200),
  event_id: z.string().min(1).max(200),
});

const AdjustmentResult = z.object({
  event_id: z.string(),
  sku: z.string(),
  location: z.string(),
  status: z.enum(["applied", "duplicate", "rejected"]),
  detail: z.string().optional(),
  on_hand: z.number().optional(),
  oversold: z.number().optional().openapi({ description: "Units held beyond the new physical count (holds stay; also a `stock.oversold` event)." }),
});

const adjustRoute = createRoute({
  method: "post",
  path: "/admin/stock/adjustments",
  tags: ["Admin: stock"],
  summary: "Apply warehouse movements; idempotent per event_id",
  description:
    "Each line is applied at most once per `event_id`. An `event_id` names one movement: a batch that uses one `event_id` for lines that differ (SKU, location, delta or reason) is refused with 422 (`reused_event_ids` lists the ids and their 0-based line numbers) and nothing is applied; the very same line repeated is a replay and answers `applied` then `duplicate`. A retried feed gets `duplicate` with the original outcome. A line that would take on_hand below zero is `rejected` and not remembered, so a retry after the cause is gone applies it. A decrease below what is held is applied and reported as `oversold`. On a hot SKU a decrease draws on the sub-shards' quotas.",
  security,
  request: { body: { required: true, content: { "application/json": { schema: z.array(AdjustmentSchema).min(1).max(500) } } } },
  responses: {
    200: {
      description: "One outcome per line, in request order.",
      content: {
        "application/json": {
          schema: z.object({
            results: z.array(AdjustmentResult),
          }),
        },
      },
    },
    401: problem("Missing or wrong admin token."),
    422: problem("Unknown SKUs or locations, or one `event_id` reused for different movements (`reused_event_ids`)."),
  },
});

const adjustOneRoute = createRoute({
  method: "post",
  path: "/admin/stock/{sku}/adjustments",
  tags: ["Admin: stock"],
  summary: "Apply one movement to a SKU, with If-Match on its seq (an operator's correction)",
  description:
    "The same movement as a line of `POST /admin/stock/adjustments`, for one SKU, with optional `If-Match` holding the SKU's `seq` (the `ETag` of `PUT /admin/stock/{sku}`, or `seq` of any stock row): the movement applies only if nothing changed the SKU since, else 412 with the current rows and nothing written. `event_id` keeps retries idempotent: a repeat of an applied event is `duplicate`, whatever the seq is now. Warehouse feeds keep using the batch route, idempotent per event id.",
  security,
  request: {
    params: SkuParams,
    headers: z.object({ "if-match": z.string().max(40).optional().openapi({ description: 'The SKU\'s `seq`, e.g. "12".' }) }),
    body: { required: true, content: { "application/json": { schema: AdjustmentSchema.omit({ sku: true }) } } },
  },
  responses: {
    200: { description: "The outcome (`rejected` when on_hand would go below zero).", content: { "application/json": { schema: AdjustmentResult } } },
    401: problem("Missing or wrong admin token."),
    412: problem("If-Match did not match the SKU's seq: nothing written; `current_version` and `rows` say what it is now."),
    422: problem("Unknown SKU or location."),
  },
});

const ledgerRoute = createRoute({
  method: "get",
  path: "/admin/stock/{sku}/ledger",
  tags: ["Admin: stock"],
  summary: "The movement ledger of a SKU across its home shard and every escrow sub-shard, oldest (or newest) first, with a cursor",
  description:
    "Rows of every object that ever held the SKU (home shard, hot sub-shards), merged in time order; `shard` names the object of each row. Summing `delta_on_hand` / `delta_reserved` per location over the whole ledger gives the current counts, also while a transfer between objects is in transit (its `transit` rows count the units until they arrive).",
  security,
  request: {
    params: SkuParams,
    query: z.object({
      cursor: z
        .string()
        .regex(/^\d{1,15}(\.\d{1,15}){0,64}$/)
        .optional()
        .openapi({ description: "`next_cursor` of the previous page (one position per object of the SKU)." }),
      limit: z.coerce.number().int().min(1).max(1000).optional(),
      order: z.enum(["asc", "desc"]).default("asc").openapi({ description: "`desc`: newest first (the cursor then pages towards older rows)." }),
    }),
  },
  responses: {
    200: {
      description: "A page of movements.",
      content: {
        "application/json": {
          schema: z.object({
            sku: z.string(),
            items: z.array(
              z.object({
                id: z.number().openapi({ description: "Row id within its object (`shard`)." }),
                shard: z.string().openapi({ description: "The object that wrote the row: `stock:{n}` (home) or `stock:hot:{sku}:{i}`." }),
                sku: z.string(),
                location: z.string(),
                seq: z.number(),
                kind: z.enum(["baseline", "set", "adjust", "reserve", "release", "expire", "commit", "oversold", "transit"]).openapi({
                  description:
                    "`oversold` reports a shortfall (zero deltas). `transit` rows count units on their way between two objects: +N at the giver when sent (`reason: sent`), −N at the receiver on arrival (`received`); they change no count of their own object.",
                }),
                delta_on_hand: z.number(),
                delta_reserved: z.number(),
                on_hand_after: z.number(),
                reserved_after: z.number(),
                reason: z.string().nullable(),
                reservation_id: z.string().nullable(),
                actor: z.string().nullable(),
                event_id: z.string().nullable(),
                at: z.number(),
              }),
            ),
            next_cursor: z.string().nullable(),
          }),
        },
      },
    },
    401: problem("Missing or wrong admin token."),
    404: problem("Unknown SKU."),
  },
});

export const adminStockApp = createApp();
adminStockApp.use("/admin/stock/*", requireAdmin);

/** 412 with the SKU's current rows and seq (also its ETag): what an If-Match write answers when it lost the race. */
function staleStock(sku: string, expected: number | undefined, seq: number, rows: unknown[]): ApiError {
  const err = ApiError.preconditionFailed(`${sku} changed since seq ${expected} (now ${seq}); nothing was written.`, seq);
  return new ApiError(err.status, err.slug, err.title, err.detail, { ...err.extensions, rows }, { etag: etag(seq) });
}

/**
 * An event_id names one movement. Dedupe is kept per shard, so one id on two SKUs of different shards would be
 * applied twice, and on one shard the second movement would be silently dropped as a duplicate: refuse the batch
 * before anything is applied. The same line repeated is a replay, not a reuse, and stays allowed.
 */
function assertEventIdsUnique(lines: z.infer<typeof AdjustmentSchema>[]) {
  const first = new Map<string, number>();
  const reused = new Map<string, Set<number>>();
  lines.forEach((l, i) => {
    const at = first.get(l.event_id);
    if (at === undefined) return void first.set(l.event_id, i);
    const o = lines[at]!;
    if (o.sku === l.sku && o.location === l.location && o.delta === l.delta && o.reason === l.reason) return;
    reused.set(l.event_id, (reused.get(l.event_id) ?? new Set([at])).add(i));
  });
  if (!reused.size) return;
  const list = [...reused].map(([event_id, at]) => ({ event_id, lines: [...at].sort((x, y) => x - y) }));
  const detail = list.map((r) => `event_id ${r.event_id} on lines ${r.lines.join(", ")}`).join("; ");
  throw ApiError.unprocessable(`One event_id names one movement; reused for different movements: ${detail}. Nothing was applied.`, { reused_event_ids: list });
}

async function assertLocations(env: Env, ids: string[]) {
  const unknown = await unknownLocations(env, ids);
  if (unknown.length) throw ApiError.unprocessable(`Unknown locations: ${unknown.join(", ")}.`, { unknown_locations: unknown });
}

adminStockApp
  .openapi(putRoute, async (c) => {
    const { sku } = c.req.valid("param");
    const body = c.req.valid("json");
    await assertLocations(c.env, [body.location]);
    const expected = parseIfMatch(c.req.valid("header")["if-match"], "a stock seq");
    const res = await stockStub(c.env, shardNameForSku(c.env, sku)).setStock({ sku, ...body, actor: "admin", expected_seq: expected });
    if (!res.ok && res.error === "stale") throw staleStock(sku, expected, res.seq, res.rows);
    if (!res.ok) throw ApiError.unprocessable(`Unknown SKU: ${sku}.`, { unknown_skus: res.skus });
    // A restock (or a new backorder limit) mid-sale must sell at once: drop this colo's sold-out marker.
    if (res.row.available + (res.row.backorder_limit ?? 0) > 0) await clearSoldOut([sku]);
    c.header("cache-control", "no-store");
    c.header("etag", etag(res.row.seq));
    return c.json({ ...res.row, oversold: res.oversold }, 200);
  })
  .openapi(adjustRoute, async (c) => {
    const lines = c.req.valid("json");
    assertEventIdsUnique(lines);
    await assertLocations(c.env, lines.map((l) => l.location));
    const groups = [...groupByShard(c.env, lines, (l) => l.sku)];
    const answers = await Promise.all(groups.map(([name, list]) => stockStub(c.env, name).adjust(list, "admin")));
    const unknown = answers.flatMap((a) => (a.ok ? [] : a.skus));
    // Shards that knew all their SKUs have applied their lines; that is safe because each line is idempotent.
    if (unknown.length) throw ApiError.unprocessable(`Unknown SKUs: ${unknown.join(", ")}; lines for other SKUs were applied.`, { unknown_skus: unknown });
    // A shard answers its lines in the order it got them: match outcomes to lines by position, not by event_id,
    // so a line sent twice reads `applied` then `duplicate`, as it happened.
    const byLine = new Map<(typeof lines)[number], AdjustmentOutcome>();
    groups.forEach(([, list], g) => {
      const a = answers[g]!;
      if (a.ok) list.forEach((l, i) => byLine.set(l, a.results[i]!));
    });
    await clearSoldOut([...new Set(lines.filter((l) => l.delta > 0 && byLine.get(l)?.status === "applied").map((l) => l.sku))]);
    c.header("cache-control", "no-store");
    return c.json({ results: lines.map((l) => byLine.get(l)!) }, 200);
  })
  .openapi(adjustOneRoute, async (c) => {
    const { sku } = c.req.valid("param");
    const line = { sku, ...c.req.valid("json") };
    await assertLocations(c.env, [line.location]);
    const expected = parseIfMatch(c.req.valid("header")["if-match"], "a stock seq");
    const shard = stockStub(c.env, shardNameForSku(c.env, sku));
    const res = expected === undefined ? await shard.adjust([line], "admin") : await shard.adjustIfMatch(line, "admin", expected);
    if (!res.ok && res.error === "stale") throw staleStock(sku, expected, res.seq, res.rows);
    if (!res.ok) throw ApiError.unprocessable(`Unknown SKU: ${sku}.`, { unknown_skus: res.skus });
    const outcome = "outcome" in res ? res.outcome : res.results[0]!;
    if (line.delta > 0 && outcome.status === "applied") await clearSoldOut([sku]);
    c.header("cache-control", "no-store");
    return c.json(outcome, 200);
  })
  .openapi(ledgerRoute, async (c) => {
    const { sku } = c.req.valid("param");
    const { cursor, limit = 100, order } = c.req.valid("query");
    const page = await mergedLedger(c.env, sku, cursor, limit, order);
    c.header("cache-control", "no-store");
    return c.json({ sku, ...page }, 200);
  });
