/**
 * The boundary switcher's progress (meta key, epoch ms): every promotion boundary at or before it has been
 * switched and its webhook event recorded. Promotion writes read it too, to record what the switcher has not.
 */
export const SWITCHED_THROUGH = "promotions:switched_through";

/** How far back a first run (no watermark yet) looks for boundaries. */
export const FIRST_RUN_LOOKBACK_MS = 10 * 60_000;
