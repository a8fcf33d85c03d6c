#!/usr/bin/env node
// `npm start`: the relay locally under `wrangler dev` on 127.0.0.1, stopped like any server.
//   --port N, or $PORT, default 8787.
//   --persist-to DIR: where segments are stored (default: wrangler's .wrangler/state).
//   --dev-vars FILE: the secrets file to read instead of .dev.vars.
// Without an admin token (environment or .dev.vars) the relay runs in explicit open
// development mode and says so loudly. Once /healthz answers it prints what to do next, and
// workerd's own port as a faster local path (again whenever wrangler reloads the worker).
// SIGINT/SIGTERM/SIGHUP stop wrangler and workerd (their own process group) and free the port;
// a port already in use is one line and exit 2. wrangler runs offline and quiet: no metrics,
// no update banner, no Request.cf download (a placeholder is used; nothing here reads it).
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { answersHealth, findWorkerdPort } from "./workerd-port.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const HOST = "127.0.0.1";
/** After SIGTERM, how long wrangler and workerd get before SIGKILL. */
const STOP_GRACE_MS = 4000;
const HEALTH_TIMEOUT_MS = 60_000;
/** How often the fast path's port is checked (wrangler moves it when it reloads the worker). */
const FAST_PATH_CHECK_MS = 2000;

const port = argValue("--port") ?? process.env.PORT ?? "8787";
if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) fail(2, `invalid port ${JSON.stringify(port)}: expected a number 1-65535`);
if (!(await portIsFree(Number(port)))) {
  fail(2, `port ${port} on ${HOST} is already in use (another relay?): stop it, or pick another port: npm start -- --port ${Number(port) + 1}`);
}

const devVarsFile = argValue("--dev-vars");
const persistTo = argValue("--persist-to");
const auth = adminTokenSource(devVarsFile ?? join(root, ".dev.vars"));
const args = [join(root, "node_modules", "wrangler", "bin", "wrangler.js"), "dev", "--ip", HOST, "--port", port, "--show-interactive-dev-session=false"];
if (devVarsFile !== undefined) args.push("--env-file", devVarsFile);
if (persistTo !== undefined) args.push("--persist-to", persistTo);
if (auth === null) {
  args.push("--var", "EDGELAN_DEV_MODE:1");
  console.warn([
    "",
    "!!! edgelan OPEN DEVELOPMENT MODE !!!",
    "!!! No EDGELAN_ADMIN_TOKEN is set: the admin API needs no token and every segment accepts joins without one.",
    "!!! Set EDGELAN_ADMIN_TOKEN in .dev.vars (or the environment) to turn auth on. Never expose this relay.",
    "",
  ].join("\n"));
} else if (auth.from === "environment") {
  args.push("--var", `EDGELAN_ADMIN_TOKEN:${auth.token}`);
  if (process.env.EDGELAN_TOKEN_SECRET) args.push("--var", `EDGELAN_TOKEN_SECRET:${process.env.EDGELAN_TOKEN_SECRET}`);
}

const started = Date.now();
const wrangler = spawn(process.execPath, args, {
  cwd: root,
  // Its own process group: one signal reaches wrangler and workerd, and a terminal's Ctrl-C reaches only us.
  detached: true,
  stdio: ["ignore", "inherit", "inherit"],
  env: { ...process.env, WRANGLER_SEND_METRICS: "false", WRANGLER_HIDE_BANNER: "true", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
});
let stopping = false;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => stop(signal));
// If whoever started us dies without a signal reaching us (npm killed with SIGKILL), stop too: never orphan a relay.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) stop("parent exited");
}, 1000).unref();
wrangler.on("exit", (code, signal) => {
  if (stopping) {
    console.error("edgelan: relay stopped");
    process.exit(0);
  }
  console.error(`edgelan: wrangler exited (${signal ?? `code ${code}`}) before being asked to stop`);
  killGroup("SIGKILL");
  process.exit(code === 0 || code === null ? 1 : code);
});
await announceWhenHealthy();

/** Stops wrangler's process group: SIGTERM, then SIGKILL after the grace period. */
function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.error(`edgelan: ${signal}: stopping the relay (wrangler and workerd)`);
  killGroup("SIGTERM");
  setTimeout(() => {
    killGroup("SIGKILL");
    process.exit(0);
  }, STOP_GRACE_MS).unref();
}

function killGroup(signal) {
  try {
    process.kill(-wrangler.pid, signal);
  } catch {
    // Already gone.
  }
}

/**
 * Prints workerd's own port: the same relay without wrangler dev's proxy in the path, measurably
 * faster (bench:floor, bench:netns's direct scenario) but only until wrangler reloads the worker after
 * a source change, when workerd moves to a new port. So the connect URL above stays the default, and
 * this line is printed again, with the new port, whenever it moves.
 */
async function announceFastPath() {
  let current = null;
  const check = async () => {
    if (stopping || (current !== null && (await answersHealth(current)))) return;
    const found = await findWorkerdPort(Number(port));
    if (found === null || found === current || stopping) return;
    console.log(`edgelan: fast local path (skips wrangler dev's proxy; moves when wrangler reloads the worker): ws://${HOST}:${found}/v1/segments/<name>/connect`);
    current = found;
  };
  await check();
  const timer = setInterval(() => void check(), FAST_PATH_CHECK_MS);
  timer.unref();
}

/** Polls /healthz, then prints the connect URL pattern, a join line and the auth state. */
async function announceWhenHealthy() {
  const base = `http://${HOST}:${port}`;
  const deadline = Date.now() + HEALTH_TIMEOUT_MS;
  while (Date.now() < deadline && !stopping) {
    try {
      const health = await (await fetch(`${base}/healthz`)).json();
      printNextSteps(base, health.devMode === true, ((Date.now() - started) / 1000).toFixed(1));
      if (auth !== null) await warnOpenSegments(base);
      await announceFastPath();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  if (!stopping) console.error(`edgelan: the relay did not answer ${base}/healthz within ${HEALTH_TIMEOUT_MS / 1000} s; see wrangler's output above`);
}

function printNextSteps(base, devMode, seconds) {
  const ws = `ws://${HOST}:${port}`;
  const lines = [
    "",
    `edgelan: relay ready on ${base} in ${seconds} s — auth ${devMode ? "OFF (open development mode)" : `ON (admin token from ${auth?.from ?? "?"})`}`,
    `  connect URL:   ${ws}/v1/segments/<name>/connect`,
  ];
  if (devMode) {
    lines.push(`  join a host:   sudo npx edgelan join ${ws}/v1/segments/lab/connect --tap edge0   (the segment is created on first join)`);
  } else {
    lines.push(
      `  admin:         export EDGELAN_RELAY=${base} EDGELAN_ADMIN_TOKEN=<your admin token>`,
      "  segment+token: npx edgelan segments create lab && export EDGELAN_TOKEN=$(npx edgelan token lab)",
      `  join a host:   sudo -E npx edgelan join ${ws}/v1/segments/lab/connect --tap edge0`,
    );
  }
  lines.push(`  stop:          Ctrl-C, or kill ${process.pid}`, "");
  console.log(lines.join("\n"));
}

/** With auth on, segments that still admit joins without a token (auto-created in dev mode, say) are shouted about. */
async function warnOpenSegments(base) {
  try {
    const response = await fetch(`${base}/v1/segments`, { headers: { authorization: `Bearer ${auth.token}` } });
    if (!response.ok) return;
    const { segments } = await response.json();
    for (const segment of segments.filter((entry) => entry.openJoin)) {
      console.warn(`edgelan: WARNING: segment ${segment.name} accepts joins WITHOUT a token (openJoin: true), probably auto-created in open development mode.` +
        ` Close it: npx edgelan segments create ${segment.name} --closed`);
    }
  } catch {
    // The list is a courtesy; the relay is up either way.
  }
}

/** The admin token and where it comes from: the environment, the secrets file, or null (open development mode). */
function adminTokenSource(devVars) {
  if (process.env.EDGELAN_ADMIN_TOKEN) return { token: process.env.EDGELAN_ADMIN_TOKEN, from: "environment" };
  if (!existsSync(devVars)) return null;
  const match = /^\s*EDGELAN_ADMIN_TOKEN\s*=\s*(["']?)(\S+?)\1\s*$/m.exec(readFileSync(devVars, "utf8"));
  return match === null ? null : { token: match[2], from: devVars === join(root, ".dev.vars") ? ".dev.vars" : devVars };
}

function portIsFree(number) {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(number, HOST, () => server.close(() => resolve(true)));
  });
}

function argValue(name) {
  const index = process.argv.indexOf(name);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

function fail(code, message) {
  console.error(`edgelan: ${message}`);
  process.exit(code);
}
