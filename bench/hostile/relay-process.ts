// A local relay for the hostile benchmark and the fuzz runner: `wrangler dev` on a free
// 127.0.0.1 port, its own --persist-to directory, offline, in its own process group
// (so stopping it stops its workerd children and nothing else), plus /proc readings of
// the workerd process that serves the worker.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listProcesses, type ProcessInfo } from "../lib/procfs.ts";
import { freePort } from "../lib/wrangler-dev.ts";

const ROOT = join(import.meta.dirname, "..", "..");

export interface LocalRelay {
  readonly port: number;
  /** wrangler's inspector port (DevTools protocol to the worker). */
  readonly inspectorPort: number;
  readonly baseUrl: string;
  readonly wsUrl: string;
  readonly stateDir: string;
  /** The wrangler process (leader of the relay's process group). */
  readonly child: ChildProcess;
  /** PID of the workerd that runs the worker and its Durable Objects. */
  readonly workerPid: number;
  /** Whether the wrangler process is still running. */
  alive(): boolean;
  log(): string;
  stop(): Promise<void>;
}

/** Relays started by this process and not yet stopped: a signal stops them (they run in their own process group, so the terminal's SIGINT does not reach them). */
const running = new Set<LocalRelay>();

/** On SIGINT/SIGTERM, stops every relay this process started, then exits with 130. */
export function stopRelaysOnSignal(name: string): void {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      console.error(`${name}: ${signal}; stopping the relay`);
      void Promise.all([...running].map((relay) => relay.stop())).finally(() => process.exit(130));
    });
  }
}

/** How often a relay start is retried when another process took its free port first. */
const START_ATTEMPTS = 3;

/**
 * Starts `wrangler dev` with an admin token and `vars`, and resolves once /healthz answers and the worker's
 * workerd is found. A port found free can be taken by another process before wrangler binds it (the machine
 * is shared): that start is retried on a new port.
 */
export async function startLocalRelay(adminToken: string, vars: Record<string, string> = {}, config?: string): Promise<LocalRelay> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnFreePort(adminToken, vars, config);
    } catch (error) {
      const portTaken = error instanceof Error && error.message.includes("Address already in use");
      if (!portTaken || attempt >= START_ATTEMPTS) throw error;
    }
  }
}

/** `config`: another wrangler configuration than the project's (the runtime baseline's trivial Worker). */
async function startOnFreePort(adminToken: string, vars: Record<string, string>, config: string | undefined): Promise<LocalRelay> {
  const port = await freePort();
  const inspectorPort = await freePort();
  const stateDir = mkdtempSync(join(tmpdir(), "edgelan-hostile-"));
  const args = [
    "node_modules/wrangler/bin/wrangler.js", "dev", "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(inspectorPort),
    "--persist-to", stateDir, "--show-interactive-dev-session=false", "--log-level", "warn", "--var", `EDGELAN_ADMIN_TOKEN:${adminToken}`,
  ];
  for (const [name, value] of Object.entries(vars)) args.push("--var", `${name}:${value}`);
  if (config !== undefined) args.push("--config", config);
  const offline = { WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_HIDE_BANNER: "true", CI: "1" };
  const child = spawn(process.execPath, args, { cwd: ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...offline } });
  let output = "";
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-64 * 1024);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;

  const stop = async (): Promise<void> => {
    if (alive() && child.pid !== undefined) {
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        // Already gone.
      }
      const timer = setTimeout(() => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
        } catch {
          // Gone.
        }
      }, 5_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(stateDir, { recursive: true, force: true });
  };

  const baseUrl = `http://127.0.0.1:${port}`;
  try {
    await waitForHealth(baseUrl, alive, () => output);
    const workerPid = findWorkerPid(child.pid as number);
    if (workerPid === null) throw new Error("the worker's workerd process was not found in the relay's process group");
    const relay: LocalRelay = { port, inspectorPort, baseUrl, wsUrl: `ws://127.0.0.1:${port}`, stateDir, child, workerPid, alive, log: () => output, stop: async () => {
      running.delete(relay);
      await stop();
    } };
    running.add(relay);
    return relay;
  } catch (error) {
    await stop();
    throw error;
  }
}

async function waitForHealth(baseUrl: string, alive: () => boolean, log: () => string): Promise<void> {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`wrangler dev exited:\n${log()}`);
    try {
      if ((await fetch(`${baseUrl}/healthz`)).ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`wrangler dev did not answer /healthz within 90 s:\n${log()}`);
}

/**
 * The workerd of process group `pgid` that serves the worker: wrangler dev runs two, the worker
 * (started with an inspector address) and a proxy in front of it.
 */
function findWorkerPid(pgid: number): number | null {
  const workerds = groupProcesses(pgid).filter((p) => p.name === "workerd");
  const worker = workerds.find((p) => p.cmdline.some((arg) => arg.startsWith("--inspector-addr")));
  return worker?.pid ?? workerds[0]?.pid ?? null;
}

/** Every process in process group `pgid`, from /proc. */
function groupProcesses(pgid: number): ProcessInfo[] {
  return listProcesses().filter((process) => process.pgid === pgid);
}

export function rssBytes(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match === null ? NaN : Number(match[1]) * 1024;
  } catch {
    return NaN;
  }
}

/** Whether process `pid` exists. */
export function processAlive(pid: number): boolean {
  try {
    readFileSync(`/proc/${pid}/stat`);
    return true;
  } catch {
    return false;
  }
}

/** Samples a process's RSS every `intervalMs` until stopped; reports the first and the largest reading. */
export class RssSampler {
  readonly start: number;
  peak: number;
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(private readonly pid: number, intervalMs = 100) {
    this.start = rssBytes(pid);
    this.peak = this.start;
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  sample(): number {
    const now = rssBytes(this.pid);
    if (now > this.peak) this.peak = now;
    return now;
  }

  /** Stops sampling; the growth from the first reading to the peak, in bytes. */
  stop(): number {
    clearInterval(this.timer);
    this.sample();
    return this.peak - this.start;
  }
}
