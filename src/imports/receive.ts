/**
 * Receiving one part of an import: the body is read line by line (never buffered whole), each line validated with
 * the admin PUT's schema plus `id`, and accepted lines handed on in chunks of CHUNK_LINES. Duplicates within the
 * part are caught here; duplicates across parts and clashes with the live catalog by the staging (stage.ts).
 */
import { z } from "zod";
import { ProductIdParam, ProductInput, minPrices } from "../catalog/product-input";
import { parseCsvLine, csvRecordToObject } from "./csv";
import { readLines } from "./lines";

export type ImportFormat = "ndjson" | "csv";
export type Rejection = { line: number; error: string };

/** A validated line, ready to stage: `line` is its number in the import (parts numbered after one another). */
export type AcceptedLine = { line: number; id: string; slug: string; skus: string[]; categoryId: string; doc: Record<string, unknown> };

/** Lines per chunk: the unit of staging, of the clash checks and of every publish statement. */
export const CHUNK_LINES = 2_000;

/**
 * The chunk size an import runs with: CHUNK_LINES, unless `IMPORT_CHUNK_LINES` lowers it. Every limit of an import
 * counts chunks (queries per invocation, statements per switch), so tests of those limits set a small size and keep
 * the chunk counts they are about with a fraction of the rows.
 */
export type ChunkEnv = { IMPORT_CHUNK_LINES?: string };
export function chunkLines(env: ChunkEnv): number {
  const n = Number(env.IMPORT_CHUNK_LINES);
  return Number.isInteger(n) && n > 0 && n < CHUNK_LINES ? n : CHUNK_LINES;
}
/**
 * Line numbers of part k start at (k - 1) × PART_LINE_SPAN + 1, so every line of a multi-part import has its own
 * number (errors name the part and the line within it) and parts may arrive in any order.
 */
export const PART_LINE_SPAN = 1_000_000;

const LineId = z.object({ id: ProductIdParam });

function describe(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.map(String).join(".") || "(line)"}: ${i.message}`)
    .join("; ");
}

export class PartTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`more than ${limit} lines`);
  }
}

export type ReceiveContext = {
  part: number;
  format: ImportFormat;
  maxLines: number;
  /** Lines per chunk handed to onChunk (chunkLines). */
  chunkLines: number;
  categoryIds: Set<string>;
  currencies: Set<string>;
  reject: (line: number, error: string) => void;
  /** Called with each full chunk and with the last, partial one. */
  onChunk: (rows: AcceptedLine[]) => Promise<void>;
};

/** Reads a part; returns its number of lines (blank ones included). */
export async function receivePart(body: ReadableStream<Uint8Array>, ctx: ReceiveContext): Promise<number> {
  const base = (ctx.part - 1) * PART_LINE_SPAN;
  const seenIds = new Map<string, number>();
  const seenSkus = new Map<string, number>();
  const seenSlugs = new Map<string, number>();
  let chunk: AcceptedLine[] = [];
  let header: string[] | undefined;
  let lines = 0;
  for await (const { line: n, text } of readLines(body)) {
    lines = n;
    if (n > ctx.maxLines) throw new PartTooLarge(ctx.maxLines);
    const line = base + n;
    if (text.trim() === "") continue;
    let raw: unknown;
    try {
      if (ctx.format === "csv") {
        if (!header) {
          header = parseCsvLine(text).map((h) => h.trim());
          continue;
        }
        raw = csvRecordToObject(header, parseCsvLine(text));
      } else {
        raw = JSON.parse(text) as unknown;
      }
    } catch (err) {
      ctx.reject(line, `unparseable ${ctx.format === "csv" ? "CSV" : "JSON"}: ${(err as Error).message}`);
      continue;
    }
    const id = LineId.safeParse(raw);
    const product = ProductInput.safeParse(raw);
    if (!id.success || !product.success) {
      ctx.reject(line, [id.success ? "" : describe(id.error), product.success ? "" : describe(product.error)].filter(Boolean).join("; "));
      continue;
    }
    const p = product.data;
    const productId = id.data.id;
    if (!ctx.categoryIds.has(p.category_id)) {
      ctx.reject(line, `unknown category_id ${p.category_id}`);
      continue;
    }
    const badCurrency = p.variants.flatMap((v) => Object.keys(v.prices)).find((c) => !ctx.currencies.has(c));
    if (badCurrency) {
      ctx.reject(line, `unsupported currency ${badCurrency}`);
      continue;
    }
    const dupId = seenIds.get(productId);
    if (dupId !== undefined) {
      ctx.reject(line, `duplicate product id ${productId} (first on line ${dupId})`);
      continue;
    }
    const dupSlug = seenSlugs.get(p.slug);
    if (dupSlug !== undefined) {
      ctx.reject(line, `duplicate slug ${p.slug} (first on line ${dupSlug})`);
      continue;
    }
    const dupSku = p.variants.map((v) => [v.sku, seenSkus.get(v.sku)] as const).find(([, l]) => l !== undefined);
    if (dupSku) {
      ctx.reject(line, `sku ${dupSku[0]} already used on line ${dupSku[1]}`);
      continue;
    }
    seenIds.set(productId, n);
    seenSlugs.set(p.slug, n);
    for (const v of p.variants) seenSkus.set(v.sku, n);
    chunk.push({ line, id: productId, slug: p.slug, skus: p.variants.map((v) => v.sku), categoryId: p.category_id, doc: { ...p, min_prices: minPrices(p) } });
    if (chunk.length >= ctx.chunkLines) {
      await ctx.onChunk(chunk);
      chunk = [];
    }
  }
  if (chunk.length > 0) await ctx.onChunk(chunk);
  return lines;
}
