// What every command that joins a segment shares: the --token/--quiet options
// and the Session settings built from them.
import type { SessionOptions } from "../session.ts";
import type { OptionSpec } from "./command.ts";
import { EDGELAN_VERSION } from "../../datapath/version.ts";
import { frameTrace } from "../frame-trace.ts";
import { FAST_PATH_ENV, LocalFastPath } from "../local-fast-path.ts";
import { findWorkerdPort } from "../../scripts/workerd-port.mjs";

export const TOKEN_OPTION = {
  type: "string", value: "TOKEN", env: "EDGELAN_TOKEN", description: "join token (mint one with `edgelan token SEGMENT`)",
} as const satisfies OptionSpec;

export const QUIET_OPTION = { type: "boolean", short: "q", description: "log nothing but errors" } as const satisfies OptionSpec;

/** The client version the CLI reports in its HELLO and --version (one home: datapath/version.ts). */
export const CLI_VERSION: string = EDGELAN_VERSION;

/** The join token from --token or $EDGELAN_TOKEN. */
export function tokenFrom(option: string | undefined): string | undefined {
  const token = option ?? process.env.EDGELAN_TOKEN;
  return token === "" ? undefined : token;
}

/**
 * Session settings shared by every command that joins a segment, the one place the
 * CLI's sessions get the latency trace and the fast local path (client/local-fast-path.ts:
 * a relay under `wrangler dev` on this machine is reached on workerd's own port; `log`
 * hears which). The WebSocket library is loaded here, not at start-up, so `edgelan --help`
 * does not pay for it.
 */
export async function sessionOptions(url: string, token: string | undefined, extra: Partial<SessionOptions>, log?: (line: string) => void): Promise<SessionOptions> {
  const { nodeSocketFactory } = await import("../node-socket.ts");
  const { fastPathSocketFactory } = await import("../fast-path-socket.ts");
  const fastPath = await LocalFastPath.forUrl(url, findWorkerdPort);
  const direct = fastPath?.directPort ?? null;
  if (direct !== null) log?.(`fast local path: workerd's own port ${direct}, skipping wrangler dev's proxy (${FAST_PATH_ENV}=off keeps the URL's port)`);
  return {
    url, token, socketFactory: fastPath === null ? nodeSocketFactory : fastPathSocketFactory(fastPath),
    clientName: "edgelan-cli", clientVersion: CLI_VERSION,
    // A relay that cannot be reached at all is a mistake to report (exit 4); once joined, outages are retried forever.
    reconnect: { beforeOpen: false },
    // EDGELAN_TRACE_FILE (bench:netns's latency budget): the session stamps ws-send/ws-recv next to the TAP's stamps.
    ...(frameTrace === null ? {} : { trace: frameTrace }),
    ...extra,
  };
}
