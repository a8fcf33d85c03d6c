import type { Segment } from "../durable/segment.ts";

/** The Worker's bindings, typed once. */
export interface Env {
  SEGMENTS: DurableObjectNamespace<Segment>;
  /** Version string reported by /healthz. */
  EDGELAN_VERSION: string;
  /** Admin bearer token for the management API (`wrangler secret put`, or `.dev.vars` locally). */
  EDGELAN_ADMIN_TOKEN?: string;
  /** HMAC key for join tokens; falls back to the admin token when unset. */
  EDGELAN_TOKEN_SECRET?: string;
  /** "1" only when started by `npm start` without an admin token: explicit open development mode. */
  EDGELAN_DEV_MODE?: string;
  /** Dev mode: extra browser origins (comma-separated, e.g. "http://lab.test:3000") besides localhost; see worker/origin.ts. */
  EDGELAN_DEV_ALLOWED_ORIGINS?: string;
  /** Dev mode: port kinds besides member that may join without a token ("bridge", "monitor", or both comma-separated). */
  EDGELAN_DEV_OPEN_PORTS?: string;
}

/** Whether the relay runs in explicit open development mode. */
export function isDevMode(env: Env): boolean {
  return env.EDGELAN_DEV_MODE === "1";
}

/** A configured secret, or null when the variable is unset or empty. */
export function configuredSecret(value: string | undefined): string | null {
  return value === undefined || value === "" ? null : value;
}
