-- An import's changes to existing products at N > 1 are applied in place, partition 0's in the switch and each
-- other partition's at its roll-forward. `rolling` = 1 on the directory's row from the switch until every
-- partition's roll-forward has committed: readers do not read the catalog while it is set, and re-read when it
-- changed under them (src/imports/published-view.ts). Always 0 in the other partitions' rows and at N = 1.
ALTER TABLE `import_visibility` ADD `rolling` integer DEFAULT 0 NOT NULL;
