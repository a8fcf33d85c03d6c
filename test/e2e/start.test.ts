// End-to-end: `npm start` as a user runs it. It says what to do next once healthy,
// stops wrangler and workerd on SIGTERM or SIGINT to the npm PID (port free, no
// workerd left), and refuses a port in use with one line and exit 2.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePort, startRelay } from "./relay-harness.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const scratch = mkdtempSync(join(tmpdir(), "edgelan-start-"));
const emptyDevVars = join(scratch, "empty.vars");
writeFileSync(emptyDevVars, "");
/** Every PID this file started or saw under what it started; killed (by PID) in afterAll if still alive. */
const tracked = new Set<number>();

afterAll(() => {
  for (const pid of tracked) signal(pid, "SIGKILL");
  rmSync(scratch, { recursive: true, force: true });
});

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Gone.
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const state = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0];
    return state !== "Z";
  } catch {
    return false;
  }
}

/** The PIDs of every process below `root`, with their command names, read from /proc. */
function descendants(root: number): Array<{ pid: number; name: string }> {
  const parents = new Map<number, { ppid: number; name: string }>();
  for (const entry of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parents.set(Number(entry), { ppid, name });
    } catch {
      // Exited meanwhile.
    }
  }
  const found: Array<{ pid: number; name: string }> = [];
  const below = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, { ppid, name }] of parents) {
      if (below.has(ppid) && !below.has(pid)) {
        below.add(pid);
        found.push({ pid, name });
        grew = true;
      }
    }
  }
  return found;
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

async function waitFor(probe: () => boolean | Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function npmStart(args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const clean: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith("EDGELAN_")) clean[name] = value;
  const child = spawn("npm", ["start", "--", ...args], { cwd: ROOT, env: { ...clean, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  if (child.pid !== undefined) tracked.add(child.pid);
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, output: () => output, exited };
}

describe("npm start", () => {
  it.each(["SIGTERM", "SIGINT"] as const)("prints the next steps once healthy, and %s to the npm PID stops wrangler and workerd", async (stopSignal) => {
    const port = await freePort();
    const persist = mkdtempSync(join(scratch, "state-"));
    const relay = npmStart(["--port", String(port), "--dev-vars", emptyDevVars, "--persist-to", persist]);
    const pid = relay.child.pid as number;
    await waitFor(() => relay.output().includes("stop:"), "the ready banner", 90_000);
    const output = relay.output();
    expect(output).toContain(`relay ready on http://127.0.0.1:${port}`);
    expect(output).toContain("auth OFF (open development mode)");
    expect(output).toContain(`connect URL:   ws://127.0.0.1:${port}/v1/segments/<name>/connect`);
    expect(output).toContain(`sudo npx edgelan join ws://127.0.0.1:${port}/v1/segments/lab/connect --tap edge0`);
    // Offline noise is gone: no Request.cf download, no update banner.
    expect(output).not.toContain("ENOTFOUND");
    expect(output).not.toContain("update available");
    // workerd's own port, printed as the fast local path, is the same relay without wrangler dev's proxy.
    await waitFor(() => relay.output().includes("fast local path"), "the fast local path line", 30_000);
    const fast = /fast local path[^\n]*: ws:\/\/127\.0\.0\.1:(\d+)\/v1\/segments\/<name>\/connect/.exec(relay.output());
    expect(Number(fast?.[1])).toBeGreaterThan(0);
    expect(Number(fast?.[1])).not.toBe(port);
    const health = await (await fetch(`http://127.0.0.1:${fast?.[1]}/healthz`)).json() as { ok?: boolean; devMode?: boolean };
    expect(health).toMatchObject({ ok: true, devMode: true });
    // Once each, and not again while the port stays (it is checked every 2 s).
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    expect(relay.output().split("relay ready on").length - 1).toBe(1);
    expect(relay.output().split("fast local path").length - 1).toBe(1);

    const below = descendants(pid);
    for (const { pid: child } of below) tracked.add(child);
    const workerd = below.filter(({ name }) => name.includes("workerd"));
    expect(workerd.length).toBeGreaterThan(0);
    process.kill(pid, stopSignal);
    await waitFor(() => portFree(port), `port ${port} to be free`, 10_000);
    await waitFor(() => below.every(({ pid: child }) => !alive(child)), "wrangler and workerd to exit", 10_000);
    expect(await relay.exited).toBe(0);
  });

  it("with auth on, warns about segments auto-created (open) in an earlier dev-mode run", async () => {
    const persist = mkdtempSync(join(scratch, "state-"));
    const port = await freePort();
    const dev = npmStart(["--port", String(port), "--dev-vars", emptyDevVars, "--persist-to", persist]);
    await waitFor(() => dev.output().includes("stop:"), "the dev relay", 90_000);
    // A join auto-creates the segment in dev mode (the ping then finds nobody: exit 1).
    const ping = spawn(process.execPath, [join(ROOT, "bin", "edgelan.mjs"), "ping", `ws://127.0.0.1:${port}/v1/segments/auto-lab/connect`, "10.99.0.1", "--count", "1"], { stdio: "ignore" });
    if (ping.pid !== undefined) tracked.add(ping.pid);
    expect(await new Promise((resolve) => ping.once("exit", resolve))).toBe(1);
    process.kill(dev.child.pid as number, "SIGTERM");
    expect(await dev.exited).toBe(0);
    await waitFor(() => portFree(port), `port ${port} to be free`, 10_000);

    const secured = npmStart(["--port", String(port), "--dev-vars", emptyDevVars, "--persist-to", persist], { EDGELAN_ADMIN_TOKEN: "start-test-admin" });
    try {
      await waitFor(() => secured.output().includes("WARNING: segment auto-lab"), "the open-segment warning", 90_000);
      expect(secured.output()).toContain("auth ON (admin token from environment)");
      expect(secured.output()).toContain("npx edgelan segments create auto-lab --closed");
    } finally {
      process.kill(secured.child.pid as number, "SIGTERM");
      expect(await secured.exited).toBe(0);
    }
  });

  it("refuses a port in use with one line and exit 2", async () => {
    const port = await freePort();
    const squatter: Server = createServer();
    await new Promise<void>((resolve) => squatter.listen(port, "127.0.0.1", resolve));
    try {
      const child = spawn(process.execPath, [join(ROOT, "scripts", "start.mjs"), "--port", String(port)], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
      if (child.pid !== undefined) tracked.add(child.pid);
      let stderr = "";
      child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
      expect(code).toBe(2);
      expect(stderr.trim().split("\n")).toEqual([`edgelan: port ${port} on 127.0.0.1 is already in use (another relay?): stop it, or pick another port: npm start -- --port ${port + 1}`]);
    } finally {
      squatter.close();
    }
  });
});

describe("plain `wrangler dev` (no admin token, no dev mode)", () => {
  it("answers a connect and /healthz with how to run the local mode, not a bare 404", async () => {
    const relay = await startRelay({ devMode: false });
    try {
      // What the user sees: the CLI joining a segment of that relay.
      const cli = spawn(process.execPath, [join(ROOT, "bin", "edgelan.mjs"), "pipe", `${relay.wsUrl}/v1/segments/lab/connect`, "--mac", "02:00:00:00:d0:01"], { stdio: ["pipe", "pipe", "pipe"] });
      if (cli.pid !== undefined) tracked.add(cli.pid);
      let stderr = "";
      cli.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => cli.once("exit", resolve));
      cli.stdin?.destroy();
      expect(code).toBe(3);
      expect(stderr).toContain("HTTP 404");
      expect(stderr).toContain("`npm start`");
      expect(stderr).toContain("--var EDGELAN_DEV_MODE:1");
      const health = (await (await fetch(`${relay.baseUrl}/healthz`)).json()) as { devMode: boolean; message: string };
      expect(health.devMode).toBe(false);
      expect(health.message).toContain("`npm start`");
    } finally {
      await relay.stop();
    }
  });
});
