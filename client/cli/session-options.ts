// What every command that joins a segment shares: the --token/--quiet options
// and the Session settings built from them.
import type { SessionOptions } from "../session.ts";
import type { OptionSpec } from "./command.ts";
import { EDGELAN_VERSION } from "../../datapath/version.ts";
import { frameTrace } from "../frame-trace.ts";

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
 * CLI's sessions get the latency trace. The WebSocket library is loaded here, not at
 * start-up, so `edgelan --help` does not pay for it.
 */
export async function sessionOptions(url: string, token: string | undefined, extra: Partial<SessionOptions>): Promise<SessionOptions> {
  const { nodeSocketFactory } = await import("../node-socket.ts");
  return {
    url, token, socketFactory: nodeSocketFactory,
    clientName: "edgelan-cli", clientVersion: CLI_VERSION,
    // A relay that cannot be reached at all is a mistake to report (exit 4); once joined, outages are retried forever.
    reconnect: { beforeOpen: false },
    // EDGELAN_TRACE_FILE (bench:netns's latency budget): the session stamps ws-send/ws-recv next to the TAP's stamps.
    ...(frameTrace === null ? {} : { trace: frameTrace }),
    ...extra,
  };
}
