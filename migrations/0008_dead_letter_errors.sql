-- Why a message became a dead letter (the consumer's last error, or why its body can never be processed).
-- NULL for letters that reached the dead-letter queue without the consumer recording a cause.
ALTER TABLE `dead_letters` ADD `error` text;
