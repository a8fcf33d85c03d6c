// The stdio backend (VDE stream cable: 2-byte big-endian length + frame) over real pipes and child
// processes, and — when vde2 is installed — through a real vde_switch and vde_plug.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { isBackendError, openBackend, type NetBackend } from "../../../client/backend.ts";
import { encodeFrames, LengthPrefixDecoder } from "../../../client/backends/framing.ts";
import { StdioBackend } from "../../../client/backends/stdio.ts";

const children: ChildProcess[] = [];
const backends: NetBackend[] = [];
const dir = mkdtempSync(join(tmpdir(), "edgelan-stdio-"));

afterAll(async () => {
  for (const backend of backends) await backend.close();
  for (const child of children) if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

function frame(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (seed * 13 + i) & 0xff;
  return bytes;
}

function start(command: string, args: string[]): ChildProcess {
  const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
  children.push(child);
  return child;
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });
}

async function waitFor(predicate: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A StdioBackend cabled to a child process: we read its stdout and write its stdin. */
function cable(child: ChildProcess): StdioBackend {
  if (child.stdout === null || child.stdin === null) throw new Error("child without pipes");
  const backend = new StdioBackend({ input: child.stdout, output: child.stdin });
  backends.push(backend);
  return backend;
}

describe("stdio backend over real pipes", () => {
  it("round-trips a batch through `cat`, framed with 2-byte lengths", async () => {
    const cat = start("cat", []);
    const backend = cable(cat);
    expect(backend.name).toBe("stdio");
    expect(backend.capabilities).toEqual({ maxFrameSize: 65535, multiPort: false, vnetHeader: false });
    const received: Uint8Array[] = [];
    backend.onFrames((frames) => received.push(...frames.map((f) => Uint8Array.from(f))));
    const frames = [frame(60, 1), frame(1514, 2), frame(65535, 3), frame(14, 4)];
    backend.send(frames);
    await waitFor(() => received.length === frames.length, "the echoed frames");
    expect(received).toEqual(frames);
    expect(backend.stats()).toMatchObject({ txFrames: 4, rxFrames: 4, txDropped: 0, rxErrors: 0 });
    expect(backend.stats().rxBatches).toBeLessThanOrEqual(4);

    backend.send([frame(65536, 5)]); // cannot be expressed in 2 bytes: dropped and counted
    expect(backend.stats().txDropped).toBe(1);

    const closed = new Promise<Error | undefined>((resolve) => backend.onClose(resolve));
    await backend.close();
    expect(await closed).toBeUndefined();
    expect(await exitOf(cat)).toBe(0); // cat saw the end of its input: the cable was unplugged
  });

  it("closes with a framing error on a zero length", async () => {
    const child = start(process.execPath, ["-e", "process.stdout.write(Buffer.from([0, 3, 1, 2, 3, 0, 0]))"]);
    const backend = cable(child);
    const batches: Uint8Array[][] = [];
    backend.onFrames((frames) => batches.push(frames.map((f) => Uint8Array.from(f))));
    const error = await new Promise<Error | undefined>((resolve) => backend.onClose(resolve));
    expect(isBackendError(error, "framing-error")).toBe(true);
    expect(batches.flat()).toEqual([Uint8Array.of(1, 2, 3)]);
    expect(backend.stats().rxErrors).toBe(1);
  });

  it("treats the end of input as a clean close", async () => {
    const child = start(process.execPath, ["-e", "process.stdout.write(Buffer.from([0, 2, 9, 9]))"]);
    const backend = cable(child);
    const got: Uint8Array[] = [];
    backend.onFrames((frames) => got.push(...frames));
    const error = await new Promise<Error | undefined>((resolve) => backend.onClose(resolve));
    expect(error).toBeUndefined();
    expect(got.map((f) => [...f])).toEqual([[9, 9]]);
  });

  it("is the backend on process.stdin/stdout of a real child process (openBackend(\"stdio\"))", async () => {
    // The child runs the real registry with its default streams and echoes every frame back with the
    // first byte incremented; it exits on its own when its stdin ends.
    const backendModule = fileURLToPath(new URL("../../../client/backend.ts", import.meta.url));
    const script = [
      `import { openBackend } from ${JSON.stringify(backendModule)};`,
      `const b = await openBackend("stdio");`,
      `b.onFrames((frames) => { b.send(frames.map((f) => { const c = Uint8Array.from(f); c[0] = (c[0] + 1) & 255; return c; })); });`,
      `b.onClose((e) => { process.stderr.write("closed " + (e ? e.message : "clean") + "\\n"); });`,
    ].join("\n");
    const child = start(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script]);
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => { stderr += chunk.toString(); });
    const decoder = new LengthPrefixDecoder(2);
    const echoed: Uint8Array[] = [];
    child.stdout?.on("data", (chunk: Buffer) => {
      const error = decoder.push(chunk, echoed);
      if (error !== undefined) throw error;
    });
    const frames = [frame(60, 6), frame(100, 7), frame(1500, 8)];
    child.stdin?.write(encodeFrames(frames, 2).bytes);
    await waitFor(() => echoed.length === 3, `three echoed frames (child stderr: ${stderr})`, 20_000);
    expect(echoed.map((f) => f[0])).toEqual(frames.map((f) => ((f[0] ?? 0) + 1) & 255));
    expect(echoed.map((f) => f.length)).toEqual([60, 100, 1500]);
    child.stdin?.end();
    expect(await exitOf(child)).toBe(0);
    expect(stderr).toContain("closed clean");
  }, 30_000);

  it("refuses an argument", async () => {
    await expect(openBackend("stdio:x")).rejects.toSatisfy((e: unknown) => isBackendError(e, "bad-spec"));
  });
});

const hasVde = ["vde_switch", "vde_plug"].every((name) => spawnSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" }).status === 0);

describe.skipIf(!hasVde)(`through a real VDE switch${hasVde ? "" : " (skipped: vde_switch/vde_plug not installed; Debian: vde2)"}`, () => {
  it("carries a broadcast frame from one vde_plug cable to another", async () => {
    const sock = join(dir, "switch");
    // A hub (-x) floods everything; its stdin stays an open pipe so it keeps running until we kill it.
    const sw = start("vde_switch", ["-x", "-s", sock]);
    let stderr = "";
    const collectStderr = (name: string, child: ChildProcess): void => {
      child.stderr?.on("data", (chunk: Buffer) => { stderr += `${name}: ${chunk.toString()}`; });
    };
    collectStderr("vde_switch", sw);
    // A vde_plug started before the switch has made its control socket exits at once ("vde_open …: No such
    // file or directory"): on a loaded machine that raced, and the test waited out its deadline for nothing.
    await waitFor(() => existsSync(join(sock, "ctl")), "vde_switch's control socket", 20_000);
    const plugA = start("vde_plug", [`vde://${sock}`]);
    const plugB = start("vde_plug", [`vde://${sock}`]);
    collectStderr("vde_plug A", plugA);
    collectStderr("vde_plug B", plugB);
    const deadline = Date.now() + 20_000; // generous: vde_plug connects slowly on a loaded machine
    const a = cable(plugA);
    const b = cable(plugB);
    const atB: Uint8Array[] = [];
    const atA: Uint8Array[] = [];
    a.onFrames((frames) => atA.push(...frames.map((f) => Uint8Array.from(f))));
    b.onFrames((frames) => atB.push(...frames.map((f) => Uint8Array.from(f))));
    const broadcast = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0xa1, 0x88, 0xb5, ...frame(46, 9)]);
    const reply = Uint8Array.from([0x02, 0, 0, 0, 0, 0xa1, 0x02, 0, 0, 0, 0, 0xb2, 0x88, 0xb5, ...frame(46, 10)]);
    // The plugs connect to the switch asynchronously: resend (bounded) until the frame gets through.
    while (atB.length === 0) {
      if (Date.now() > deadline) throw new Error(`no frame through vde_switch in 20 s (stderr: ${stderr || "none"})`);
      for (const plug of [plugA, plugB]) {
        if (plug.exitCode !== null) throw new Error(`a vde_plug exited with ${plug.exitCode} (stderr: ${stderr || "none"})`);
      }
      a.send([broadcast]);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(atB[0]).toEqual(broadcast);
    b.send([reply]);
    await waitFor(() => atA.some((f) => f[11] === 0xb2), "the reply at A");
    expect(atA.find((f) => f[11] === 0xb2)).toEqual(reply);
  }, 60_000);
});
