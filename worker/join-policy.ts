import type { PortKind } from "../datapath/port-kind.ts";
import { checkDevOpenPort } from "./dev-open-ports.ts";
import type { Env } from "./env.ts";
import type { HttpResult } from "./http.ts";
import { checkSegmentOrigin } from "./origin.ts";
import type { PortAuth } from "../contract/port-request.ts";

/**
 * What a join must satisfy besides its token: a tokenless dev-mode bridge or monitor needs
 * EDGELAN_DEV_OPEN_PORTS, and a browser join needs an origin the segment's `allowedOrigins` lists.
 * (The dev-mode origin rule applies to every route and runs in the router.)
 */
export async function checkJoinPolicy(request: Request, env: Env, segment: string, kind: PortKind, auth: PortAuth): Promise<HttpResult<void>> {
  const openPort = checkDevOpenPort(env, kind, auth);
  if (!openPort.ok) return openPort;
  return checkSegmentOrigin(request, env, segment);
}
