import { EDGELAN_VERSION } from "../datapath/version.ts";
import { isDevMode } from "./env.ts";
import { jsonResponse } from "./http.ts";
import type { RouteContext } from "./router.ts";

/** Shouted by /healthz in open dev mode, so nobody mistakes such a relay for a secured one. */
export const DEV_MODE_WARNING =
  "OPEN DEVELOPMENT MODE: no EDGELAN_ADMIN_TOKEN is set, so the admin API needs no token and every segment accepts joins without one. Never expose this relay.";

/** `GET /healthz`: liveness, version, and whether the relay is open. */
export function healthz({ env }: RouteContext): Response {
  const devMode = isDevMode(env);
  return jsonResponse(devMode ? { ok: true, version: EDGELAN_VERSION, devMode, message: DEV_MODE_WARNING } : { ok: true, version: EDGELAN_VERSION, devMode });
}
