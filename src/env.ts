import type { Affiliate } from "./affiliates/account";
import type { Session } from "./console/session";

/** The one environment type shared by every Hono app, sub-app and middleware. */
export type AppEnv = {
  Bindings: Env;
  Variables: {
    requestId: string;
    /** Set by the auth middleware once a bearer key has been checked. */
    principal?: Principal;
    /** Set by `requireAffiliate`: the account behind an affiliate key. */
    affiliate?: Affiliate;
    /** Set by the console's auth middleware: the signed-in operator and the CSRF token of the session. */
    console?: { session: Session; csrf: string };
  };
};

export type Principal =
  | { kind: "admin" }
  | { kind: "storefront"; keyId: string }
  | { kind: "affiliate"; keyId: string; affiliateId: string };

/** What a domain write needs from its request: the bindings, and a way to finish work after the response. */
export type WriteContext = { env: Env; waitUntil: (promise: Promise<unknown>) => void };
