/** Environment for every wrangler call: no telemetry, no Request.cf download (these machines are offline). */
export const QUIET_ENV = {
  ...process.env,
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
};
