// What a session tells its user when the tunnel fails: an error with a code, and
// which close codes mean "try again".
import { CLOSE_CODE_INFO, isKnownCloseCode } from "../../datapath/tunnel/close-codes.ts";

/** An error a user can act on: a code (close code, HTTP status, or 0 for local causes) and a message. */
export class SessionError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
    this.name = "SessionError";
  }
}

/** Reconnect after abnormal closes and after codes the protocol marks as resumable. */
export function shouldReconnect(code: number): boolean {
  if (code === 1000) return false;
  if (isKnownCloseCode(code)) return CLOSE_CODE_INFO[code].reconnect;
  return code < 4000 || code >= 5000;
}

/** A message a user can act on for a close before or after the handshake. */
export function describeClose(code: number, reason: string, url: string, transportError: string): string {
  if (isKnownCloseCode(code)) return `segment closed the tunnel: ${CLOSE_CODE_INFO[code].meaning}${reason ? ` (${reason})` : ""}`;
  if (code === 1006) return `cannot reach the relay at ${url} (${transportError || "connection failed or dropped"})`;
  return `tunnel closed with code ${code}${reason ? `: ${reason}` : ""}`;
}
