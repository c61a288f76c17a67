DROP INDEX `sales_daily_day_idx`;--> statement-breakpoint
CREATE INDEX `sales_daily_window_idx` ON `sales_daily` (`currency`,`day`,`product_id`,`units`);