import { pruneSent, resendUnsent } from "./events/outbox";
import { pruneLagSamples } from "./events/metrics";
import { recommendationsTick } from "./recommendations/jobs";
import { now as clockNow } from "./lib/clock";
import { promotionsTick } from "./promotions/switcher";
import { recordGauges } from "./metrics/gauges";
import { prunePoints } from "./metrics/timeseries";
import { dispatchWebhooks, pruneWebhooks } from "./webhooks/dispatch";
import { CRON_IMPORT_RESERVE, CRON_IMPORT_SHARE, importsTick } from "./imports/import-job";
import type { Budget } from "./imports/publish";
import { sendOutboxBatches } from "./events/outbox";
import { mirrorEndpoints } from "./webhooks/partition-events";
import { redriveCatalogLetters } from "./events/redrive";

/** Entry point of the `scheduled` handler; each periodic job registers here. */
export async function handleScheduled(controller: ScheduledController, env: Env, ctx: ExecutionContext): Promise<void> {
  void ctx;
  const now = Math.max(Date.now(), controller.scheduledTime);
  // Imports first: finish what a request left (a published import's switch, roll-forward and finalization, an aborted
  // one's prune). Caught so that a failing step never stops the other jobs of this tick.
  const importBudget: Budget = { left: CRON_IMPORT_SHARE, reserve: CRON_IMPORT_RESERVE };
  await importsTick(env, now, importBudget)
    .then((outbox) => sendOutboxBatches(env, outbox))
    .catch((err) => console.error(JSON.stringify({ level: "error", job: "imports", error: String(err) })));
  // A batch too large for the imports' share took this invocation's queries (production allows 1,000): everything
  // else runs next minute, as it does after any tick it missed.
  if (importBudget.drewReserve) {
    console.log(JSON.stringify({ level: "info", job: "imports", message: "an import batch took the whole tick; the other jobs run next minute" }));
    return;
  }
  // Outbox safety net: anything a request failed to send is re-sent here, so a failing queue loses nothing.
  await resendUnsent(env, now).catch((err) => console.error(JSON.stringify({ level: "error", job: "outbox-resend", error: String(err) })));
  // Catalog events an outage longer than the queue's retries dead-lettered: re-driven, or KV would keep the old
  // documents as fresh with no end (src/events/redrive.ts).
  await redriveCatalogLetters(env, now).catch((err) => console.error(JSON.stringify({ level: "error", job: "dead-letter-redrive", error: String(err) })));
  // Promotions: boundaries a missed alarm left unswitched, and re-arm the alarm (src/promotions/switcher.ts).
  await promotionsTick(env, clockNow()).catch((err) => console.error(JSON.stringify({ level: "error", job: "promotions", error: String(err) })));
  // Recommendations: recompute products edited or ordered since the last tick; continue a stalled rebuild.
  await recommendationsTick(env).catch((err) => console.error(JSON.stringify({ level: "error", job: "recommendations", error: String(err) })));
  // Backlog and dead-letter gauges for the console's history, and the isolate's buffered request counts.
  await recordGauges(env, now).catch((err) => console.error(JSON.stringify({ level: "error", job: "metric-gauges", error: String(err) })));
  // Webhooks: endpoint subscriptions mirrored into the catalog partitions (an endpoint the delivery path disabled), events
  // recorded by a change no queue batch followed, and deliveries whose send was lost.
  await mirrorEndpoints(env).catch((err) => console.error(JSON.stringify({ level: "error", job: "webhook-mirrors", error: String(err) })));
  await dispatchWebhooks(env, now, { recoverLost: true }).catch((err) => console.error(JSON.stringify({ level: "error", job: "webhooks", error: String(err) })));
  await Promise.all([pruneSent(env, now), pruneLagSamples(env.DB, now), prunePoints(env.DB, now), pruneWebhooks(env, now)]).catch((err) =>
    console.error(JSON.stringify({ level: "error", job: "outbox-prune", error: String(err) })),
  );
}
