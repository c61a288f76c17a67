/**
 * Deterministic demo catalog. Pure functions with a fixed PRNG: the same `products` count always yields the
 * same rows, so the seed is reproducible and tests can import the planted structure (families, bundles,
 * order history) that recommendation quality is measured against.
 */

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rng = () => number;
const pick = <T>(rng: Rng, list: readonly T[]): T => list[Math.floor(rng() * list.length)]!;
const int = (rng: Rng, min: number, max: number) => min + Math.floor(rng() * (max - min + 1));

export const CURRENCIES = ["USD", "EUR", "GBP"] as const;
export const LOCALES = ["en", "de", "fr"] as const;
export const FAMILY_SIZE = 5;
export const BUNDLE_SIZE = 3;

export const LOCATIONS = [
  { id: "loc-us-east", name: "Newark fulfilment centre", region: "NA", country: "US", priority: 1 },
  { id: "loc-us-west", name: "Reno fulfilment centre", region: "NA", country: "US", priority: 2 },
  { id: "loc-eu-central", name: "Frankfurt warehouse", region: "EU", country: "DE", priority: 1 },
  { id: "loc-ap-south", name: "Singapore hub", region: "APAC", country: "SG", priority: 1 },
] as const;

type CategorySpec = { slug: string; name: string; de: string; fr: string; nouns: [string, string, string][]; attrs: Record<string, string[]> };

/** Subcategories with nouns in en/de/fr, so titles translate. */
const TREE: { slug: string; name: string; de: string; fr: string; children: CategorySpec[] }[] = [
  {
    slug: "electronics", name: "Electronics", de: "Elektronik", fr: "Électronique",
    children: [
      { slug: "headphones", name: "Headphones", de: "Kopfhörer", fr: "Casques", nouns: [["Wireless Headphones", "Kabellose Kopfhörer", "Casque sans fil"], ["Earbuds", "Ohrhörer", "Écouteurs"], ["Studio Monitor Headphones", "Studiokopfhörer", "Casque de studio"]], attrs: { color: ["black", "white", "navy", "sand"], connectivity: ["bluetooth", "wired", "usb-c"] } },
      { slug: "cameras", name: "Cameras", de: "Kameras", fr: "Appareils photo", nouns: [["Mirrorless Camera", "Systemkamera", "Appareil hybride"], ["Action Camera", "Actionkamera", "Caméra d'action"], ["Instant Camera", "Sofortbildkamera", "Appareil instantané"]], attrs: { color: ["black", "silver"], sensor: ["full-frame", "aps-c", "1-inch"] } },
      { slug: "camera-accessories", name: "Camera Accessories", de: "Kamerazubehör", fr: "Accessoires photo", nouns: [["Memory Card", "Speicherkarte", "Carte mémoire"], ["Camera Bag", "Kameratasche", "Sac photo"], ["Travel Tripod", "Reisestativ", "Trépied de voyage"]], attrs: { color: ["black", "grey", "olive"], material: ["nylon", "aluminium", "carbon"] } },
      { slug: "smart-home", name: "Smart Home", de: "Smart Home", fr: "Maison connectée", nouns: [["Smart Speaker", "Smarter Lautsprecher", "Enceinte connectée"], ["Smart Bulb", "Smarte Glühbirne", "Ampoule connectée"], ["Video Doorbell", "Video-Türklingel", "Sonnette vidéo"]], attrs: { color: ["white", "charcoal"], protocol: ["wifi", "zigbee", "matter"] } },
    ],
  },
  {
    slug: "home-kitchen", name: "Home & Kitchen", de: "Haus & Küche", fr: "Maison & Cuisine",
    children: [
      { slug: "cookware", name: "Cookware", de: "Kochgeschirr", fr: "Batterie de cuisine", nouns: [["Cast Iron Skillet", "Gusseisenpfanne", "Poêle en fonte"], ["Stainless Saucepan", "Edelstahltopf", "Casserole inox"], ["Dutch Oven", "Schmortopf", "Cocotte"]], attrs: { material: ["cast-iron", "stainless-steel", "ceramic"], color: ["black", "red", "cream"] } },
      { slug: "coffee", name: "Coffee & Tea", de: "Kaffee & Tee", fr: "Café & Thé", nouns: [["Espresso Machine", "Espressomaschine", "Machine à expresso"], ["Burr Grinder", "Kegelmahlwerk", "Moulin à meules"], ["Pour-Over Kettle", "Wasserkocher mit Schwanenhals", "Bouilloire col de cygne"]], attrs: { color: ["black", "steel", "white"], power: ["manual", "electric"] } },
      { slug: "bedding", name: "Bedding", de: "Bettwäsche", fr: "Literie", nouns: [["Linen Duvet Cover", "Leinenbettbezug", "Housse de couette en lin"], ["Down Pillow", "Daunenkissen", "Oreiller en duvet"], ["Wool Throw", "Wolldecke", "Plaid en laine"]], attrs: { material: ["linen", "cotton", "wool"], color: ["white", "sage", "charcoal", "terracotta"] } },
    ],
  },
  {
    slug: "sports-outdoors", name: "Sports & Outdoors", de: "Sport & Outdoor", fr: "Sports & Plein air",
    children: [
      { slug: "running", name: "Running", de: "Laufen", fr: "Course à pied", nouns: [["Running Shoe", "Laufschuh", "Chaussure de running"], ["Trail Shoe", "Trailschuh", "Chaussure de trail"], ["Running Vest", "Laufweste", "Gilet de course"]], attrs: { color: ["black", "orange", "blue", "lime"], terrain: ["road", "trail", "track"] } },
      { slug: "camping", name: "Camping", de: "Camping", fr: "Camping", nouns: [["Ultralight Tent", "Ultraleichtzelt", "Tente ultralégère"], ["Sleeping Bag", "Schlafsack", "Sac de couchage"], ["Camp Stove", "Campingkocher", "Réchaud"]], attrs: { color: ["green", "orange", "grey"], season: ["3-season", "4-season"] } },
      { slug: "cycling", name: "Cycling", de: "Radsport", fr: "Cyclisme", nouns: [["Cycling Helmet", "Fahrradhelm", "Casque de vélo"], ["Bike Light", "Fahrradlicht", "Éclairage vélo"], ["Saddle Bag", "Satteltasche", "Sacoche de selle"]], attrs: { color: ["black", "white", "red"], material: ["polycarbonate", "aluminium", "nylon"] } },
    ],
  },
  {
    slug: "fashion", name: "Fashion", de: "Mode", fr: "Mode",
    children: [
      { slug: "outerwear", name: "Outerwear", de: "Oberbekleidung", fr: "Vêtements d'extérieur", nouns: [["Rain Jacket", "Regenjacke", "Veste de pluie"], ["Down Parka", "Daunenparka", "Parka en duvet"], ["Fleece Pullover", "Fleecepullover", "Pull polaire"]], attrs: { color: ["black", "navy", "olive", "rust"], material: ["gore-tex", "down", "fleece"] } },
      { slug: "bags", name: "Bags", de: "Taschen", fr: "Sacs", nouns: [["Leather Backpack", "Lederrucksack", "Sac à dos en cuir"], ["Canvas Tote", "Canvas-Tasche", "Tote bag en toile"], ["Weekender Duffel", "Reisetasche", "Sac de week-end"]], attrs: { color: ["tan", "black", "navy"], material: ["leather", "canvas", "nylon"] } },
    ],
  },
  {
    slug: "beauty", name: "Beauty", de: "Beauty", fr: "Beauté",
    children: [
      { slug: "skincare", name: "Skincare", de: "Hautpflege", fr: "Soins de la peau", nouns: [["Hydrating Serum", "Feuchtigkeitsserum", "Sérum hydratant"], ["Mineral Sunscreen", "Mineralische Sonnencreme", "Écran solaire minéral"], ["Night Cream", "Nachtcreme", "Crème de nuit"]], attrs: { skin: ["dry", "oily", "all"], size: ["30ml", "50ml", "100ml"] } },
    ],
  },
  {
    slug: "toys-games", name: "Toys & Games", de: "Spielzeug", fr: "Jouets & Jeux",
    children: [
      { slug: "board-games", name: "Board Games", de: "Brettspiele", fr: "Jeux de société", nouns: [["Strategy Board Game", "Strategiespiel", "Jeu de stratégie"], ["Party Game", "Partyspiel", "Jeu d'ambiance"], ["Cooperative Game", "Kooperatives Spiel", "Jeu coopératif"]], attrs: { players: ["1-4", "2-6", "3-8"], age: ["8+", "10+", "14+"] } },
      { slug: "building-sets", name: "Building Sets", de: "Bausätze", fr: "Jeux de construction", nouns: [["Building Set", "Bauset", "Set de construction"], ["Marble Run", "Kugelbahn", "Circuit à billes"], ["Robot Kit", "Roboterbausatz", "Kit robot"]], attrs: { age: ["6+", "8+", "12+"], pieces: ["250", "500", "1000"] } },
    ],
  },
];

const BRANDS = [
  "Nordhaven", "Kestrel", "Aurelia", "Brightwater", "Cinder & Oak", "Dovetail", "Ember Labs", "Fjordline", "Granite Peak",
  "Halcyon", "Ironbark", "Juniper Co", "Kairos", "Lumen", "Marlow", "Northwind", "Obsidian", "Pinecrest", "Quill",
  "Riverstone", "Saltmarsh", "Tidewater", "Umbra", "Vantage", "Wildroot", "Yarrow", "Zephyr", "Alder & Ash", "Bluefin", "Copperline",
];
const SYLLABLES = ["ar", "ve", "lo", "ta", "ri", "no", "ka", "sen", "mi", "dor", "el", "qua", "zen", "tor", "lia", "mon", "pra", "sol", "vin", "cor"];
const EDITIONS = ["", "Pro", "Lite", "Max", "Air", "Plus", "Mini", "II", "Sport", "Classic"];
const SIZES = ["XS", "S", "M", "L", "XL"];
const FINISHES = ["Matte", "Gloss", "Natural", "Slate"];

export type SeedCategory = { id: string; slug: string; name: string; parentId: string | null; path: string; depth: number; position: number; translations: Record<string, string> };
export type SeedVariant = { sku: string; title: string; options: Record<string, string>; gtin: string; mpn: string; position: number; prices: Record<string, number> };
export type SeedProduct = {
  id: string; slug: string; title: string; description: string; brand: string; categoryId: string;
  attributes: Record<string, string>; images: { url: string; alt: string }[]; markets: string[];
  createdAt: number; family: number; bundle: number | null;
  translations: Record<string, { title: string; description: string }>;
  variants: SeedVariant[];
};
export type SeedStock = { sku: string; locationId: string; onHand: number; safetyStock: number; lowStockThreshold: number };

export function categories(): SeedCategory[] {
  const out: SeedCategory[] = [];
  TREE.forEach((top, i) => {
    const topId = `cat-${top.slug}`;
    out.push({ id: topId, slug: top.slug, name: top.name, parentId: null, path: `/${topId}/`, depth: 0, position: i, translations: { de: top.de, fr: top.fr } });
    top.children.forEach((child, j) => {
      const id = `cat-${child.slug}`;
      out.push({ id, slug: child.slug, name: child.name, parentId: topId, path: `/${topId}/${id}/`, depth: 1, position: j, translations: { de: child.de, fr: child.fr } });
    });
  });
  return out;
}

const LEAVES = TREE.flatMap((t) => t.children);

export const productId = (n: number) => `p-${String(n).padStart(6, "0")}`;
export const familyOf = (n: number) => Math.floor((n - 1) / FAMILY_SIZE);
/** Every third family is part of a bundle: three families from different leaves are bought together. */
export const BASE_TIME = Date.UTC(2026, 0, 1);

function leafForFamily(family: number): CategorySpec {
  return LEAVES[(family * 7) % LEAVES.length]!;
}

/**
 * Product n (1-based). Products come in families of FAMILY_SIZE that share brand, leaf category, model
 * line and most attributes: the planted answer for `related`.
 */
export function product(n: number): SeedProduct {
  const family = familyOf(n);
  const frng = mulberry32(family * 2654435761 + 17);
  const rng = mulberry32(n * 2246822519 + 3);
  const leaf = leafForFamily(family);
  const brand = pick(frng, BRANDS);
  const line = pick(frng, SYLLABLES) + pick(frng, SYLLABLES) + pick(frng, SYLLABLES);
  const model = line.charAt(0).toUpperCase() + line.slice(1);
  const nounIdx = int(frng, 0, leaf.nouns.length - 1);
  const [nounEn, nounDe, nounFr] = leaf.nouns[nounIdx]!;
  const edition = EDITIONS[(n - 1) % FAMILY_SIZE === 0 ? 0 : int(rng, 1, EDITIONS.length - 1)]!;
  const title = [brand, model, edition, nounEn].filter(Boolean).join(" ");
  const attributes: Record<string, string> = { line: model.toLowerCase() };
  for (const [name, values] of Object.entries(leaf.attrs)) {
    // Family members share attributes except, sometimes, colour.
    attributes[name] = name === "color" && rng() < 0.4 ? pick(rng, values) : pick(frng, values);
  }
  const id = productId(n);
  const slug = `${title.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/(^-|-$)/g, "")}-${n}`;
  const baseUsd = Math.round((int(frng, 9, 400) + rng() * 30) * 100 / 100) * 100 - 1;
  const variantCount = int(rng, 1, 4);
  const variantAxis = leaf.attrs.size ? "size" : leaf.slug === "running" || leaf.slug === "outerwear" ? "size" : "finish";
  const variants: SeedVariant[] = [];
  for (let v = 1; v <= variantCount; v++) {
    const optionValue = variantAxis === "size" ? SIZES[(v - 1) % SIZES.length]! : FINISHES[(v - 1) % FINISHES.length]!;
    const usd = baseUsd + (v - 1) * 500;
    variants.push({
      sku: `SKU-${String(n).padStart(6, "0")}-${v}`,
      title: `${title} / ${optionValue}`,
      options: { [variantAxis]: optionValue },
      gtin: String(4000000000000 + n * 10 + v),
      mpn: `${brand.slice(0, 3).toUpperCase()}-${model.toUpperCase()}-${v}`,
      position: v - 1,
      prices: { USD: usd, EUR: Math.round(usd * 0.92 / 100) * 100 - 1, GBP: Math.round(usd * 0.79 / 100) * 100 - 1 },
    });
  }
  const marketRoll = rng();
  const markets = marketRoll < 0.04 ? ["US"] : marketRoll < 0.08 ? ["EU"] : [];
  const description = `The ${model} ${nounEn.toLowerCase()} from ${brand}: ${Object.entries(attributes).filter(([k]) => k !== "line").map(([k, v]) => `${k} ${v}`).join(", ")}.`;
  return {
    id, slug, title, description, brand, categoryId: `cat-${leaf.slug}`, attributes,
    images: [
      { url: `https://images.edgeshelf.dev/${id}/1.jpg`, alt: title },
      { url: `https://images.edgeshelf.dev/${id}/2.jpg`, alt: `${title}, detail` },
    ],
    markets,
    createdAt: BASE_TIME + n * 60_000,
    family,
    bundle: bundleOf(family),
    translations: {
      de: { title: [brand, model, edition, nounDe].filter(Boolean).join(" "), description: `${nounDe} ${model} von ${brand}.` },
      fr: { title: [nounFr, brand, model, edition].filter(Boolean).join(" "), description: `${nounFr} ${model} de ${brand}.` },
    },
    variants,
  };
}

/** Bundles: families b, b+1, b+2 (three different leaves, since leaves step by 7) for every block of 9 families. */
export function bundleOf(family: number): number | null {
  const block = Math.floor(family / 9);
  return family % 9 < BUNDLE_SIZE ? block : null;
}

/** The products of bundle b that share its first family's position-in-family: the planted `complementary` answer. */
export function bundleMembers(bundle: number, memberIndex: number, totalProducts: number): string[] {
  const out: string[] = [];
  for (let f = bundle * 9; f < bundle * 9 + BUNDLE_SIZE; f++) {
    const n = f * FAMILY_SIZE + memberIndex + 1;
    if (n <= totalProducts) out.push(productId(n));
  }
  return out;
}

export function stock(p: SeedProduct, n: number): SeedStock[] {
  const rng = mulberry32(n * 97 + 11);
  const rows: SeedStock[] = [];
  for (const variant of p.variants) {
    const soldOut = rng() < 0.06;
    for (const loc of LOCATIONS) {
      const onHand = soldOut ? 0 : rng() < 0.15 ? 0 : int(rng, 1, 120);
      rows.push({ sku: variant.sku, locationId: loc.id, onHand, safetyStock: onHand > 20 ? 2 : 0, lowStockThreshold: 5 });
    }
  }
  return rows;
}

/**
 * Generated order history: each order buys one product from each family of a bundle (same member index),
 * plus, sometimes, one unrelated product as noise.
 */
export function orders(totalProducts: number, count: number): { skus: string[] }[] {
  const rng = mulberry32(424242);
  const bundles = Math.floor(Math.floor((totalProducts - 1) / FAMILY_SIZE) / 9) + 1;
  const out: { skus: string[] }[] = [];
  for (let i = 0; i < count; i++) {
    const bundle = int(rng, 0, bundles - 1);
    const member = int(rng, 0, FAMILY_SIZE - 1);
    const ids = bundleMembers(bundle, member, totalProducts);
    if (ids.length < 2) continue;
    const skus = ids.map((id) => `SKU-${id.slice(2)}-1`);
    if (rng() < 0.3) skus.push(`SKU-${productId(int(rng, 1, totalProducts)).slice(2)}-1`);
    out.push({ skus: [...new Set(skus)] });
  }
  return out;
}

export const DEMO_AFFILIATE = { id: "aff-demo", name: "Demo Reviews", trackingId: "demo", key: "demo-affiliate-key", campaign: "launch", allowedOrigins: ["http://localhost:8787", "http://127.0.0.1:8787"] };
export const DEV_STOREFRONT_KEY = { id: "key-dev-storefront", key: "dev-storefront-key", label: "Development storefront" };
