/**
 * Google Merchant Center product attribute rules, written independently of src/feeds so the feed test is
 * not checked against itself: required attributes, value sets, lengths, and the price text format.
 */
const AVAILABILITY = new Set(["in_stock", "out_of_stock", "preorder", "backorder"]);
const CONDITION = new Set(["new", "refurbished", "used"]);
const PRICE = /^\d+\.\d{2} [A-Z]{3}$/;

function gs1CheckOk(gtin: string): boolean {
  // Weights 3,1,3,1… counted from the digit just left of the check digit.
  const body = gtin.slice(0, -1);
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    const fromRight = body.length - 1 - i;
    sum += Number(body[i]) * (fromRight % 2 === 0 ? 3 : 1);
  }
  return (10 - (sum % 10)) % 10 === Number(gtin.at(-1));
}

function isUrl(s: unknown): boolean {
  if (typeof s !== "string") return false;
  try {
    const u = new URL(s);
    return u.protocol === "https:" || u.protocol === "http:";
  } catch {
    return false;
  }
}

const priceValue = (p: string) => Number(p.split(" ")[0]);

/** Every rule broken by one item, as readable strings (empty = valid). */
export function googleItemErrors(item: Record<string, unknown>): string[] {
  const errors: string[] = [];
  const str = (k: string) => (typeof item[k] === "string" ? (item[k] as string) : undefined);
  for (const k of ["id", "title", "description", "link", "image_link", "availability", "price", "condition"]) {
    if (!str(k)) errors.push(`${k} is required`);
  }
  if ((str("id") ?? "").length > 50) errors.push("id longer than 50");
  if ((str("title") ?? "").length > 150) errors.push("title longer than 150");
  if ((str("description") ?? "").length > 5000) errors.push("description longer than 5000");
  if (!isUrl(item.link)) errors.push("link is not a URL");
  if (!isUrl(item.image_link)) errors.push("image_link is not a URL");
  if (!AVAILABILITY.has(str("availability") ?? "")) errors.push(`availability '${item.availability}' not allowed`);
  if (!CONDITION.has(str("condition") ?? "")) errors.push(`condition '${item.condition}' not allowed`);
  if (!PRICE.test(str("price") ?? "")) errors.push(`price '${item.price}' is not like "12.99 EUR"`);
  if (item.sale_price !== undefined) {
    if (!PRICE.test(str("sale_price") ?? "")) errors.push(`sale_price '${item.sale_price}' is not like "12.99 EUR"`);
    else if (priceValue(item.sale_price as string) >= priceValue(item.price as string)) errors.push("sale_price not below price");
    else if ((item.sale_price as string).slice(-3) !== (item.price as string).slice(-3)) errors.push("sale_price currency differs");
  }
  const gtin = str("gtin");
  if (gtin !== undefined && (!/^(\d{8}|\d{12}|\d{13}|\d{14})$/.test(gtin) || !gs1CheckOk(gtin))) errors.push(`gtin '${gtin}' invalid`);
  // Unique product identifiers: two of brand/gtin/mpn, or identifier_exists = no.
  const ids = [str("brand"), gtin, str("mpn")].filter(Boolean).length;
  if (ids < 2 && item.identifier_exists !== "no") errors.push("needs two of brand/gtin/mpn or identifier_exists=no");
  if (!str("brand")) errors.push("brand is required");
  if (item.additional_image_link !== undefined) {
    if (!Array.isArray(item.additional_image_link) || item.additional_image_link.length > 10 || !item.additional_image_link.every(isUrl)) {
      errors.push("additional_image_link must be up to 10 URLs");
    }
  }
  return errors;
}

/** Group-level rule: items sharing an item_group_id are variants of one product; every SKU id is unique. */
export function googleFeedErrors(items: Record<string, unknown>[]): string[] {
  const errors = items.flatMap((item, i) => googleItemErrors(item).map((e) => `item ${i} (${String(item.id)}): ${e}`));
  const ids = items.map((i) => i.id);
  if (new Set(ids).size !== ids.length) errors.push("duplicate item ids");
  return errors;
}
