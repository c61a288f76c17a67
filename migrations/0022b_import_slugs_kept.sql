-- Changes to existing products published without their new slug: another product of the partition took it after the
-- import's checks, and the product kept its slug (src/imports/publish.ts). JSON [{line, product_id, slug, kept,
-- taken_by}], in line order; shown by GET /admin/imports/{id} and sent in the import.completed webhook.
ALTER TABLE `imports` ADD `slugs_kept` text DEFAULT '[]' NOT NULL;
--> statement-breakpoint
DROP TRIGGER IF EXISTS webhook_import_completed;
--> statement-breakpoint
-- import.completed (as in 0011), its data now with `slugs_kept`.
CREATE TRIGGER webhook_import_completed AFTER UPDATE OF status ON imports
WHEN NEW.status = 'completed' AND OLD.status <> 'completed'
BEGIN
  INSERT OR IGNORE INTO webhook_events (id, type, payload, created_at)
  SELECT 'msg_import.completed_' || NEW.id, 'import.completed',
    json_object('type', 'import.completed', 'timestamp', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'data', json_object(
      'import_id', NEW.id, 'format', NEW.format, 'total_lines', NEW.total_lines, 'accepted', NEW.accepted,
      'rejected', NEW.rejected, 'started_at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.created_at / 1000.0, 'unixepoch'),
      'slugs_kept', json(NEW.slugs_kept))),
    CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
  WHERE EXISTS (SELECT 1 FROM webhook_endpoints e, json_each(e.events) j WHERE e.status = 'active' AND e.deleted_at IS NULL AND j.value = 'import.completed');
END;
