// Starts the real relay (`wrangler dev` → workerd) on free 127.0.0.1 ports with
// its own state directory, waits for /healthz, and stops it (its process group only).
// Hermetic: the relay gets exactly the settings a test asks for. The user's `.dev.vars`
// is not read (an explicit empty `--env-file` replaces it) and no EDGELAN_* or
// CLOUDFLARE_* variable of the test's own environment reaches wrangler.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../bench/lib/wrangler-dev.ts";
import { background } from "./guests.ts";

export interface RelayOptions {
  /** Admin token; when omitted the relay runs in open development mode (unless `devMode` is false). */
  adminToken?: string;
  /** false: neither an admin token nor dev mode, as plain `wrangler dev` runs it. */
  devMode?: boolean;
  /** Extra `--var NAME:VALUE` settings. */
  vars?: Record<string, string>;
  /** Reuse a state directory (to restart a relay over the same storage). */
  stateDir?: string;
  /** Reuse a port (to restart a relay at the same address). */
  port?: number;
  /** Another wrangler config (default: the repository's wrangler.toml). */
  configPath?: string;
}

export interface RunningRelay {
  readonly port: number;
  readonly baseUrl: string;
  readonly wsUrl: string;
  readonly stateDir: string;
  readonly log: () => string;
  /** Stops the relay; its temporary state directory is removed unless `keepState` (to restart over the same storage). */
  stop(options?: { keepState?: boolean }): Promise<void>;
}

/** A TCP port nobody listens on right now (the benchmarks' finder; the e2e tests import it from here). */
export { freePort };

/** Starts `wrangler dev` and resolves once /healthz answers. */
export async function startRelay(options: RelayOptions = {}): Promise<RunningRelay> {
  const port = options.port ?? (await freePort());
  const inspectorPort = await freePort();
  const stateDir = options.stateDir ?? mkdtempSync(join(tmpdir(), "edgelan-relay-"));
  const args = [
    "node_modules/wrangler/bin/wrangler.js", "dev", "--ip", "127.0.0.1", "--port", String(port),
    "--inspector-port", String(inspectorPort), "--persist-to", stateDir, "--show-interactive-dev-session=false",
    "--log-level", "warn",
    // Any --env-file replaces .dev.vars; an empty one means "no secrets but the --var settings below".
    "--env-file", emptyEnvFile(stateDir),
  ];
  if (options.configPath !== undefined) args.push("--config", options.configPath);
  const vars: Record<string, string> = { ...options.vars };
  if (options.adminToken !== undefined) vars.EDGELAN_ADMIN_TOKEN = options.adminToken;
  else if (options.devMode !== false) vars.EDGELAN_DEV_MODE = "1";
  for (const [name, value] of Object.entries(vars)) args.push("--var", `${name}:${value}`);

  const wrangler = background(process.execPath, args, relayEnvironment(), join(import.meta.dirname, "..", ".."));
  const baseUrl = `http://127.0.0.1:${port}`;
  const relay: RunningRelay = {
    port, baseUrl, wsUrl: `ws://127.0.0.1:${port}`, stateDir, log: wrangler.output,
    async stop(stopOptions) {
      await wrangler.stop();
      if (options.stateDir === undefined && stopOptions?.keepState !== true) rmSync(stateDir, { recursive: true, force: true });
    },
  };
  await waitForHealth(baseUrl, wrangler.child, wrangler.output);
  return relay;
}

/** An empty env file inside the relay's own state directory. */
function emptyEnvFile(stateDir: string): string {
  const path = join(stateDir, "relay.env");
  writeFileSync(path, "");
  return path;
}

/** The test's environment without EDGELAN_* and CLOUDFLARE_* settings, offline and quiet. */
function relayEnvironment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith("EDGELAN_") && !name.startsWith("CLOUDFLARE_")) env[name] = value;
  }
  return {
    ...env, CI: "1", WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_HIDE_BANNER: "true",
    CLOUDFLARE_LOAD_DEV_VARS_FROM_DOT_ENV: "true", CLOUDFLARE_INCLUDE_PROCESS_ENV: "false",
  };
}

/** Polls /healthz until it answers 200, the process dies, or 60 s pass. */
async function waitForHealth(baseUrl: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with ${child.exitCode}:\n${log()}`);
    try {
      const response = await fetch(`${baseUrl}/healthz`);
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`wrangler dev did not answer /healthz within 60 s:\n${log()}`);
}
