// How long-running commands (join, qemu, pipe) live and end: until SIGINT/SIGTERM
// or a fatal error, closing everything they opened on every exit path, and
// logging what happens to their connection in words.
import type { Session } from "../session.ts";
import { ExitCode } from "./exit-codes.ts";
import { describeCloseCode, report, type JoinContext } from "./report.ts";

/** Log lines go to stderr (stdout may be a VDE cable), unless --quiet. */
export interface Logger {
  (line: string): void;
}

export function logger(quiet: boolean | undefined): Logger {
  return (line) => {
    if (quiet !== true) console.error(`edgelan: ${line}`);
  };
}

/** The first fatal error of a long-running command, reported once, as the exit code it maps to. */
export interface FatalLatch {
  readonly code: number | undefined;
  readonly exit: Promise<number>;
  fail(error: Error): void;
}

export function fatalLatch(join?: JoinContext): FatalLatch {
  let resolveExit: (code: number) => void = () => undefined;
  const latch = {
    code: undefined as number | undefined,
    exit: new Promise<number>((resolve) => (resolveExit = resolve)),
    fail(error: Error): void {
      if (latch.code !== undefined) return;
      latch.code = report(error, join);
      resolveExit(latch.code);
    },
  };
  return latch;
}

export interface Closable {
  close(): Promise<void>;
}

/**
 * Runs until SIGINT/SIGTERM (exit 0) or `fatal` (its exit code), with an optional
 * status line on a terminal; either way everything in `closers` is closed first
 * and the exit is logged.
 */
export function runUntilSignal(
  log: Logger, closers: readonly Closable[], options: { status?: () => string; fatal?: Promise<number> } = {},
): Promise<number> {
  const { status, fatal } = options;
  const timer = status !== undefined && process.stdout.isTTY ? setInterval(() => process.stdout.write(`\r${status()}\x1b[K`), 1000) : undefined;
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (code: number, why: string): void => {
      if (stopping) return;
      stopping = true;
      if (timer !== undefined) clearInterval(timer);
      process.off("SIGINT", onSigint);
      process.off("SIGTERM", onSigterm);
      void Promise.allSettled(closers.map((closer) => closer.close())).then(() => {
        log(`exiting (${why}), exit code ${code}`);
        resolve(code);
      });
    };
    const onSigint = (): void => stop(ExitCode.Ok, "SIGINT");
    const onSigterm = (): void => stop(ExitCode.Ok, "SIGTERM");
    process.once("SIGINT", onSigint);
    process.once("SIGTERM", onSigterm);
    void fatal?.then((code) => stop(code, "fatal error"));
  });
}

/**
 * Logs a joined session's life: the loss (close code in words), each reconnect
 * attempt with its delay, and the return (resumed, or as a new port).
 */
export function logConnection(log: Logger, session: Session, label = ""): void {
  const prefix = label === "" ? "" : `${label}: `;
  let lost = false;
  let portId: number | undefined = session.welcome?.portId;
  session.on("close", ({ code, reason, reconnecting }) => {
    if (!reconnecting || lost) return;
    lost = true;
    log(`${prefix}connection lost (${describeCloseCode(code)}${reason ? `; ${reason}` : ""}); reconnecting`);
  });
  session.on("retry", ({ attempt, delayMs }) => {
    if (attempt > 1) log(`${prefix}reconnect attempt ${attempt - 1} failed; next in ${(delayMs / 1000).toFixed(1)} s`);
    else log(`${prefix}reconnecting in ${(delayMs / 1000).toFixed(1)} s`);
  });
  session.on("open", (welcome) => {
    if (lost) log(`${prefix}reconnected as port ${welcome.portId}${welcome.portId === portId ? " (resumed)" : " (a new port)"}`);
    lost = false;
    portId = welcome.portId;
  });
}
