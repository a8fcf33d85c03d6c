// The `edgelan` CLI as a child process for end-to-end tests: started in its own
// process group with only the EDGELAN_* variables a test gives, output collected,
// stopped by PID (never by name).
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";

export const CLI = join(import.meta.dirname, "..", "..", "bin", "edgelan.mjs");

export interface CliProcess {
  child: ChildProcess;
  /** stdout and stderr so far, interleaved. */
  output: () => string;
  exited: Promise<number | null>;
}

/** Every CLI child still running, for afterAll. */
export const runningCli = new Set<ChildProcess>();

/** Starts the CLI with the environment minus EDGELAN_*, plus `env`. */
export function startCli(args: string[], env: Record<string, string> = {}): CliProcess {
  const clean: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith("EDGELAN_")) clean[name] = value;
  const child = spawn(process.execPath, [CLI, ...args], { detached: true, env: { ...clean, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  runningCli.add(child);
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => {
    runningCli.delete(child);
    resolve(code);
  }));
  return { child, output: () => output, exited };
}

/** Signals a child's process group, if it still runs. */
export function killCli(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** Polls `probe` every 50 ms; throws naming `what` after the timeout (a generous bound, not a timing assertion). */
export async function waitFor(probe: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
