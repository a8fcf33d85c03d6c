import { authorizeAdmin } from "./auth.ts";
import type { Env } from "./env.ts";
import { errorResponse, httpError } from "./http.ts";
import { checkDevOrigin } from "./origin.ts";
import { validateSegmentName } from "./segment-name.ts";
import { explainUnconfigured } from "./unconfigured.ts";

export type Method = "GET" | "PUT" | "POST" | "DELETE";

/** What a handler gets: the request, the bindings, and the path's segment name (validated). */
export interface RouteContext {
  request: Request;
  env: Env;
  url: URL;
  /** The `:name` path parameter, already checked by `validateSegmentName`; "" on routes without one. */
  segment: string;
  /** Every `:param` of the path, percent-decoded (`name` unchecked here: use `segment`). */
  params: Readonly<Record<string, string>>;
}

export type Handler = (context: RouteContext) => Promise<Response> | Response;

/**
 * One row of the route table. `admin` routes need the admin token (or open dev mode);
 * `public` routes do their own checks (the connect route checks join tokens).
 */
export interface Route {
  method: Method;
  /** Literal path segments and `:param` segments (`:name` is the segment name). */
  path: string;
  access: "public" | "admin";
  handle: Handler;
}

/**
 * Serves a request from a route table: 404 for an unknown path, 405 (with `Allow`) for a known path
 * and another method, then admin auth, then the segment name, then the handler. Errors are JSON.
 */
export async function route(routes: readonly Route[], request: Request, env: Env): Promise<Response> {
  const url = new URL(request.url);
  const onPath = routes.flatMap((candidate) => {
    const params = matchPath(candidate.path, url.pathname);
    return params === null ? [] : [{ route: candidate, params }];
  });
  if (onPath.length === 0) {
    return errorResponse(httpError(404, "not-found", `no route for ${request.method} ${url.pathname}; see docs/api.md`));
  }
  const matched = onPath.find(({ route: candidate }) => candidate.method === request.method);
  if (matched === undefined) {
    const allow = [...new Set(onPath.map(({ route: candidate }) => candidate.method))].join(", ");
    return errorResponse(httpError(405, "method-not-allowed", `${request.method} is not allowed on ${url.pathname}; allowed: ${allow}`, { Allow: allow }));
  }

  const origin = checkDevOrigin(request, env);
  if (!origin.ok) return errorResponse(origin.error);
  if (matched.route.access === "admin") {
    const admitted = await authorizeAdmin(request, env);
    if (!admitted.ok) return errorResponse(admitted.error);
  }
  let segment = "";
  if (matched.params.name !== undefined) {
    const name = validateSegmentName(matched.params.name);
    if (!name.ok) return errorResponse(httpError(400, name.error.code, name.error.message));
    segment = name.value;
  }
  try {
    return await explainUnconfigured(await matched.route.handle({ request, env, url, segment, params: matched.params }), env);
  } catch (error) {
    console.error(`edgelan: ${request.method} ${url.pathname} failed`, error);
    return errorResponse(httpError(500, "internal-error", "the relay failed to handle this request; try again"));
  }
}

/** Matches `pattern` against a path; the `:name` parameters (percent-decoded), or null. */
function matchPath(pattern: string, pathname: string): Record<string, string> | null {
  const want = pattern.split("/");
  const got = pathname.split("/");
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const expected = want[i] as string;
    const actual = got[i] as string;
    if (expected.startsWith(":")) params[expected.slice(1)] = percentDecode(actual);
    else if (expected !== actual) return null;
  }
  return params;
}

/** Percent-decodes a path segment; a malformed escape is kept as is (the name check will refuse it). */
function percentDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
