// Exit codes a script can act on, and the error that carries one.

/** Exit codes of every `edgelan` command (README "Exit codes"). */
export const ExitCode = {
  Ok: 0,
  /** The command ran and failed (ping loss, a relay error, a protocol error). */
  Failure: 1,
  /** The command line is wrong: unknown option, bad value, missing argument, TAP name too long, no such netns. */
  Usage: 2,
  /** The relay or segment said no: auth (401/403), no such segment (404), MAC taken, version, policy, deleted. */
  Refused: 3,
  /** The relay cannot be reached, or asked to come back later (restarting, full, rate limited). */
  Unreachable: 4,
  /** Missing privileges (CAP_NET_ADMIN, /dev/net/tun). */
  Privileges: 5,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** A failure with the exit code that goes with it; the message is printed after "edgelan: ". */
export class CliError extends Error {
  constructor(readonly exitCode: ExitCode, message: string) {
    super(message);
    this.name = "CliError";
  }
}

/** A usage error (exit 2). */
export function usageError(message: string): CliError {
  return new CliError(ExitCode.Usage, message);
}
