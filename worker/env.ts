import type { Env } from "../contract/segment-api.ts";

export type { Env };

/** Whether the relay runs in explicit open development mode. */
export function isDevMode(env: Env): boolean {
  return env.EDGELAN_DEV_MODE === "1";
}

/** A configured secret, or null when the variable is unset or empty. */
export function configuredSecret(value: string | undefined): string | null {
  return value === undefined || value === "" ? null : value;
}
