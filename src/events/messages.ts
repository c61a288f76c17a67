/** The event contract on the EVENTS queue (see the cross-team contracts in docs/storage.md § Queues). */
import { z } from "zod";

export const ProductChangedEvent = z.object({
  type: z.literal("product.changed"),
  id: z.string().min(1),
  version: z.number().int(),
  occurred_at: z.number(),
});

export const CategoryChangedEvent = z.object({
  type: z.literal("category.changed"),
  id: z.string().min(1),
  version: z.number().int(),
  occurred_at: z.number(),
});

export const StockChangedEvent = z.object({
  type: z.literal("stock.changed"),
  sku: z.string().min(1),
  location: z.string().min(1),
  on_hand: z.number().int(),
  reserved: z.number().int(),
  available: z.number().int(),
  safety_stock: z.number().int().optional(),
  low_stock: z.number().int().optional(),
  status: z.enum(["in_stock", "low_stock", "out_of_stock"]),
  seq: z.number().int(),
  occurred_at: z.number(),
});

/** Held units beyond a new physical count (a recount or adjustment below what is held); holds stay. */
export const StockOversoldEvent = z.object({
  type: z.literal("stock.oversold"),
  sku: z.string().min(1),
  location: z.string().min(1),
  units: z.number().int().positive(),
  on_hand: z.number().int(),
  reserved: z.number().int(),
  cause: z.string(),
  event_id: z.string().nullable(),
  seq: z.number().int(),
  occurred_at: z.number(),
});

export type StockOversoldEvent = z.infer<typeof StockOversoldEvent>;
export type ProductChangedEvent = z.infer<typeof ProductChangedEvent>;
export type CategoryChangedEvent = z.infer<typeof CategoryChangedEvent>;
export type StockChangedEvent = z.infer<typeof StockChangedEvent>;
