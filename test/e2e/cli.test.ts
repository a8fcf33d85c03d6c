// End-to-end: the `edgelan` CLI (bin/edgelan.mjs) as a child process against
// the real relay: exit codes and messages a user can act on — usage errors,
// admin calls, refused joins (401/403/MAC taken), an unreachable relay, missing
// privileges — and `join` ending on fatal errors while riding out a restart.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startRelay, type RunningRelay } from "./relay-harness.ts";
import { guestSkipReason, Namespaces } from "./guests.ts";
import { WireClient } from "./wire-client.ts";
import { parseMac } from "../../datapath/mac.ts";
import { findWorkerdPort } from "../../scripts/workerd-port.mjs";

const ROOT = join(import.meta.dirname, "..", "..");
const CLI = join(ROOT, "bin", "edgelan.mjs");
const ADMIN = "cli-e2e-admin-token";
const running = new Set<ChildProcess>();
let relay: RunningRelay;

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  /** Keep stdin open until the process exits (pipe must not see EOF), or close it at once. */
  holdStdin?: boolean;
  timeoutMs?: number;
}

/** Runs the CLI to completion; a child still running after the timeout is killed (by PID) and reported with code null. */
function cli(args: string[], options: RunOptions & { env?: NodeJS.ProcessEnv; bin?: string; wrapper?: string[] } = {}): Promise<Outcome> {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith("EDGELAN_")) env[name] = value;
  Object.assign(env, options.env);
  // `wrapper`: a command that runs node (e.g. setpriv dropping a capability).
  const command = [...(options.wrapper ?? []), process.execPath, options.bin ?? CLI, ...args];
  const child = spawn(command[0] as string, command.slice(1), {
    detached: true, env, stdio: ["pipe", "pipe", "pipe"],
  });
  running.add(child);
  if (options.holdStdin !== true) child.stdin?.end();
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => kill(child), options.timeoutMs ?? 20_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      running.delete(child);
      child.stdin?.destroy();
      // Let the pipes drain.
      setImmediate(() => resolve({ code, stdout, stderr }));
    });
  });
}

/** Starts the CLI in the background; the caller stops it with kill(). */
function start(args: string[]): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, ...args], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => {
    running.delete(child);
    resolve(code);
  }));
  return { child, output: () => output, exited };
}

function kill(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

async function waitFor(probe: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function admin(method: string, path: string, body?: unknown, token = ADMIN): Promise<Response> {
  return fetch(`${relay.baseUrl}${path}`, {
    method, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function mintToken(segment: string, role = "member"): Promise<string> {
  const response = await admin("POST", `/v1/segments/${segment}/tokens`, { role, ttlSeconds: 600 });
  expect(response.status).toBe(201);
  return ((await response.json()) as { token: string }).token;
}

const connect = (segment: string, base = relay): string => `${base.wsUrl}/v1/segments/${segment}/connect`;

/** The `message` of an HTTP error body. */
async function serverMessage(response: Response): Promise<string> {
  return ((await response.json()) as { message: string }).message;
}

beforeAll(async () => {
  relay = await startRelay({ adminToken: ADMIN });
  // "closed" needs a join token; "other" exists so tokens can be minted for it.
  expect((await admin("PUT", "/v1/segments/closed", {})).status).toBe(201);
  expect((await admin("PUT", "/v1/segments/other", {})).status).toBe(201);
  expect((await admin("PUT", "/v1/segments/open", { openJoin: true })).status).toBe(201);
});

afterAll(async () => {
  for (const child of running) kill(child);
  await relay?.stop();
});

describe("edgelan usage", () => {
  it("--help prints usage and exits 0", async () => {
    const result = await cli(["--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Usage:");
    expect(result.stdout).toContain("Exit codes:");
  });

  it("bare edgelan prints the overview on stderr and exits 2; --version prints package.json's version", async () => {
    const bare = await cli([]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain("Commands:");
    const version = await cli(["--version"]);
    expect(version.code).toBe(0);
    const { version: expected } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    expect(version.stdout.trim()).toBe(`edgelan ${expected}`);
  });

  it("<command> --help shows that command's options with defaults, and an example", async () => {
    const join = await cli(["join", "--help"]);
    expect(join.code).toBe(0);
    expect(join.stdout).toContain("Usage: edgelan join <url> --tap NAME");
    expect(join.stdout).toMatch(/--kind KIND .*\(default: member\)/);
    expect(join.stdout).toMatch(/--token TOKEN .*env: EDGELAN_TOKEN/);
    expect(join.stdout).toContain("Example");
    expect(join.stdout).not.toContain("--role");
    const token = await cli(["token", "--help"]);
    expect(token.stdout).toMatch(/--role ROLE .*\(default: member\)/);
    expect(token.stdout).toMatch(/--ttl S .*default: 3600/);
    // `edgelan help ping` is the same as `edgelan ping --help`.
    expect((await cli(["help", "ping"])).stdout).toBe((await cli(["ping", "--help"])).stdout);
  });

  it("validates options per command: another command's option is a usage error", async () => {
    const result = await cli(["token", "x", "--tap", "foo"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("Unknown option '--tap'");
    expect(result.stderr).toContain("Usage: edgelan token");
    const misplaced = await cli(["segments", "show", "lab", "--max-ports", "3"]);
    expect(misplaced.code).toBe(2);
    expect(misplaced.stderr).toContain("--max-ports only applies to segments create");
  });

  it("join, pipe and qemu take exactly one <url>: a second positional is a usage error naming it", async () => {
    for (const command of ["join", "pipe", "qemu"]) {
      const result = await cli([command, "ws://127.0.0.1:1/v1/segments/lab/connect", "extra"]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`${command} takes one <url>; unexpected "extra"`);
    }
  });

  it("rejects a bad URL with exit 2 and the form it expects", async () => {
    const notUrl = await cli(["ping", "not a url", "10.0.0.1"]);
    expect(notUrl.code).toBe(2);
    expect(notUrl.stderr).toContain("expected ws://HOST[:PORT]/v1/segments/NAME/connect");
    const badPath = await cli(["pipe", `${relay.wsUrl}/segments/lab`]);
    expect(badPath.code).toBe(2);
    expect(badPath.stderr).toContain("the path must be /v1/segments/NAME/connect");
    const badScheme = await cli(["join", "ftp://127.0.0.1/v1/segments/lab/connect", "--tap", "x"]);
    expect(badScheme.code).toBe(2);
    expect(badScheme.stderr).toContain("the scheme must be ws, wss, http or https");
  });

  it("exits 2 for an unknown command, an unknown option and a missing argument", async () => {
    const unknown = await cli(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const option = await cli(["segments", "show", "lab", "--bogus"]);
    expect(option.code).toBe(2);
    expect(option.stderr).toMatch(/Unknown option '--bogus'/);
    const noTap = await cli(["join", connect("open")]);
    expect(noTap.code).toBe(2);
    expect(noTap.stderr).toContain("join needs --tap NAME");
  });
});

describe("the CLI ships as JavaScript", () => {
  it("runs from dist/ without tsx, which is no runtime dependency", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    expect(Object.keys(pkg.dependencies)).not.toContain("tsx");
    for (const file of readdirSync(join(ROOT, "dist")).filter((name) => name.endsWith(".mjs"))) {
      expect(readFileSync(join(ROOT, "dist", file), "utf8")).not.toMatch(/from "tsx|import\("tsx/);
    }
    expect(readFileSync(CLI, "utf8")).not.toContain("tsx");
  });

  it("says how to build it when dist/ is missing", async () => {
    const copy = mkdtempSync(join(tmpdir(), "edgelan-bin-"));
    try {
      mkdirSync(join(copy, "bin"));
      copyFileSync(CLI, join(copy, "bin", "edgelan.mjs"));
      const result = await cli(["--help"], { bin: join(copy, "bin", "edgelan.mjs") });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("the CLI is not built");
      expect(result.stderr).toContain("npm run build");
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
});

describe("edgelan segments and token", () => {
  it("creates, shows and deletes a segment, and mints a token for it", async () => {
    const common = ["--relay", relay.baseUrl, "--admin-token", ADMIN];
    const created = await cli(["segments", "create", "cli-lab", "--max-ports", "8", ...common]);
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ maxPorts: 8, openJoin: false });

    const shown = await cli(["segments", "show", "cli-lab", ...common]);
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ name: "cli-lab", config: { maxPorts: 8 } });

    const minted = await cli(["token", "cli-lab", "--role", "member", "--ttl", "600", ...common]);
    expect(minted.code).toBe(0);
    const token = minted.stdout.trim();
    expect(token).toMatch(/^eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    // The token works: a join with it is welcomed.
    const { client, welcome } = await WireClient.join(connect("cli-lab"), {}, { token });
    expect(welcome.portId).toBeGreaterThan(0);
    client.close();

    const deleted = await cli(["segments", "delete", "cli-lab", ...common]);
    expect(deleted.code).toBe(0);
    expect(JSON.parse(deleted.stdout)).toMatchObject({ deleted: true, name: "cli-lab" });
    const gone = await cli(["segments", "show", "cli-lab", ...common]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain("relay answered 404");
    expect(gone.stderr).toContain('segment "cli-lab" does not exist');
  });

  it("token --max-ports/--no-raw put the claims in the token; token revoke closes its port (4008) and refuses it (403)", async () => {
    const common = ["--relay", relay.baseUrl, "--admin-token", ADMIN];
    expect((await cli(["segments", "create", "cli-revoke", ...common])).code).toBe(0);
    const minted = await cli(["token", "cli-revoke", "--max-ports", "1", "--no-raw", ...common]);
    expect(minted.code).toBe(0);
    const token = minted.stdout.trim();
    const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as { jti: string; maxPorts: number; raw: boolean };
    expect(claims).toMatchObject({ maxPorts: 1, raw: false });
    expect(minted.stderr).toContain(`edgelan token revoke cli-revoke ${claims.jti}`);
    expect((await cli(["token", "cli-revoke", "--max-ports", "0", ...common])).code).toBe(2);

    const { client } = await WireClient.join(connect("cli-revoke"), {}, { token });
    await expect(WireClient.connect(connect("cli-revoke"), { token })).rejects.toMatchObject({ status: 403, body: expect.stringContaining("token-port-limit") });
    await expect(WireClient.connect(connect("cli-revoke"), { token, subprotocol: null })).rejects.toMatchObject({ status: 403, body: expect.stringContaining("token-forbids-raw") });

    const revoked = await cli(["token", "revoke", "cli-revoke", claims.jti, ...common]);
    expect(revoked.code).toBe(0);
    expect(JSON.parse(revoked.stdout)).toMatchObject({ revoked: true, jti: claims.jti, portsClosed: 1 });
    expect(await client.closed()).toEqual({ code: 4008, reason: "token revoked" });
    await expect(WireClient.connect(connect("cli-revoke"), { token })).rejects.toMatchObject({ status: 403, body: expect.stringContaining("token-revoked") });
    expect((await cli(["segments", "delete", "cli-revoke", ...common])).code).toBe(0);
  });

  it("lists segments, says when create updated an existing one, and warns loudly about open segments on an auth relay", async () => {
    const common = ["--relay", relay.baseUrl, "--admin-token", ADMIN];
    const listed = await cli(["segments", "list", ...common]);
    expect(listed.code).toBe(0);
    const { segments } = JSON.parse(listed.stdout) as { segments: Array<{ name: string; openJoin: boolean }> };
    expect(segments).toEqual(expect.arrayContaining([
      expect.objectContaining({ name: "closed", openJoin: false }), expect.objectContaining({ name: "open", openJoin: true }),
    ]));
    // This relay has auth on: the open segment is shouted about, on stderr.
    expect(listed.stderr).toContain("WARNING: segment open accepts joins WITHOUT a token");
    expect(listed.stderr).toContain("edgelan segments create open --closed");
    expect(listed.stderr).not.toContain("segment closed accepts");

    const shown = await cli(["segments", "show", "open", ...common]);
    expect(shown.code).toBe(0);
    expect(shown.stderr).toContain("WARNING: segment open accepts joins WITHOUT a token");

    const created = await cli(["segments", "create", "cli-update", ...common]);
    expect(created.stderr).toContain("segment cli-update created");
    const updated = await cli(["segments", "create", "cli-update", "--max-ports", "5", "--open-join", ...common]);
    expect(updated.code).toBe(0);
    expect(updated.stderr).toContain("segment cli-update already existed: updated openJoin, maxPorts; its settings now:");
    expect(JSON.parse(updated.stdout)).toMatchObject({ maxPorts: 5, openJoin: true });
    const closed = await cli(["segments", "create", "cli-update", "--closed", ...common]);
    expect(JSON.parse(closed.stdout)).toMatchObject({ maxPorts: 5, openJoin: false });
    const cells = await cli(["segments", "create", "cli-cells", "--cells", "3", ...common]);
    expect(cells.code).toBe(0);
    expect(JSON.parse(cells.stdout)).toMatchObject({ cells: 3 });
    const region = await cli(["segments", "create", "cli-region", "--cells", "region", ...common]);
    expect(JSON.parse(region.stdout)).toMatchObject({ cells: { placement: "region", max: 4, perCell: 256 } });
    const tooMany = await cli(["segments", "create", "cli-cells", "--cells", "17", ...common]);
    expect(tooMany.code).toBe(2);
    expect(tooMany.stderr).toContain("--cells");
    expect((await cli(["segments", "delete", "cli-update", ...common])).code).toBe(0);
    const after = JSON.parse((await cli(["segments", "list", ...common])).stdout) as { segments: Array<{ name: string }> };
    expect(after.segments.map((segment) => segment.name)).not.toContain("cli-update");
  });

  it("exits 3 with the server's message for a wrong admin token", async () => {
    const expected = await serverMessage(await admin("GET", "/v1/segments/closed", undefined, "not-the-token"));
    for (const args of [["segments", "show", "closed"], ["token", "closed", "--role", "member"]]) {
      const result = await cli([...args, "--relay", relay.baseUrl, "--admin-token", "not-the-token"]);
      expect(result.code).toBe(3);
      expect(result.stderr).toContain("relay answered 401");
      expect(result.stderr).toContain(expected);
    }
  });

  it("exits 2 for a bad --role", async () => {
    const result = await cli(["token", "closed", "--role", "king", "--relay", relay.baseUrl, "--admin-token", ADMIN]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--role must be one of member, bridge, monitor");
  });
});

describe("edgelan joins that fail", () => {
  it("pipe --mac to a closed segment without a token exits 3 with the server's 401 message, not waiting for a frame", async () => {
    const result = await cli(["pipe", connect("closed"), "--mac", "02:00:00:00:c1:01"], { holdStdin: true });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain("HTTP 401");
    expect(result.stderr).toContain('segment "closed" needs a join token');
  });

  it("exits 3 with the server's 403 message for a token minted for another segment", async () => {
    const token = await mintToken("other");
    const piped = await cli(["pipe", connect("closed"), "--mac", "02:00:00:00:c1:02", "--token", token], { holdStdin: true });
    expect(piped.code).toBe(3);
    expect(piped.stderr).toContain("HTTP 403");
    expect(piped.stderr).toContain('the join token is for segment "other", not "closed"');
    const pinged = await cli(["ping", connect("closed"), "10.9.0.1", "--count", "1", "--token", token]);
    expect(pinged.code).toBe(3);
    expect(pinged.stderr).toContain('the join token is for segment "other", not "closed"');
  });

  it("exits 3 for a malformed token and for a MAC another port owns", async () => {
    const garbage = await cli(["ping", connect("closed"), "10.9.0.1", "--count", "1", "--token", "garbage"]);
    expect(garbage.code).toBe(3);
    expect(garbage.stderr).toContain("HTTP 401");
    const owner = await WireClient.join(connect("open"), { macs: [mac("02:00:00:00:c1:03")] });
    const taken = await cli(["pipe", connect("open"), "--mac", "02:00:00:00:c1:03"], { holdStdin: true });
    expect(taken.code).toBe(3);
    expect(taken.stderr).toMatch(/segment refused the join: .*another port.*02:00:00:00:c1:03/);
    owner.client.close();
  });

  it("exits 4 when the relay cannot be reached, for joins and admin calls", async () => {
    const port = await freePort();
    const url = `ws://127.0.0.1:${port}/v1/segments/lab/connect`;
    const piped = await cli(["pipe", url, "--mac", "02:00:00:00:c1:04"], { holdStdin: true });
    expect(piped.code).toBe(4);
    expect(piped.stderr).toContain(`cannot reach the relay at ${url}`);
    expect(piped.stderr).toContain("ECONNREFUSED");
    const pinged = await cli(["ping", url, "10.9.0.1", "--count", "1"]);
    expect(pinged.code).toBe(4);
    const shown = await cli(["segments", "show", "lab", "--relay", `http://127.0.0.1:${port}`, "--admin-token", ADMIN]);
    expect(shown.code).toBe(4);
    expect(shown.stderr).toContain(`cannot reach the relay at http://127.0.0.1:${port}`);
  });

  it("join without CAP_NET_ADMIN exits 5 and says what privilege is missing", async () => {
    // As root, the CLI runs as root without CAP_NET_ADMIN (setpriv drops it from the bounding and inheritable
    // sets): switching to another user would also need the checkout to be readable by that user.
    const asRoot = process.getuid?.() === 0;
    const result = await cli(["join", connect("open"), "--tap", "elcli0"], asRoot ? { wrapper: ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", "--"] } : {});
    expect(result.code).toBe(5);
    expect(result.stderr).toContain("CAP_NET_ADMIN");
  });

  it("pipe ends with exit 0 when its cable (stdin) ends", async () => {
    const result = await cli(["pipe", connect("open"), "--mac", "02:00:00:00:c1:05"]);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe("");
  });
});

describe("edgelan ping never hangs", () => {
  it("checks its arguments before it connects: a bad address or --count 0 exits 2 at once", async () => {
    const badTarget = await cli(["ping", connect("open"), "10.10.0"], { timeoutMs: 10_000 });
    expect(badTarget.code).toBe(2);
    expect(badTarget.stderr).toContain('"10.10.0" is not an IPv4 address');
    const zero = await cli(["ping", connect("open"), "10.10.0.1", "--count", "0"], { timeoutMs: 10_000 });
    expect(zero.code).toBe(2);
    expect(zero.stderr).toContain("--count must be an integer from 1 to 100000");
    const badSource = await cli(["ping", connect("open"), "10.10.0.1", "--source-ip", "nope"], { timeoutMs: 10_000 });
    expect(badSource.code).toBe(2);
  });

  it("says in one line that nobody answered ARP, and exits 1", async () => {
    const result = await cli(["ping", connect("open"), "10.77.0.1", "--count", "1"], { timeoutMs: 20_000 });
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain("no ARP reply from 10.77.0.1");
    expect(result.stderr).not.toMatch(/DiagError|\n\s+at /);
  });
});

describe("errors speak CLI", () => {
  it("a missing join token names --token, EDGELAN_TOKEN and `edgelan token`", async () => {
    const result = await cli(["pipe", connect("closed"), "--mac", "02:00:00:00:c3:01"], { holdStdin: true });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain("--token TOKEN (or set EDGELAN_TOKEN)");
    expect(result.stderr).toContain(`edgelan token closed --role member --relay ${relay.baseUrl}`);
  });

  it("an unknown segment exits 3 and says how to create it", async () => {
    const result = await cli(["pipe", connect("nowhere"), "--mac", "02:00:00:00:c3:02"], { holdStdin: true });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain("HTTP 404");
    expect(result.stderr).toContain("edgelan segments create nowhere");
  });

  it("a MAC-bound token without a matching --mac says which MACs it allows, before connecting (exit 2)", async () => {
    const response = await admin("POST", "/v1/segments/closed/tokens", { role: "member", macs: ["02:00:00:00:c3:03", "02:00:00:00:c3:04"] });
    const { token } = (await response.json()) as { token: string };
    const noMac = await cli(["join", connect("closed"), "--tap", "elcli9", "--token", token]);
    expect(noMac.code).toBe(2);
    expect(noMac.stderr).toContain("the join token admits only MAC 02:00:00:00:c3:03, 02:00:00:00:c3:04; pass --mac 02:00:00:00:c3:03");
    const otherMac = await cli(["join", connect("closed"), "--tap", "elcli9", "--mac", "02:00:00:00:c3:09"], { env: { EDGELAN_TOKEN: token } });
    expect(otherMac.code).toBe(2);
    expect(otherMac.stderr).toContain("admits only MAC 02:00:00:00:c3:03");
  });

  it("usage errors exit 2: a too-long TAP name, a missing netns, join --kind monitor", async () => {
    const longName = await cli(["join", connect("open"), "--tap", "a-very-long-tap-name"]);
    expect(longName.code).toBe(2);
    expect(longName.stderr).toContain("Linux allows at most 15");
    const netns = await cli(["join", connect("open"), "--tap", "elcli8", "--netns", "edgelan-no-such-ns"]);
    expect(netns.code).toBe(2);
    expect(netns.stderr).toContain("network namespace edgelan-no-such-ns does not exist");
    const monitor = await cli(["join", connect("open"), "--tap", "elcli8", "--kind", "monitor"]);
    expect(monitor.code).toBe(2);
    expect(monitor.stderr).toContain("edgelan capture");
  });
});

const skip = guestSkipReason();

describe.skipIf(skip !== null)(`edgelan join with a real TAP device${skip === null ? "" : ` (skipped: ${skip})`}`, () => {
  const namespaces = new Namespaces();
  afterAll(async () => {
    await namespaces.cleanup();
  });

  it("exits (not hangs) with 3 on 401, 403 and a taken MAC, and removes its TAP device", async () => {
    const ns = namespaces.create("cli");
    const base = ["--tap", "elcli1", "--netns", ns];
    const unauthorized = await cli(["join", connect("closed"), ...base, "--mac", "02:00:00:00:c2:01"]);
    expect(unauthorized.code).toBe(3);
    expect(unauthorized.stderr).toContain('segment "closed" needs a join token');
    // One report per failure.
    expect(unauthorized.stderr.match(/needs a join token/g)).toHaveLength(1);

    const forbidden = await cli(["join", connect("closed"), ...base, "--mac", "02:00:00:00:c2:02", "--token", await mintToken("other")]);
    expect(forbidden.code).toBe(3);
    expect(forbidden.stderr).toContain("HTTP 403");

    const owner = await WireClient.join(connect("open"), { macs: [mac("02:00:00:00:c2:03")] });
    const taken = await cli(["join", connect("open"), ...base, "--mac", "02:00:00:00:c2:03"]);
    expect(taken.code).toBe(3);
    expect(taken.stderr).toMatch(/segment refused the join: .*another port.*02:00:00:00:c2:03/);
    owner.client.close();

    expect(() => execFileSync("ip", ["-n", ns, "link", "show", "elcli1"], { stdio: "ignore" })).toThrow();
  });

  it("keeps its MAC across rejoins, says which in the join line, sizes the MTU from the segment, logs the fast local path and its exit", async () => {
    expect((await admin("PUT", "/v1/segments/stable", { openJoin: true, maxFrameSize: 9014 })).status).toBe(201);
    const direct = await findWorkerdPort(relay.port);
    expect(direct).not.toBeNull();
    const ns = namespaces.create("cli");
    const macs: string[] = [];
    for (let round = 0; round < 2; round++) {
      const agent = start(["join", connect("stable"), "--tap", "elcli4", "--netns", ns]);
      try {
        await waitFor(() => /MAC .* MTU/.test(agent.output()), "the join lines");
        const line = /MAC (\S+) \(stable: derived from machine id, segment and TAP name\), MTU (\d+) \(segment's largest frame 9014\), offload on/.exec(agent.output());
        expect(line, agent.output()).not.toBeNull();
        // The proxy's URL was given: join took workerd's own port and said so (README, the fast local path).
        expect(agent.output()).toContain(`fast local path: workerd's own port ${String(direct)}, skipping wrangler dev's proxy`);
        macs.push(line?.[1] ?? "");
        expect(line?.[2]).toBe("9000");
        const link = execFileSync("ip", ["-n", ns, "-o", "link", "show", "elcli4"], { encoding: "utf8" });
        expect(link).toContain("mtu 9000");
        expect(link).toContain(`link/ether ${line?.[1]}`);
        kill(agent.child, "SIGTERM");
        expect(await agent.exited).toBe(0);
        expect(agent.output()).toContain("exiting (SIGTERM), exit code 0");
      } finally {
        kill(agent.child);
      }
    }
    expect(macs[1]).toBe(macs[0]);
  });

  it("refuses --mtu larger than the segment carries, before creating the TAP", async () => {
    const ns = namespaces.create("cli");
    const result = await cli(["join", connect("open"), "--tap", "elcli5", "--netns", ns, "--mtu", "9000"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--mtu 9000 is larger than segment "open" carries: its largest frame is 1514 bytes (MTU 1500)');
    expect(result.stderr).toContain("edgelan segments create open --max-frame-size 9014");
    expect(() => execFileSync("ip", ["-n", ns, "link", "show", "elcli5"], { stdio: "ignore" })).toThrow();
  });

  it("exits 4 when the relay cannot be reached at the first connect", async () => {
    const ns = namespaces.create("cli");
    const port = await freePort();
    const result = await cli(["join", `ws://127.0.0.1:${port}/v1/segments/lab/connect`, "--tap", "elcli2", "--netns", ns]);
    expect(result.code).toBe(4);
    expect(result.stderr).toContain("ECONNREFUSED");
  });

  it("keeps running through a relay restart once joined, and resumes its port", async () => {
    const ns = namespaces.create("cli");
    let own = await startRelay();
    const { port, stateDir } = own;
    const agent = start(["join", connect("restart", own), "--tap", "elcli3", "--netns", ns, "--mac", "02:00:00:00:c2:04"]);
    try {
      await waitFor(() => /joined .* as port (\d+)/.test(agent.output()), "the join line");
      const portId = /as port (\d+)/.exec(agent.output())?.[1];
      await own.stop({ keepState: true });
      await waitFor(() => agent.output().includes("connection lost"), "the agent to notice");
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(agent.child.exitCode).toBeNull();
      own = await startRelay({ port, stateDir });
      await waitFor(() => agent.output().includes("reconnected"), "the agent to reconnect", 40_000);
      expect(agent.output()).toContain(`reconnected as port ${portId} (resumed)`);
      // The loss in words, each attempt with its delay, and "joined" only once.
      expect(agent.output()).toMatch(/connection lost \(1006: the connection dropped/);
      expect(agent.output()).toMatch(/reconnecting in \d+\.\d s/);
      expect(agent.output().match(/ joined /g)).toHaveLength(1);
      expect(agent.child.exitCode).toBeNull();
      kill(agent.child, "SIGTERM");
      expect(await agent.exited).toBe(0);
    } finally {
      kill(agent.child);
      await own.stop();
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});

function mac(text: string): number {
  const parsed = parseMac(text);
  if (!parsed.ok) throw new Error(parsed.error.message);
  return parsed.value;
}
