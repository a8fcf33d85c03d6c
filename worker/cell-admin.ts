import type { CellResetOutcome } from "../contract/cell-api.ts";
import { isDevMode } from "./env.ts";
import { errorResponse, httpError, jsonResponse } from "./http.ts";
import type { RouteContext } from "./router.ts";

/**
 * `POST /v1/segments/:name/cells/:index/reset` (open development mode only, 404 otherwise): aborts one
 * cell of a segment of several as a crash would (docs/cells.md §11), so tests can kill a cell under the
 * real relay. Its ports' sockets drop, they reconnect and resume; storage is kept.
 */
export async function resetCell({ env, segment, params }: RouteContext): Promise<Response> {
  if (!isDevMode(env)) return errorResponse(httpError(404, "not-found", "no route for this path outside open development mode; see docs/api.md"));
  const index = /^\d{1,3}$/.test(params.index ?? "") ? Number(params.index) : NaN;
  // Cell 0 is the home itself: the call fails as it resets (undefined here). Any other failure is an error.
  const outcome: CellResetOutcome | null | undefined = await env.SEGMENTS.getByName(segment).resetCell(index).catch((error: unknown) => {
    if (index === 0) return undefined;
    throw error;
  });
  if (outcome === undefined) return jsonResponse({ reset: true, name: segment, cell: index });
  if (outcome === null) return errorResponse(httpError(404, "segment-not-found", `segment ${JSON.stringify(segment)} does not exist`));
  if (!outcome.ok) return errorResponse(httpError(400, outcome.code, outcome.message));
  return jsonResponse({ reset: true, name: segment, cell: index });
}
