// Calls to the relay's management API (docs/api.md) for `segments` and `token`.
import type { OptionSpec } from "./command.ts";
import { CliError, ExitCode } from "./exit-codes.ts";

export const RELAY_OPTION = {
  type: "string", value: "URL", env: "EDGELAN_RELAY", defaultText: "http://127.0.0.1:8787", description: "the relay's base URL",
} as const satisfies OptionSpec;
export const ADMIN_TOKEN_OPTION = {
  type: "string", value: "TOKEN", env: "EDGELAN_ADMIN_TOKEN", description: "the relay's admin token (not needed in open development mode)",
} as const satisfies OptionSpec;

export interface AdminTarget {
  readonly relay: string;
  readonly adminToken: string | undefined;
}

/** The relay and admin token from the options, else the environment. */
export function adminTarget(values: { relay?: string | undefined; "admin-token"?: string | undefined }): AdminTarget {
  const relay = values.relay ?? process.env.EDGELAN_RELAY ?? "http://127.0.0.1:8787";
  try {
    new URL(relay);
  } catch {
    throw new CliError(ExitCode.Usage, `--relay "${relay}" is not a URL: expected e.g. http://127.0.0.1:8787`);
  }
  const adminToken = values["admin-token"] ?? process.env.EDGELAN_ADMIN_TOKEN;
  return { relay, adminToken: adminToken === "" ? undefined : adminToken };
}

/** An admin call's answer: the HTTP status and the JSON body. */
export interface AdminAnswer<T> {
  readonly status: number;
  readonly body: T;
}

/** Calls the management API; HTTP errors become CliErrors with the relay's message and what to do. */
export async function adminCall<T>(target: AdminTarget, method: string, path: string, body?: unknown): Promise<AdminAnswer<T>> {
  let response: Response;
  try {
    response = await fetch(new URL(path, target.relay), {
      method, body: body === undefined ? undefined : JSON.stringify(body),
      headers: { "content-type": "application/json", ...(target.adminToken === undefined ? {} : { authorization: `Bearer ${target.adminToken}` }) },
    });
  } catch (error) {
    throw new CliError(ExitCode.Unreachable, `cannot reach the relay at ${target.relay}: ${String((error as Error).cause ?? error)}`);
  }
  const payload = (await response.json().catch(() => ({}))) as T & { error?: string; message?: string };
  if (!response.ok) {
    const refused = response.status === 401 || response.status === 403;
    const hint = refused && target.adminToken === undefined ? "\n  Pass the admin token with --admin-token TOKEN (or set EDGELAN_ADMIN_TOKEN)." : "";
    const code = refused ? ExitCode.Refused : response.status >= 500 ? ExitCode.Unreachable : ExitCode.Failure;
    throw new CliError(code, `relay answered ${response.status} ${payload.error ?? ""}: ${payload.message ?? "(no message)"}${hint}`);
  }
  return { status: response.status, body: payload };
}

/** Whether the relay runs in open development mode (its /healthz says so). */
export async function relayDevMode(target: AdminTarget): Promise<boolean | undefined> {
  try {
    const health = (await (await fetch(new URL("/healthz", target.relay))).json()) as { devMode?: unknown };
    return typeof health.devMode === "boolean" ? health.devMode : undefined;
  } catch {
    return undefined;
  }
}
