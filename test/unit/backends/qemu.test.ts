// The qemu backend server against real TCP and unix-socket clients speaking QEMU's stream framing
// (4-byte big-endian length + frame), and, when QEMU is installed, against a real QEMU process.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { isBackendError, openBackend, serveBackend, type BackendServer, type NetBackend } from "../../../client/backend.ts";
import { encodeFrames, LengthPrefixDecoder } from "../../../client/backends/framing.ts";
import { parseQemuAddress, qemuNetdevArgs, qemuNetdevArgument, QemuServer } from "../../../client/backends/qemu.ts";

const servers: BackendServer[] = [];
const sockets: Socket[] = [];
const children: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), "edgelan-qemu-"));

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const server of servers.splice(0)) await server.close();
});

afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

function frame(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (seed * 31 + i) & 0xff;
  return bytes;
}

async function serve(spec: string): Promise<QemuServer> {
  const server = await serveBackend(spec);
  servers.push(server);
  expect(server).toBeInstanceOf(QemuServer);
  return server as QemuServer;
}

/** A client that speaks the QEMU framing and collects the frames it receives. */
class Guest {
  readonly socket: Socket;
  readonly received: Uint8Array[] = [];
  private readonly decoder = new LengthPrefixDecoder(4);
  readonly closed: Promise<void>;

  constructor(address: string) {
    const parsed = parseQemuAddress(address);
    this.socket = parsed.type === "unix" ? createConnection(parsed.path) : createConnection(parsed.port, parsed.host);
    sockets.push(this.socket);
    this.socket.on("data", (chunk: Buffer) => {
      this.decoder.push(chunk, this.received);
    });
    this.socket.on("error", () => undefined);
    this.closed = new Promise((resolve) => this.socket.once("close", () => resolve()));
  }

  connected(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once("connect", () => resolve());
      this.socket.once("error", reject);
    });
  }

  send(frames: Uint8Array[]): void {
    this.socket.write(encodeFrames(frames, 4).bytes);
  }
}

function nextPort(server: BackendServer): Promise<NetBackend> {
  return new Promise((resolve) => server.onConnection(resolve));
}

function collect(port: NetBackend): Uint8Array[][] {
  const batches: Uint8Array[][] = [];
  port.onFrames((frames) => batches.push(frames.map((f) => Uint8Array.from(f))));
  return batches;
}

async function waitFor(predicate: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("qemu backend server over TCP", () => {
  it("binds port 0 to a real port and names each connection as its own port", async () => {
    const server = await serve("qemu:127.0.0.1:0");
    expect(server.address()).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(server.address()).not.toBe("127.0.0.1:0");
    expect(server.name).toBe(`qemu:${server.address()}`);

    const ports: NetBackend[] = [];
    server.onConnection((port) => ports.push(port));
    const a = new Guest(server.address());
    const b = new Guest(server.address());
    await Promise.all([a.connected(), b.connected()]);
    await waitFor(() => ports.length === 2, "two ports");
    expect(ports.map((p) => p.name).sort()).toEqual([`${server.name}#1`, `${server.name}#2`]);
    expect(ports[0]?.capabilities).toEqual({ maxFrameSize: 65535, multiPort: false, vnetHeader: false });
    expect(server.stats()).toMatchObject({ accepted: 2, open: 2 });
  });

  it("delivers all complete frames of one chunk in one batch, and reassembles split ones", async () => {
    const server = await serve("qemu:127.0.0.1:0");
    const portPromise = nextPort(server);
    const guest = new Guest(server.address());
    await guest.connected();
    const port = await portPromise;
    const batches = collect(port);

    const three = [frame(60, 1), frame(1514, 2), frame(42, 3)];
    guest.send(three);
    await waitFor(() => batches.flat().length === 3, "three frames");
    expect(batches).toHaveLength(1);
    expect(batches[0]).toEqual(three);

    // One frame dribbled in byte-sized pieces still arrives whole.
    const split = encodeFrames([frame(100, 4)], 4).bytes;
    for (let i = 0; i < split.length; i += 7) {
      guest.socket.write(split.subarray(i, i + 7));
      await new Promise((resolve) => setImmediate(resolve));
    }
    await waitFor(() => batches.flat().length === 4, "the split frame");
    expect(batches.flat()[3]).toEqual(frame(100, 4));
    expect(port.stats?.()).toMatchObject({ rxFrames: 4, rxBytes: 60 + 1514 + 42 + 100, rxErrors: 0 });
  });

  it("sends a batch to the guest with 4-byte length prefixes, dropping what cannot be framed", async () => {
    const server = await serve("qemu:127.0.0.1:0");
    const portPromise = nextPort(server);
    const guest = new Guest(server.address());
    await guest.connected();
    const port = await portPromise;
    const out = [frame(60, 5), frame(9000, 6), frame(64, 7)];
    port.send([...out, new Uint8Array(0), frame(70_000, 8)]);
    await waitFor(() => guest.received.length === 3, "three frames at the guest");
    expect(guest.received).toEqual(out);
    expect(port.stats?.()).toMatchObject({ txFrames: 3, txBytes: 60 + 9000 + 64, txDropped: 2 });
  });

  it("closes a connection that sends a bad length without disturbing the others", async () => {
    const server = await serve("qemu:127.0.0.1:0");
    const ports: NetBackend[] = [];
    server.onConnection((port) => ports.push(port));
    const good = new Guest(server.address());
    await good.connected();
    await waitFor(() => ports.length === 1, "the good port");
    const bad = new Guest(server.address());
    await bad.connected();
    await waitFor(() => ports.length === 2, "the bad port");
    const [goodPort, badPort] = ports as [NetBackend, NetBackend];
    const goodBatches = collect(goodPort);
    const badBatches = collect(badPort);
    const badClosed = new Promise<Error | undefined>((resolve) => badPort.onClose(resolve));
    let goodClosed = false;
    goodPort.onClose(() => { goodClosed = true; });

    // A frame, then a zero length: the frame is delivered, then the connection is closed.
    bad.socket.write(Buffer.concat([encodeFrames([frame(60, 9)], 4).bytes, Buffer.from([0, 0, 0, 0])]));
    const error = await badClosed;
    expect(isBackendError(error, "framing-error")).toBe(true);
    expect(error?.message).toMatch(/zero-length/);
    expect(badBatches.flat()).toEqual([frame(60, 9)]);
    await bad.closed;
    expect(server.stats()).toMatchObject({ framingErrors: 1, open: 1 });

    // An oversize length on a third connection is just as contained.
    const huge = new Guest(server.address());
    await huge.connected();
    await waitFor(() => ports.length === 3, "the third port");
    const hugeClosed = new Promise<Error | undefined>((resolve) => (ports[2] as NetBackend).onClose(resolve));
    collect(ports[2] as NetBackend);
    huge.socket.write(Buffer.from([0x00, 0x10, 0x00, 0x00]));
    expect((await hugeClosed)?.message).toMatch(/1048576-byte length prefix/);
    expect(server.stats().framingErrors).toBe(2);

    // The good connection still works both ways.
    good.send([frame(64, 10)]);
    goodPort.send([frame(80, 11)]);
    await waitFor(() => goodBatches.flat().length === 1 && good.received.length === 1, "traffic on the good port");
    expect(goodBatches.flat()[0]).toEqual(frame(64, 10));
    expect(good.received[0]).toEqual(frame(80, 11));
    expect(goodClosed).toBe(false);
  });

  it("closes a port cleanly when the guest hangs up, and the server closes its ports", async () => {
    const server = await serve("qemu:127.0.0.1:0");
    const ports: NetBackend[] = [];
    server.onConnection((port) => ports.push(port));
    const a = new Guest(server.address());
    const b = new Guest(server.address());
    await Promise.all([a.connected(), b.connected()]);
    await waitFor(() => ports.length === 2, "two ports");
    for (const port of ports) collect(port);
    const closedA = new Promise<Error | undefined>((resolve) => (ports[0] as NetBackend).onClose(resolve));
    a.socket.end();
    expect(await closedA).toBeUndefined();
    await waitFor(() => server.stats().open === 1, "one open port");

    await server.close();
    await b.closed; // the server closed the remaining guest connection
    let late: Error | undefined | null = null;
    (ports[1] as NetBackend).onClose((error) => { late = error; });
    await Promise.resolve();
    expect(late).toBeUndefined();
  });

  it("holds connections that arrive before a handler is set", async () => {
    const server = await serve("qemu:127.0.0.1:0");
    const guest = new Guest(server.address());
    await guest.connected();
    guest.send([frame(60, 12)]);
    await waitFor(() => server.stats().accepted === 1, "the connection");
    const port = await nextPort(server);
    const batches = collect(port);
    await waitFor(() => batches.length === 1, "the early frame");
    expect(batches[0]).toEqual([frame(60, 12)]);
  });

  it("says clearly when the address is taken or malformed", async () => {
    const server = await serve("qemu:127.0.0.1:0");
    await expect(serveBackend(`qemu:${server.address()}`)).rejects.toSatisfy((e: unknown) => isBackendError(e, "address-in-use"));
    await expect(serveBackend("qemu:localhost")).rejects.toSatisfy((e: unknown) => isBackendError(e, "bad-spec"));
    await expect(serveBackend("qemu:127.0.0.1:70000")).rejects.toSatisfy((e: unknown) => isBackendError(e, "bad-spec"));
    await expect(openBackend("qemu:127.0.0.1:5555")).rejects.toThrow(/multi-port backend: use serveBackend/);
  });
});

describe("qemu backend server over a unix socket", () => {
  it("exchanges frames and removes the socket file on close", async () => {
    const path = join(dir, "vm.sock");
    const server = await serve(`qemu:${path}`);
    expect(server.address()).toBe(path);
    expect(server.name).toBe(`qemu:${path}`);
    const portPromise = nextPort(server);
    const guest = new Guest(path);
    await guest.connected();
    const port = await portPromise;
    expect(port.name).toBe(`qemu:${path}#1`);
    const batches = collect(port);
    guest.send([frame(60, 13), frame(61, 14)]);
    port.send([frame(62, 15)]);
    await waitFor(() => batches.flat().length === 2 && guest.received.length === 1, "frames both ways");
    expect(batches).toEqual([[frame(60, 13), frame(61, 14)]]);
    expect(guest.received).toEqual([frame(62, 15)]);
    await server.close();
    servers.length = 0;
    expect(existsSync(path)).toBe(false);
  });

  it("takes over a stale socket file left by a dead process, but not a live one", async () => {
    const path = join(dir, "stale.sock");
    const holder = spawn(process.execPath, ["-e", `require("node:net").createServer().listen(${JSON.stringify(path)}, () => console.log("up"))`], { stdio: ["ignore", "pipe", "inherit"] });
    children.push(holder);
    await new Promise<void>((resolve) => holder.stdout?.once("data", () => resolve()));
    await expect(serveBackend(`qemu:${path}`)).rejects.toSatisfy((e: unknown) => isBackendError(e, "address-in-use"));
    if (holder.pid !== undefined) process.kill(holder.pid, "SIGKILL"); // leaves the socket file behind
    await new Promise((resolve) => holder.once("exit", resolve));
    expect(existsSync(path)).toBe(true);
    const server = await serve(`qemu:${path}`);
    const guest = new Guest(path);
    await guest.connected();
    expect((await nextPort(server)).name).toBe(`qemu:${path}#1`);
  });
});

describe("QEMU command line", () => {
  it("prints -netdev stream for TCP, IPv6 and unix addresses", () => {
    expect(qemuNetdevArgument("127.0.0.1:5555", { mac: "52:54:00:12:34:56" })).toBe(
      "-netdev stream,id=n0,server=off,addr.type=inet,addr.host=127.0.0.1,addr.port=5555 -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56",
    );
    expect(qemuNetdevArgs("[::1]:5555", { id: "lan", mac: "52:54:00:00:00:01", device: "e1000" })).toEqual([
      "-netdev", "stream,id=lan,server=off,addr.type=inet,addr.host=::1,addr.port=5555",
      "-device", "e1000,netdev=lan,mac=52:54:00:00:00:01",
    ]);
    expect(qemuNetdevArgs("/run/a,b.sock", { mac: "52:54:00:00:00:02" })[1]).toBe("stream,id=n0,server=off,addr.type=unix,addr.path=/run/a,,b.sock");
    expect(qemuNetdevArgument("/tmp/my vm.sock", { mac: "52:54:00:00:00:03" })).toContain("'stream,id=n0,server=off,addr.type=unix,addr.path=/tmp/my vm.sock'");
  });

  it("prints the legacy -netdev socket form for TCP only", () => {
    expect(qemuNetdevArgs("127.0.0.1:5555", { legacySocket: true, mac: "52:54:00:00:00:04" })[1]).toBe("socket,id=n0,connect=127.0.0.1:5555");
    expect(() => qemuNetdevArgs("/tmp/x.sock", { legacySocket: true })).toThrow(/only speaks TCP/);
  });

  it("gives each VM a random locally administered unicast MAC unless told one", () => {
    const macs = new Set([1, 2, 3, 4].map(() => /mac=([0-9a-f:]+)/.exec(qemuNetdevArgument("127.0.0.1:1"))?.[1]));
    expect(macs.size).toBe(4);
    for (const mac of macs) expect(parseInt(mac?.slice(0, 2) ?? "ff", 16) & 0x03).toBe(0x02);
    expect(() => qemuNetdevArgs("127.0.0.1:1", { mac: "01:00:5e:00:00:01" })).toThrow(/unicast/);
  });
});

const qemuBinary = ["qemu-system-x86_64", "qemu-system-aarch64"].find(
  (name) => spawnSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" }).status === 0,
);

describe.skipIf(qemuBinary === undefined)(`a real QEMU connects with the printed arguments${qemuBinary === undefined ? " (skipped: QEMU is not installed; Debian: qemu-system-x86)" : ""}`, () => {
  it.each(["tcp", "unix"] as const)("over %s", async (kind) => {
    const server = await serve(kind === "tcp" ? "qemu:127.0.0.1:0" : `qemu:${join(dir, "real-qemu.sock")}`);
    const portPromise = nextPort(server);
    // -S: the CPU never starts, so no guest runs; the NIC and its netdev are still set up and connect.
    const machine = qemuBinary === "qemu-system-x86_64" ? ["-machine", "pc,accel=tcg"] : ["-machine", "virt,accel=tcg"];
    const args = [...machine, "-nodefaults", "-display", "none", "-S", "-m", "64", ...server.qemuArgument({ mac: "52:54:00:e1:7e:01" }).split(" ")];
    const qemu = spawn(qemuBinary as string, args, { stdio: ["ignore", "ignore", "pipe"] });
    children.push(qemu);
    let stderr = "";
    qemu.stderr?.on("data", (chunk: Buffer) => { stderr += chunk.toString(); });
    const exited = new Promise<string>((resolve) => qemu.once("exit", (code) => resolve(`QEMU exited (${code}): ${stderr}`)));
    const port = await Promise.race([portPromise, exited.then((why) => { throw new Error(why); })]);
    expect(port.name).toBe(`${server.name}#1`);
    const closed = new Promise<Error | undefined>((resolve) => port.onClose(resolve));
    collect(port);
    if (qemu.pid !== undefined) process.kill(qemu.pid, "SIGTERM");
    expect(await closed).toBeUndefined(); // QEMU going away is an ordinary end of the connection
  }, 60_000);
});
