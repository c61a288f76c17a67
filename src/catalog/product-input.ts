/**
 * The shape of a product as admins write it (PUT body, one import line). PATCH bodies are the same fields,
 * all optional, merged onto the current document. Shared by the admin API and the bulk import so that both
 * accept exactly the same products.
 */
import { z } from "@hono/zod-openapi";
import type { ProductDocument } from "./document";

const Money = z.number().int().min(0).max(1_000_000_000);
const Currency = z.string().regex(/^[A-Z]{3}$/, "must be an ISO 4217 code such as USD");
const Locale = z.string().regex(/^[a-z]{2}(-[A-Z]{2})?$/, "must be a locale such as en or pt-BR");

export const ProductIdParam = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "letters, digits, '.', '_' or '-' (max 64)");
const Sku = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "letters, digits, '.', '_' or '-' (max 64)");

export const VariantInput = z.object({
  sku: Sku,
  title: z.string().max(300).default(""),
  options: z.record(z.string().max(60), z.string().max(120)).default({}),
  gtin: z.string().max(20).nullable().default(null),
  mpn: z.string().max(70).nullable().default(null),
  prices: z.record(Currency, Money).refine((p) => Object.keys(p).length > 0, "at least one price is required"),
});

export const ProductInput = z
  .object({
    slug: z.string().regex(/^[a-z0-9]+(-[a-z0-9]+)*$/, "lowercase words joined by '-'").max(200),
    title: z.string().min(1).max(300),
    description: z.string().max(10_000).default(""),
    brand: z.string().min(1).max(120),
    category_id: z.string().min(1).max(100),
    status: z.enum(["active", "draft", "archived"]).default("active"),
    attributes: z.record(z.string().min(1).max(60), z.string().max(200)).default({}),
    images: z.array(z.object({ url: z.string().url().max(2000), alt: z.string().max(300).optional() })).max(20).default([]),
    markets: z.array(z.string().regex(/^[A-Z]{2,4}$/)).max(50).default([]),
    condition: z.enum(["new", "refurbished", "used"]).default("new"),
    translations: z.record(Locale, z.object({ title: z.string().min(1).max(300), description: z.string().max(10_000).default("") })).default({}),
    variants: z.array(VariantInput).min(1).max(100),
  })
  .superRefine((p, ctx) => {
    const seen = new Set<string>();
    p.variants.forEach((v, i) => {
      if (seen.has(v.sku)) ctx.addIssue({ code: "custom", path: ["variants", i, "sku"], message: `duplicate sku ${v.sku}` });
      seen.add(v.sku);
    });
  })
  .openapi("ProductInput");

export type ProductInput = z.infer<typeof ProductInput>;

export const ProductPatch = z
  .object({
    slug: z.string().regex(/^[a-z0-9]+(-[a-z0-9]+)*$/).max(200),
    title: z.string().min(1).max(300),
    description: z.string().max(10_000),
    brand: z.string().min(1).max(120),
    category_id: z.string().min(1).max(100),
    status: z.enum(["active", "draft", "archived"]),
    attributes: z.record(z.string().min(1).max(60), z.string().max(200)),
    images: z.array(z.object({ url: z.string().url().max(2000), alt: z.string().max(300).optional() })).max(20),
    markets: z.array(z.string().regex(/^[A-Z]{2,4}$/)).max(50),
    condition: z.enum(["new", "refurbished", "used"]),
    /** Merged per locale; `null` removes a locale. */
    translations: z.record(Locale, z.object({ title: z.string().min(1).max(300), description: z.string().max(10_000).default("") }).nullable()),
    /** Merged by SKU: listed fields replace, prices merge per currency; an unknown SKU is added; `remove: true` archives it. */
    variants: z
      .array(
        z.object({
          sku: Sku,
          title: z.string().max(300).optional(),
          options: z.record(z.string().max(60), z.string().max(120)).optional(),
          gtin: z.string().max(20).nullable().optional(),
          mpn: z.string().max(70).nullable().optional(),
          prices: z.record(Currency, Money).optional(),
          remove: z.boolean().optional(),
        }),
      )
      .max(100),
  })
  .partial()
  .strict()
  .refine((p) => Object.keys(p).length > 0, "the patch is empty")
  .openapi("ProductPatch");

export type ProductPatch = z.infer<typeof ProductPatch>;

/** The writable part of a stored document, so that a PATCH can be merged and written like a PUT. */
export function inputFromDocument(doc: ProductDocument): ProductInput {
  return {
    slug: doc.slug,
    title: doc.title,
    description: doc.description,
    brand: doc.brand,
    category_id: doc.category_id,
    status: doc.status,
    attributes: { ...doc.attributes },
    images: doc.images.map((i) => ({ ...i })),
    markets: [...doc.markets],
    condition: doc.condition as ProductInput["condition"],
    translations: Object.fromEntries(Object.entries(doc.translations).map(([k, v]) => [k, { ...v }])),
    variants: doc.variants.map((v) => ({ sku: v.sku, title: v.title, options: { ...v.options }, gtin: v.gtin, mpn: v.mpn, prices: { ...v.prices } })),
  };
}

export function applyPatch(current: ProductInput, patch: ProductPatch): ProductInput {
  const next: ProductInput = { ...current };
  for (const key of ["slug", "title", "description", "brand", "category_id", "status", "attributes", "images", "markets", "condition"] as const) {
    if (patch[key] !== undefined) (next as Record<string, unknown>)[key] = patch[key];
  }
  if (patch.translations) {
    const translations = { ...current.translations };
    for (const [locale, value] of Object.entries(patch.translations)) {
      if (value === null) delete translations[locale];
      else translations[locale] = value;
    }
    next.translations = translations;
  }
  if (patch.variants) {
    const variants = current.variants.map((v) => ({ ...v, prices: { ...v.prices } }));
    for (const change of patch.variants) {
      const index = variants.findIndex((v) => v.sku === change.sku);
      if (change.remove) {
        if (index >= 0) variants.splice(index, 1);
        continue;
      }
      const base = index >= 0 ? variants[index] : { sku: change.sku, title: "", options: {}, gtin: null, mpn: null, prices: {} };
      const merged = {
        ...base,
        ...(change.title !== undefined ? { title: change.title } : {}),
        ...(change.options !== undefined ? { options: change.options } : {}),
        ...(change.gtin !== undefined ? { gtin: change.gtin } : {}),
        ...(change.mpn !== undefined ? { mpn: change.mpn } : {}),
        prices: { ...base.prices, ...(change.prices ?? {}) },
      };
      if (index >= 0) variants[index] = merged;
      else variants.push(merged);
    }
    next.variants = variants;
  }
  return next;
}

/** Lowest regular price per currency over the product's variants (denormalised for price filters and sort). */
export function minPrices(input: Pick<ProductInput, "variants">): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of input.variants) {
    for (const [currency, amount] of Object.entries(v.prices)) {
      if (out[currency] === undefined || amount < out[currency]) out[currency] = amount;
    }
  }
  return out;
}
