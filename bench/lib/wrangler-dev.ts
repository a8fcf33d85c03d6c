// The real relay for benchmarks: `wrangler dev` (→ workerd) on free 127.0.0.1
// ports with a temporary state directory, ready once /healthz answers, stopped
// by signalling its own process group only. Benchmarks keep to bench/ and never
// import test helpers.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..", "..");
const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;

export interface RunningRelay {
  readonly port: number;
  /** http://127.0.0.1:PORT */
  readonly baseUrl: string;
  /** ws://127.0.0.1:PORT */
  readonly wsUrl: string;
  /** What wrangler printed so far. */
  log(): string;
  /** Stops wrangler dev and its workerd, removes the state directory. Idempotent. */
  stop(): Promise<void>;
}

/** A TCP port on 127.0.0.1 that nobody listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0));
    });
  });
}

/**
 * Starts `wrangler dev`. Without `adminToken` the relay runs in open development mode (anyone may
 * create and join segments); with it, the admin API needs that bearer token. `config` names another
 * wrangler.toml (another worker) instead of the relay's.
 */
export async function startWranglerDev(options: { adminToken?: string; config?: string } = {}): Promise<RunningRelay> {
  const port = await freePort();
  const inspectorPort = await freePort();
  const stateDir = mkdtempSync(join(tmpdir(), "edgelan-bench-relay-"));
  const vars = options.adminToken === undefined ? ["EDGELAN_DEV_MODE:1"] : [`EDGELAN_ADMIN_TOKEN:${options.adminToken}`];
  const args = [
    "node_modules/wrangler/bin/wrangler.js", "dev", "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(inspectorPort),
    "--persist-to", stateDir, "--show-interactive-dev-session=false", "--log-level", "warn", ...vars.flatMap((v) => ["--var", v]),
    // Another worker than the relay (bench:floor's do-nothing relay).
    ...(options.config === undefined ? [] : ["--config", options.config]),
  ];
  // Its own process group, so stop() reaches workerd too and nothing else.
  const child = spawn(process.execPath, args, {
    cwd: ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_HIDE_BANNER: "true", CI: "1" },
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let stopping: Promise<void> | null = null;
  const signal = (name: NodeJS.Signals): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, name);
    } catch {
      // Already gone.
    }
  };
  const relay: RunningRelay = {
    port, baseUrl: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}`, log: () => output,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          signal("SIGTERM");
          const killer = setTimeout(() => signal("SIGKILL"), STOP_GRACE_MS);
          await exited;
          clearTimeout(killer);
        }
        rmSync(stateDir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
  try {
    await waitForHealth(relay, () => child.exitCode !== null);
  } catch (error) {
    await relay.stop();
    throw error;
  }
  return relay;
}

/** Polls /healthz until it answers 200; fails when wrangler exits or READY_TIMEOUT_MS pass. */
async function waitForHealth(relay: RunningRelay, exited: () => boolean): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited()) throw new Error(`wrangler dev exited before it was ready:\n${relay.log()}`);
    try {
      if ((await fetch(`${relay.baseUrl}/healthz`, { signal: AbortSignal.timeout(2_000) })).ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`wrangler dev did not answer /healthz within ${READY_TIMEOUT_MS / 1000} s:\n${relay.log()}`);
}
