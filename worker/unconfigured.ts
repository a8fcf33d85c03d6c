import { configuredSecret, isDevMode, type Env } from "./env.ts";

/**
 * What a relay with neither EDGELAN_ADMIN_TOKEN nor dev mode tells its users: no segment can
 * be created, so every connect would be a bare 404. This is what plain `npx wrangler dev` gives.
 */
export const UNCONFIGURED_HINT =
  "this relay has no EDGELAN_ADMIN_TOKEN and is not in open development mode, so no segment can be created. " +
  "Locally, start it with `npm start` (or `npx wrangler dev --var EDGELAN_DEV_MODE:1`); deployed, set the secret: `npx wrangler secret put EDGELAN_ADMIN_TOKEN`";

/** True when the relay can neither be administered nor auto-create segments. */
export function isUnconfigured(env: Env): boolean {
  return configuredSecret(env.EDGELAN_ADMIN_TOKEN) === null && !isDevMode(env);
}

/** Adds the hint to a 404 `segment-not-found` answered by an unconfigured relay; any other response passes as is. */
export async function explainUnconfigured(response: Response, env: Env): Promise<Response> {
  if (response.status !== 404 || !isUnconfigured(env)) return response;
  const body = (await response.clone().json().catch(() => null)) as { error?: string; message?: string } | null;
  if (body?.error !== "segment-not-found") return response;
  return Response.json({ error: body.error, message: `${body.message ?? "segment not found"}; ${UNCONFIGURED_HINT}` }, { status: 404, headers: response.headers });
}
