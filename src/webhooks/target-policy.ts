/**
 * Where webhooks may be sent. In production only `https` URLs whose host is a public name or address: no
 * loopback, private (RFC 1918, unique-local), link-local (cloud metadata at 169.254.169.254), CGNAT, unspecified or
 * multicast addresses, no `localhost`/`.local`/`.internal` names (also written with a trailing dot), no credentials
 * in the URL (SSRF). Local
 * development may send to http://127.0.0.1 receivers when WEBHOOK_ALLOW_LOCAL is "true"; that exception is
 * ignored whenever ENVIRONMENT is "production". Checked at registration and again before every delivery, and
 * redirects are never followed, so a target cannot bounce a delivery inward.
 */
export type TargetEnv = Pick<Env, "ENVIRONMENT"> & { WEBHOOK_ALLOW_LOCAL?: string };

export function localTargetsAllowed(env: TargetEnv): boolean {
  return env.ENVIRONMENT !== "production" && env.WEBHOOK_ALLOW_LOCAL === "true";
}

function ipv4Private(host: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return (
    a === 0 || a === 10 || a === 127 || a >= 224 ||
    (a === 100 && b >= 64 && b <= 127) ||
    (a === 169 && b === 254) ||
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) ||
    (a === 192 && b === 0) ||
    (a === 198 && (b === 18 || b === 19))
  );
}

function ipv6Private(host: string): boolean {
  if (!host.startsWith("[")) return false;
  const h = host.slice(1, -1).toLowerCase();
  if (h === "::" || h === "::1") return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  if (mapped) return ipv4Private(mapped[1]!);
  // ::ffff:7f00:1 style mapped addresses, unique-local fc00::/7, link-local fe80::/10, multicast ff00::/8.
  return h.startsWith("::ffff:") || /^f[cd]/.test(h) || /^fe[89ab]/.test(h) || h.startsWith("ff");
}

/** Why a URL may not receive webhooks, or null when it may. */
export function refuseTarget(raw: string, env: TargetEnv): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "not an absolute URL";
  }
  const local = localTargetsAllowed(env);
  if (url.username || url.password) return "credentials in the URL are not allowed (use the signing secret)";
  if (url.protocol !== "https:" && !(local && url.protocol === "http:")) return "only https URLs may receive webhooks";
  if (local) return null;
  // A name with its trailing dot (`localhost.`, `x.internal.`) is the same host written fully qualified: URL keeps
  // the dot, so without this it would pass every name check below.
  const host = url.hostname.toLowerCase().replace(/\.+$/, "");
  if (host === "" || host === "localhost" || host.endsWith(".localhost") || host.endsWith(".local") || host.endsWith(".internal") || !host.includes(".")) {
    return `host '${host}' is not a public name`;
  }
  // URL normalises decimal, octal and hex IPv4 spellings (http://2130706433/) to dotted form before this check.
  if (ipv4Private(host) || ipv6Private(host)) return `address '${host}' is private, loopback or link-local`;
  return null;
}
