import { EDGELAN_VERSION } from "../datapath/version.ts";
import { isDevMode } from "./env.ts";
import { jsonResponse } from "./http.ts";
import type { RouteContext } from "./router.ts";
import { isUnconfigured, UNCONFIGURED_HINT } from "./unconfigured.ts";

/** Shouted by /healthz in open dev mode, so nobody mistakes such a relay for a secured one. */
export const DEV_MODE_WARNING =
  "OPEN DEVELOPMENT MODE: no EDGELAN_ADMIN_TOKEN is set, so the admin API needs no token and every segment accepts joins without one. Never expose this relay.";

/** `GET /healthz`: liveness, version, and whether the relay is open. */
export function healthz({ env }: RouteContext): Response {
  const devMode = isDevMode(env);
  const message = devMode ? DEV_MODE_WARNING : isUnconfigured(env) ? UNCONFIGURED_HINT : undefined;
  return jsonResponse(message === undefined ? { ok: true, version: EDGELAN_VERSION, devMode } : { ok: true, version: EDGELAN_VERSION, devMode, message });
}
