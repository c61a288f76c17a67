-- The search vocabulary: every term products_fts holds, read-only, maintained by FTS5 itself (no trigger, no
-- table to keep in step). Typo correction (src/catalog/typo.ts) looks up the one-edit neighbours of a word the
-- catalog does not contain here, by exact term, so the cost does not depend on the vocabulary's size.
CREATE VIRTUAL TABLE products_fts_vocab USING fts5vocab(products_fts, 'row');
