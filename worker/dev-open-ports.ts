import type { PortKind } from "../datapath/port-kind.ts";
import { isDevMode, type Env } from "./env.ts";
import { httpFail, type HttpResult } from "./http.ts";
import type { PortAuth } from "../contract/port-request.ts";

// In open dev mode anyone who can reach the relay joins without a token. A member port
// is harmless there (it sends from its own MACs and sees only its own unicast); a bridge
// port may send from any MAC and a monitor port sees every frame, so a tokenless one
// needs the developer's explicit EDGELAN_DEV_OPEN_PORTS (e.g. "bridge,monitor").
// Tokens still work in dev mode for any kind (they are signed with the dev key).

/** Port kinds EDGELAN_DEV_OPEN_PORTS lets join without a token in dev mode (comma-separated; unknown names ignored). */
export function devOpenPortKinds(env: Env): Set<PortKind> {
  const kinds = new Set<PortKind>(["member"]);
  for (const entry of (env.EDGELAN_DEV_OPEN_PORTS ?? "").split(",")) {
    const name = entry.trim();
    if (name === "bridge" || name === "monitor") kinds.add(name);
  }
  return kinds;
}

/** Refuses a tokenless dev-mode join as a kind EDGELAN_DEV_OPEN_PORTS does not open (403 `dev-port-kind-closed`). */
export function checkDevOpenPort(env: Env, kind: PortKind, auth: PortAuth): HttpResult<void> {
  if (!isDevMode(env) || auth !== "dev" || devOpenPortKinds(env).has(kind)) return { ok: true, value: undefined };
  return httpFail(
    403,
    "dev-port-kind-closed",
    `open dev mode admits tokenless members only; a tokenless ${kind} port needs EDGELAN_DEV_OPEN_PORTS=${kind} ` +
      `(in .dev.vars or --var), or a ${kind} token from POST /v1/segments/:name/tokens`,
  );
}
