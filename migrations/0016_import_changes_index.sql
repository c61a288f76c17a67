-- An import's staged changes to existing products (is_new = 0), by line: the commit counts them in chunks and checks
-- their new slugs before the switch, and the switch and the roll-forward read them chunk by chunk. Without it each of
-- those reads scanned every staged row of the import (a million new products' rows for a few changed ones).
CREATE INDEX `import_rows_changes_idx` ON `import_rows` (`import_id`, `line`) WHERE `is_new` = 0;
