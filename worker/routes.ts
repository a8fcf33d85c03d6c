import { resetCell } from "./cell-admin.ts";
import { connectPort } from "./connect.ts";
import { healthz } from "./healthz.ts";
import { getMetrics } from "./metrics.ts";
import type { Route } from "./router.ts";
import { deleteSegment, getLeases, getPorts, getSegment, postToken, putSegment, revokeToken } from "./segment-admin.ts";
import { listSegments } from "./segment-list.ts";

/** Every route the relay serves (documented in docs/api.md). */
export const ROUTES: readonly Route[] = [
  { method: "GET",    path: "/healthz",                   access: "public", handle: healthz },
  { method: "GET",    path: "/v1/segments/:name/connect", access: "public", handle: connectPort },
  { method: "GET",    path: "/v1/segments",               access: "admin",  handle: listSegments },
  { method: "PUT",    path: "/v1/segments/:name",         access: "admin",  handle: putSegment },
  { method: "GET",    path: "/v1/segments/:name",         access: "admin",  handle: getSegment },
  { method: "DELETE", path: "/v1/segments/:name",         access: "admin",  handle: deleteSegment },
  { method: "GET",    path: "/v1/segments/:name/ports",   access: "admin",  handle: getPorts },
  { method: "GET",    path: "/v1/segments/:name/leases",  access: "admin",  handle: getLeases },
  { method: "POST",   path: "/v1/segments/:name/tokens",  access: "admin",  handle: postToken },
  { method: "POST",   path: "/v1/segments/:name/tokens/:jti/revoke", access: "admin", handle: revokeToken },
  { method: "DELETE", path: "/v1/segments/:name/tokens/:jti",        access: "admin", handle: revokeToken },
  // Open development mode only (404 otherwise): kills one cell of a segment of several, for tests.
  { method: "POST",   path: "/v1/segments/:name/cells/:index/reset", access: "admin", handle: resetCell },
  // Admin or the read-only EDGELAN_METRICS_TOKEN: the handler checks.
  { method: "GET",    path: "/v1/segments/:name/metrics", access: "public", handle: getMetrics },
];
