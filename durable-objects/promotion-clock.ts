/**
 * One alarm for the whole promotion schedule: it fires at the next start or end, switches what is due
 * (src/promotions/switcher.ts) and re-arms itself for the following boundary. The every-minute cron
 * covers a missed or failed alarm; a throwing alarm is also retried by the runtime.
 */
import { DurableObject } from "cloudflare:workers";
import { now } from "../src/lib/clock";
import { nextScheduledBoundary, switchDue } from "../src/promotions/switcher";

export class PromotionClock extends DurableObject<Env> {
  /** Makes sure an alarm fires at or before `at`. Never throws (callers fire and forget). */
  async arm(at: number): Promise<{ ok: true; alarm: number | null }> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || at < current) await this.ctx.storage.setAlarm(at);
    return { ok: true, alarm: await this.ctx.storage.getAlarm() };
  }

  override async alarm(): Promise<void> {
    // Loop: a switch can take longer than the gap to the next boundary (staggered starts, a loaded origin);
    // boundaries that passed meanwhile are switched now rather than after another alarm round trip.
    for (let round = 0; round < 50; round++) {
      const t = now();
      await switchDue(this.env, t);
      const next = await nextScheduledBoundary(this.env.DB, t);
      if (next === null) return;
      if (next <= now()) continue;
      // Behind the wall clock only when a test moved `now` backwards: leave that to the cron or the next arm().
      if (next > Date.now()) await this.ctx.storage.setAlarm(next);
      return;
    }
    // Still behind after many rounds: come back at once rather than hold the object.
    await this.ctx.storage.setAlarm(Date.now());
  }
}
