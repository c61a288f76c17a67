-- An old catalog partition's facet counts of the rows it still holds, during a growth's clean-up, of products that
-- moved to its new sibling (src/db/grow.ts): written by each replay (the flip's last), lowered by every deleteMoved
-- chunk in the deletion's own transaction, emptied with the `grow:cleanup` flag. The no-filter facets of readers
-- that route by the new partition count subtract it from facet_counts, so they stay exact through the clean-up
-- (docs/storage.md, "Growing N → 2N"). Empty at every other time and in every other partition.
CREATE TABLE `grow_moved_facets` (
	`facet` text NOT NULL,
	`value` text NOT NULL,
	`count` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`facet`, `value`)
);
