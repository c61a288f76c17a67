/**
 * Category tree and single categories (with breadcrumbs), through the tiered read path (edge → D1).
 * Product counts per category come from facet_counts, rolled up the tree (summed over the catalog partitions; the
 * tree itself is read from the directory, partition 0).
 */
import { allCatalogDbs } from "../db/partitions";
import { ApiError } from "../lib/errors";
import { TAG_CATEGORIES, categoryCacheKey, categoryTreeCacheKey } from "./cache-keys";
import { categoriesQuery, categoryCountsQuery } from "./facets";
import { GROW_CLEANUP_KEY } from "../db/ownership";
import { originSession, type OriginSession } from "./origin";
import { consistentRead } from "../imports/published-view";
import { tieredRead } from "./read-path";

export type CategoryNode = { id: string; slug: string; name: string; parent_id: string | null; depth: number; product_count: number; children: CategoryNode[] };
export type CategoryDetail = Omit<CategoryNode, "children"> & {
  breadcrumbs: { id: string; slug: string; name: string }[];
  children: { id: string; slug: string; name: string; product_count: number }[];
};

type Row = { id: string; slug: string; name: string; parent_id: string | null; path: string; t_name: string | null };

async function loadTree(origins: OriginSession[], locale: string): Promise<{ roots: CategoryNode[]; byId: Map<string, CategoryNode & { path: string }> }> {
  type Count = { value: string; count: number };
  // Over several partitions an old one in a growth's clean-up leaves out the moved products it still holds.
  const leafCounts = categoryCountsQuery(origins.length > 1 ? { key: GROW_CLEANUP_KEY, value: String(origins.length) } : undefined);
  const [first, ...rest] = origins;
  const [[rows, counts], ...others] = await Promise.all([
    first!.batch<[Row[], Count[]]>([categoriesQuery(locale), leafCounts]),
    ...rest.map((o) => o.batch<[Count[]]>([leafCounts]).then(([more]) => [[], more] as [Row[], Count[]])),
  ]);
  const leaf = new Map<string, number>();
  for (const c of [...counts, ...others.flatMap(([, more]) => more)]) leaf.set(c.value, (leaf.get(c.value) ?? 0) + Number(c.count));
  const byId = new Map<string, CategoryNode & { path: string }>();
  for (const r of rows as Row[]) {
    let count = 0;
    for (const o of rows as Row[]) if (o.path.startsWith(r.path)) count += leaf.get(o.id) ?? 0;
    byId.set(r.id, { id: r.id, slug: r.slug, name: r.t_name ?? r.name, parent_id: r.parent_id, depth: r.path.split("/").filter(Boolean).length - 1, product_count: count, children: [], path: r.path });
  }
  const roots: CategoryNode[] = [];
  for (const node of byId.values()) {
    const parent = node.parent_id ? byId.get(node.parent_id) : undefined;
    (parent ? parent.children : roots).push(node);
  }
  return { roots, byId };
}

const strip = ({ path: _path, ...node }: CategoryNode & { path?: string }): CategoryNode => ({ ...node, children: node.children.map(strip) });

type Common = { env: Env; request: Request; waitUntil: (p: Promise<unknown>) => void; locale: string };

const POLICY = { sMaxAge: 300, staleWhileRevalidate: 60 };

async function sha1(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return [...new Uint8Array(digest).slice(0, 12)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The tree over every partition, as one state of the catalog: an import being rolled forward is waited out. */
function readTree(env: Env, primary: boolean, locale: string) {
  return consistentRead(env, () => loadTree(allCatalogDbs(env).map((db) => originSession(db, { primary })), locale));
}

export function readCategoryTree(input: Common): Promise<Response> {
  return tieredRead<CategoryNode[]>({
    request: input.request,
    cacheKey: categoryTreeCacheKey(input.locale),
    waitUntil: input.waitUntil,
    origin: async ({ primary }) => (await readTree(input.env, primary, input.locale)).roots.map(strip),
    notFound: () => ApiError.notFound("No categories."),
    render: async (roots) => {
      const body = JSON.stringify({ items: roots });
      return { body, etag: `c.${await sha1(body)}`, tags: [TAG_CATEGORIES], contentLanguage: input.locale };
    },
    policy: POLICY,
  });
}

export function readCategory(input: Common & { slug: string }): Promise<Response> {
  return tieredRead<CategoryDetail>({
    request: input.request,
    cacheKey: categoryCacheKey(input.slug, input.locale),
    waitUntil: input.waitUntil,
    origin: async ({ primary }) => {
      const { byId } = await readTree(input.env, primary, input.locale);
      const node = [...byId.values()].find((n) => n.slug === input.slug || n.id === input.slug);
      if (!node) return null;
      const breadcrumbs = node.path
        .split("/")
        .filter(Boolean)
        .map((id) => byId.get(id))
        .filter((n): n is NonNullable<typeof n> => !!n)
        .map((n) => ({ id: n.id, slug: n.slug, name: n.name }));
      return {
        id: node.id, slug: node.slug, name: node.name, parent_id: node.parent_id, depth: node.depth, product_count: node.product_count,
        breadcrumbs,
        children: node.children.map((c) => ({ id: c.id, slug: c.slug, name: c.name, product_count: c.product_count })),
      };
    },
    notFound: () => ApiError.notFound(`No category '${input.slug}'.`),
    render: async (detail) => {
      const body = JSON.stringify(detail);
      return { body, etag: `c.${await sha1(body)}`, tags: [TAG_CATEGORIES, ...detail.breadcrumbs.map((b) => b.id)], contentLanguage: input.locale };
    },
    policy: POLICY,
  });
}
