/**
 * Waits until the event pipeline is idle: no new propagation-lag sample (one per consumed event) for 3 s, at most
 * 60 s. `samples` reads the count from /admin/metrics. Returns the seconds waited.
 */
export async function drainEvents(samples: () => Promise<number>): Promise<number> {
  const t0 = performance.now();
  let last = await samples();
  let stableSince = performance.now();
  while (performance.now() - stableSince < 3000 && performance.now() - t0 < 60_000) {
    await new Promise((r) => setTimeout(r, 250));
    const now = await samples();
    if (now !== last) {
      last = now;
      stableSince = performance.now();
    }
  }
  return (performance.now() - t0) / 1000;
}
