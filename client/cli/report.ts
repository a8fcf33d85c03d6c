// Turns any error a command meets into one line a user can act on and the exit
// code that goes with it. Close codes are mapped by meaning (CLOSE_CODE_INFO),
// not by numeric range: a retryable close is "try again", not "refused".
import { CLOSE_CODE_INFO, isKnownCloseCode } from "../../datapath/tunnel/close-codes.ts";
import { isBackendError } from "../backend.ts";
import { SessionError } from "../session.ts";
import { CliError, ExitCode } from "./exit-codes.ts";
import { relayOfUrl, segmentOfUrl } from "./values.ts";

/** What a join was asked for, to say what to do next when it fails. */
export interface JoinContext {
  readonly url: string;
  readonly tokenGiven: boolean;
}

/** Close codes that mean the client or the relay has a bug (not a refusal, not transient). */
const PROTOCOL_ERRORS: ReadonlySet<number> = new Set([4000, 4003, 4004, 4005, 4006, 4007, 4011]);

/** Prints the error and returns its exit code. */
export function report(error: unknown, join?: JoinContext): number {
  const failure = toCliError(error, join);
  console.error(`edgelan: ${failure.message}`);
  return failure.exitCode;
}

/** The CliError for any error. */
export function toCliError(error: unknown, join?: JoinContext): CliError {
  if (error instanceof CliError) return error;
  if (error instanceof SessionError) return sessionFailure(error, join);
  if (isBackendError(error)) {
    const privileges = error.code === "permission-denied" || error.code === "tun-missing";
    const usage = error.code === "bad-name" || error.code === "netns-missing" || error.code === "bad-spec";
    return new CliError(privileges ? ExitCode.Privileges : usage ? ExitCode.Usage : ExitCode.Failure, error.message);
  }
  return new CliError(ExitCode.Failure, (error as Error).stack ?? String(error));
}

/** A refused or failed session, with what to do next. */
function sessionFailure(error: SessionError, join: JoinContext | undefined): CliError {
  const code = error.code;
  const segment = join === undefined ? "NAME" : segmentOfUrl(join.url);
  const relay = join === undefined ? "" : ` --relay ${relayOfUrl(join.url)}`;
  if (code === 401 && join?.tokenGiven !== true) {
    return new CliError(ExitCode.Refused, `${error.message}\n  Pass a join token with --token TOKEN (or set EDGELAN_TOKEN); an admin mints one with: edgelan token ${segment} --role member${relay}`);
  }
  if (code === 401 || code === 403) return new CliError(ExitCode.Refused, error.message);
  if (code === 404) {
    return new CliError(ExitCode.Refused, `${error.message}\n  Create the segment first: edgelan segments create ${segment}${relay}`);
  }
  if (code >= 500 && code < 600) return new CliError(ExitCode.Unreachable, `${error.message} (try again later)`);
  if (code === 0 || code === 1006) return new CliError(ExitCode.Unreachable, error.message);
  if (isKnownCloseCode(code)) {
    const info = CLOSE_CODE_INFO[code];
    if (info.reconnect) return new CliError(ExitCode.Unreachable, `${error.message} [${code} ${info.name}: try again later]`);
    if (PROTOCOL_ERRORS.has(code)) return new CliError(ExitCode.Failure, `${error.message} [${code} ${info.name}: a protocol error, please report it]`);
    return new CliError(ExitCode.Refused, `${error.message} [${code} ${info.name}]`);
  }
  return new CliError(ExitCode.Failure, error.message);
}

/** A close code in words, for log lines. */
export function describeCloseCode(code: number): string {
  if (isKnownCloseCode(code)) return `${code} ${CLOSE_CODE_INFO[code].name}: ${CLOSE_CODE_INFO[code].meaning}`;
  if (code === 1006) return "1006: the connection dropped";
  return String(code);
}
