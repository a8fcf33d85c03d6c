import { MAX_LIST_PAGE, REGISTRY_NAME } from "../contract/registry-api.ts";
import { errorResponse, httpError, jsonResponse } from "./http.ts";
import type { RouteContext } from "./router.ts";
import { validateSegmentName } from "./segment-name.ts";

/**
 * `GET /v1/segments[?after=NAME][&limit=N]`: the segments that exist, in name order,
 * at most `limit` (default and maximum 1000) per page; `next` is the `after` of the next page.
 */
export async function listSegments({ env, url }: RouteContext): Promise<Response> {
  const after = url.searchParams.get("after");
  if (after !== null && !validateSegmentName(after).ok) {
    return errorResponse(httpError(400, "invalid-query", `after must be a segment name; got ${JSON.stringify(after)}`));
  }
  const limitText = url.searchParams.get("limit");
  const limit = limitText === null ? MAX_LIST_PAGE : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_PAGE) {
    return errorResponse(httpError(400, "invalid-query", `limit must be an integer in 1..${MAX_LIST_PAGE}; got ${JSON.stringify(limitText)}`));
  }
  const page = await env.SEGMENT_REGISTRY.getByName(REGISTRY_NAME).list(after ?? undefined, limit);
  return jsonResponse(page);
}
