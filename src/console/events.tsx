/** Events: dead letters with replay, the outbox backlog and the propagation lag histogram of the last hour. */
import { z } from "zod";
import { collectMetrics } from "../events/metrics";
import { listDeadLetters } from "../events/dead-letters";
import { createApp } from "../lib/validation";
import { histogram, LAG_BOUNDS, minuteOf, readPoints } from "../metrics/timeseries";
import { adminCall, done, formInput, operator, page, problemText } from "./kit";
import { fmt, ms, when, WriteForm } from "./ui";

export const eventPages = createApp();

function LagHistogram(props: { counts: number[] }) {
  const max = Math.max(1, ...props.counts);
  const total = props.counts.reduce((a, b) => a + b, 0);
  return (
    <table id="lag-histogram">
      <caption class="sr-only">Write to consume lag, events per bucket, last hour</caption>
      <thead>
        <tr>
          <th scope="col">lag up to</th>
          <th scope="col" class="num">events</th>
          <th scope="col">share</th>
        </tr>
      </thead>
      <tbody>
        {props.counts.map((n, i) => (
          <tr>
            <th scope="row">{ms(LAG_BOUNDS[i] ?? null)}</th>
            <td class="num">{fmt(n)}</td>
            <td>
              <svg width="200" height="12" viewBox="0 0 200 12" role="img" aria-label={`${total ? ((n / total) * 100).toFixed(1) : 0}%`}>
                <rect x="0" y="1" height="10" width={((n / max) * 200).toFixed(1)} fill="#0969da"></rect>
              </svg>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

eventPages.get("/console/events", async (c) => {
  const op = operator(c);
  const now = Date.now();
  const to = minuteOf(now);
  const [metrics, letters, table] = await Promise.all([
    collectMetrics(c.env, now),
    listDeadLetters(c.env, { pendingOnly: true, limit: 50 }),
    readPoints(c.env.DB, to - 59, to, ["lag."]),
  ]);
  return page(
    c,
    "Events",
    <>
      <div class="cols">
        <section class="panel" aria-labelledby="pipe-h">
          <h2 id="pipe-h">Pipeline</h2>
          <table class="kv">
            <tbody>
              <tr>
                <th scope="row">outbox backlog (unsent)</th>
                <td data-figure="outbox">{fmt(metrics.outbox.backlog)}</td>
              </tr>
              <tr>
                <th scope="row">oldest unsent</th>
                <td>{ms(metrics.outbox.oldest_unsent_age_ms)}</td>
              </tr>
              <tr>
                <th scope="row">lag p50 / p95 / p99 (15 min, {fmt(metrics.propagation_lag_ms.samples)} events)</th>
                <td>
                  {ms(metrics.propagation_lag_ms.p50)} / {ms(metrics.propagation_lag_ms.p95)} / {ms(metrics.propagation_lag_ms.p99)}
                </td>
              </tr>
              <tr>
                <th scope="row">dead letters pending / total</th>
                <td data-figure="dead-letters">
                  {fmt(metrics.dead_letters.pending)} / {fmt(metrics.dead_letters.total)}
                </td>
              </tr>
            </tbody>
          </table>
        </section>
        <section class="panel" aria-labelledby="lag-h">
          <h2 id="lag-h">Lag histogram (last hour)</h2>
          <LagHistogram counts={histogram(table, "lag", LAG_BOUNDS.length)} />
        </section>
      </div>
      <section class="panel" aria-labelledby="dl-h">
        <h2 id="dl-h">Dead letters</h2>
        <p class="muted">Events that failed every retry. Fix the cause, then replay: they go back onto the queue and are applied in version order.</p>
        {letters.length ? (
          <>
            <WriteForm action="/console/events/replay" csrf={op.csrf} role={op.session.role} confirm={`Replay all ${letters.length} pending dead letters?`} label="Replay all dead letters">
              <button type="submit">Replay all pending</button>
            </WriteForm>
            <table id="dead-letters">
              <thead>
                <tr>
                  <th scope="col">received</th>
                  <th scope="col">attempts</th>
                  <th scope="col">event</th>
                  <th scope="col">action</th>
                </tr>
              </thead>
              <tbody>
                {letters.map((d) => (
                  <tr data-dead-letter={d.id}>
                    <td>{when(d.received_at)}</td>
                    <td class="num">{d.attempts}</td>
                    <td>
                      <pre>{JSON.stringify(d.body)}</pre>
                    </td>
                    <td>
                      <WriteForm action="/console/events/replay" csrf={op.csrf} role={op.session.role} label={`Replay dead letter ${d.id}`}>
                        <input type="hidden" name="id" value={d.id} />
                        <button type="submit">Replay</button>
                      </WriteForm>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        ) : (
          <p id="no-dead-letters">No dead letters pending.</p>
        )}
      </section>
    </>,
  );
});

eventPages.post("/console/events/replay", async (c) => {
  const f = await formInput(c, z.object({ id: z.string().min(1).max(200).optional() }));
  const res = await adminCall(c, "POST", "/admin/events/dead-letters/replay", f.id ? { ids: [f.id] } : {});
  if (res.status !== 200) return done(c, "/console/events", `Replay failed: ${problemText(res)}`, "error");
  return done(c, "/console/events", `Replayed ${String(res.body?.replayed ?? 0)} dead letter(s).`);
});
