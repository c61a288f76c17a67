-- Operator console: sessions (signed cookie + server-side revocation), sign-in throttle, and a bounded
-- per-minute metrics store (the history /admin/metrics lacks: sparklines and SLO windows).
CREATE TABLE `console_logins` (
	`id` text PRIMARY KEY NOT NULL,
	`role` text NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`revoked_at` integer
);
--> statement-breakpoint
CREATE INDEX `console_logins_expires_idx` ON `console_logins` (`expires_at`);
--> statement-breakpoint
CREATE TABLE `console_signin_failures` (
	`client` text PRIMARY KEY NOT NULL,
	`failures` integer NOT NULL,
	`window_start` integer NOT NULL,
	`locked_until` integer NOT NULL DEFAULT 0
);
--> statement-breakpoint
CREATE TABLE `metric_points` (
	`minute` integer NOT NULL,
	`name` text NOT NULL,
	`value` real NOT NULL,
	PRIMARY KEY (`minute`, `name`)
) WITHOUT ROWID;
--> statement-breakpoint
-- The console's low-stock and sold-out lists read the projection by status.
CREATE INDEX `availability_status_idx` ON `availability` (`status`,`available`);
