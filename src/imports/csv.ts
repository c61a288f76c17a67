/**
 * CSV import lines: RFC 4180 quoting within one line (a product is one line, so quoted fields cannot hold
 * newlines). Columns map onto the product shape:
 *   id, slug, title, description, brand, category_id, status, condition, markets (space-separated),
 *   images (space-separated URLs), attr.<name>, title.<locale>, description.<locale>,
 *   and either one variant — sku, variant_title, option.<name>, gtin, mpn, price.<CUR> —
 *   or a `variants` column holding the JSON array of variants.
 */
export function parseCsvLine(text: string): string[] {
  const fields: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 1;
        } else quoted = false;
      } else field += ch;
    } else if (ch === '"' && field.length === 0) quoted = true;
    else if (ch === ",") {
      fields.push(field);
      field = "";
    } else field += ch;
  }
  if (quoted) throw new Error("unterminated quoted field");
  fields.push(field);
  return fields;
}

/** Builds the (unvalidated) product object of one CSV record; zod validates it like an NDJSON line. */
export function csvRecordToObject(header: string[], fields: string[]): Record<string, unknown> {
  if (fields.length !== header.length) throw new Error(`expected ${header.length} fields, got ${fields.length}`);
  const out: Record<string, unknown> = {};
  const attributes: Record<string, string> = {};
  const translations: Record<string, { title?: string; description?: string }> = {};
  const options: Record<string, string> = {};
  const prices: Record<string, number | string> = {};
  const variant: Record<string, unknown> = {};
  let variantsJson: string | undefined;
  header.forEach((name, i) => {
    const value = fields[i]!;
    if (value === "") return;
    const dot = name.indexOf(".");
    const [prefix, rest] = dot === -1 ? [name, ""] : [name.slice(0, dot), name.slice(dot + 1)];
    if (prefix === "attr" && rest) attributes[rest] = value;
    else if ((prefix === "title" || prefix === "description") && rest) (translations[rest] ??= {})[prefix] = value;
    else if (prefix === "option" && rest) options[rest] = value;
    else if (prefix === "price" && rest) prices[rest] = /^\d+$/.test(value) ? Number(value) : value;
    else if (name === "variants") variantsJson = value;
    else if (name === "sku" || name === "gtin" || name === "mpn") variant[name] = value;
    else if (name === "variant_title") variant.title = value;
    else if (name === "markets" || name === "images") out[name] = value.split(/\s+/).filter(Boolean).map((v) => (name === "images" ? { url: v } : v));
    else out[name] = value;
  });
  out.attributes = attributes;
  out.translations = translations;
  if (variantsJson !== undefined) out.variants = JSON.parse(variantsJson) as unknown;
  else if (variant.sku !== undefined) out.variants = [{ ...variant, options, prices }];
  return out;
}
