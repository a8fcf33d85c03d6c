// The TAP backend against the real kernel: needs root, /dev/net/tun, iproute2 and the built addon.
// Everything happens inside network namespaces this file creates (elt-<pid>-<n>) with addresses in
// 10.200.x.0/24, and nothing is routed anywhere else. afterAll deletes them even when a test fails.
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isBackendError, openBackend, type NetBackend } from "../../client/backend.ts";
import { TapBackend } from "../../client/backends/tap.ts";
import { tapAddonAvailable } from "../../client/native/tap-addon.ts";

function hasCommand(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

function skipReason(): string | undefined {
  if (process.platform !== "linux") return "needs Linux";
  if (process.getuid?.() !== 0) return "needs root (CAP_NET_ADMIN to create TAP devices and namespaces)";
  if (!existsSync("/dev/net/tun")) return "/dev/net/tun is missing";
  if (!hasCommand("ip")) return "iproute2 (`ip`) is not installed";
  if (!tapAddonAvailable()) return "the TAP addon is not built (node scripts/build-native.mjs)";
  return undefined;
}

const reason = skipReason();
if (reason !== undefined) console.warn(`tap-backend e2e skipped: ${reason}`);
const hasPing = hasCommand("ping");

const subnet = `10.200.${(process.pid % 250) + 1}`;
const hostIp = `${subnet}.1`;
const peerIp = `${subnet}.2`;
const staticIp = `${subnet}.3`;
const hostMac = "02:e1:7e:00:00:01";
const peerMac = "02:e1:7e:00:00:02";
const staticMac = "02:e1:7e:00:00:03";

const namespaces: string[] = [];
const backends: NetBackend[] = [];
const children: ChildProcess[] = [];
let nsCounter = 0;

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", timeout: 10_000 });
}

function newNamespace(): string {
  const name = `elt-${process.pid}-${nsCounter++}`;
  ip("netns", "add", name);
  namespaces.push(name);
  ip("-n", name, "link", "set", "lo", "up");
  return name;
}

function track<T extends NetBackend>(backend: T): T {
  backends.push(backend);
  return backend;
}

// ---------- frame helpers ----------

function macBytes(text: string): number[] {
  return text.split(":").map((octet) => parseInt(octet, 16));
}
function ipBytes(text: string): number[] {
  return text.split(".").map(Number);
}
function macAt(frame: Uint8Array, offset: number): string {
  return [...frame.subarray(offset, offset + 6)].map((b) => b.toString(16).padStart(2, "0")).join(":");
}
function ipAt(frame: Uint8Array, offset: number): string {
  return [...frame.subarray(offset, offset + 4)].join(".");
}
function etherType(frame: Uint8Array): number {
  return ((frame[12] ?? 0) << 8) | (frame[13] ?? 0);
}
function isArpRequestFor(frame: Uint8Array, target: string): boolean {
  return frame.length >= 42 && etherType(frame) === 0x0806 && frame[21] === 1 && ipAt(frame, 38) === target;
}
function isIcmpEchoRequestTo(frame: Uint8Array, target: string): boolean {
  return frame.length >= 42 && etherType(frame) === 0x0800 && frame[23] === 1 && ipAt(frame, 30) === target && frame[34] === 8;
}
function isUdpTo(frame: Uint8Array, target: string, port: number): boolean {
  return frame.length >= 42 && etherType(frame) === 0x0800 && frame[23] === 17 && ipAt(frame, 30) === target &&
    (((frame[36] ?? 0) << 8) | (frame[37] ?? 0)) === port;
}

function arpReply(fromMac: string, fromIp: string, toMac: string, toIp: string): Uint8Array {
  return Uint8Array.from([
    ...macBytes(toMac), ...macBytes(fromMac), 0x08, 0x06,
    0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02,
    ...macBytes(fromMac), ...ipBytes(fromIp), ...macBytes(toMac), ...ipBytes(toIp),
    ...new Array<number>(18).fill(0), // pad to the 60-byte minimum
  ]);
}

function checksum(bytes: Uint8Array, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end; i += 2) sum += ((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Turns an ICMP echo request into the matching reply (swap addresses, type 0, fix checksums). */
function echoReply(request: Uint8Array): Uint8Array {
  const reply = Uint8Array.from(request);
  reply.set(request.subarray(6, 12), 0);
  reply.set(request.subarray(0, 6), 6);
  const ihl = ((request[14] ?? 0) & 0x0f) * 4;
  const totalLength = ((request[16] ?? 0) << 8) | (request[17] ?? 0);
  reply.set(request.subarray(30, 34), 26);
  reply.set(request.subarray(26, 30), 30);
  reply[24] = 0;
  reply[25] = 0;
  const ipSum = checksum(reply, 14, 14 + ihl);
  reply[24] = ipSum >> 8;
  reply[25] = ipSum & 0xff;
  const icmp = 14 + ihl;
  reply[icmp] = 0;
  reply[icmp + 2] = 0;
  reply[icmp + 3] = 0;
  const icmpSum = checksum(reply, icmp, 14 + totalLength);
  reply[icmp + 2] = icmpSum >> 8;
  reply[icmp + 3] = icmpSum & 0xff;
  return reply;
}

/** Waits (bounded) until `predicate` holds, checking after each event-loop turn with data. */
async function waitFor(predicate: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });
}

describe.skipIf(reason !== undefined)(`TAP backend on a real kernel${reason === undefined ? "" : ` (skipped: ${reason})`}`, () => {
  let ns = "";
  let tap: TapBackend;
  const batches: Uint8Array[][] = [];
  const frames = (): Uint8Array[] => batches.flat();
  const views: Uint8Array[] = [];

  beforeAll(async () => {
    ns = newNamespace();
    const backend = await openBackend("tap:elt0", { netns: ns, mtu: 1400, mac: hostMac });
    expect(backend).toBeInstanceOf(TapBackend);
    tap = track(backend as TapBackend);
    ip("-n", ns, "addr", "add", `${hostIp}/24`, "dev", "elt0");
    tap.onFrames((batch) => {
      // Copies as they arrived, and the views themselves (which must never change afterwards).
      batches.push(batch.map((frame) => Uint8Array.from(frame)));
      views.push(...batch);
    });
  });

  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, "SIGKILL");
    for (const backend of backends) await backend.close();
    for (const name of namespaces) spawnSync("ip", ["netns", "del", name], { stdio: "ignore", timeout: 10_000 });
    const left = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout ?? "";
    for (const name of namespaces) expect(left).not.toContain(name);
  });

  it("creates the device inside the namespace with the asked MTU, MAC and link up", () => {
    expect(tap.name).toBe("tap:elt0");
    expect(tap.capabilities).toEqual({ maxFrameSize: 65535, multiPort: false, vnetHeader: false });
    const info = tap.info();
    expect(info.mtu).toBe(1400);
    expect(info.up).toBe(true);
    expect(macAt(info.mac, 0)).toBe(hostMac);
    const shown = ip("-n", ns, "link", "show", "dev", "elt0");
    expect(shown).toContain("mtu 1400");
    expect(shown).toContain(hostMac);
    // and not in our own namespace
    expect(spawnSync("ip", ["link", "show", "dev", "elt0"], { stdio: "ignore" }).status).not.toBe(0);
  });

  it.skipIf(!hasPing)(`a real ping from the namespace is resolved and answered through the backend${hasPing ? "" : " (skipped: ping is not installed)"}`, async () => {
    const ping = spawn("ip", ["netns", "exec", ns, "ping", "-c", "1", "-W", "3", peerIp], { stdio: "ignore" });
    children.push(ping);

    await waitFor(() => frames().some((f) => isArpRequestFor(f, peerIp)), `an ARP request for ${peerIp}`);
    const request = frames().find((f) => isArpRequestFor(f, peerIp)) as Uint8Array;
    expect(etherType(request)).toBe(0x0806);
    expect(macAt(request, 0)).toBe("ff:ff:ff:ff:ff:ff");
    expect(macAt(request, 6)).toBe(hostMac);
    expect(ipAt(request, 28)).toBe(hostIp);

    tap.send([arpReply(peerMac, peerIp, hostMac, hostIp)]);
    await waitFor(() => frames().some((f) => isIcmpEchoRequestTo(f, peerIp)), `the ICMP echo request to ${peerIp}`);
    const echo = frames().find((f) => isIcmpEchoRequestTo(f, peerIp)) as Uint8Array;
    expect(macAt(echo, 0)).toBe(peerMac); // the kernel used the MAC we taught it
    expect(ip("-n", ns, "neigh", "show", peerIp)).toContain(peerMac);

    tap.send([echoReply(echo)]);
    expect(await exitOf(ping)).toBe(0); // ping got its answer: the write path delivered a well-formed frame
    expect(tap.stats().txFrames).toBeGreaterThanOrEqual(2);
    expect(tap.stats().txErrors).toBe(0);
  });

  it("drains everything queued into one batch", async () => {
    ip("-n", ns, "neigh", "replace", staticIp, "lladdr", staticMac, "dev", "elt0", "nud", "permanent");
    const before = batches.length;
    const port = 40_000 + (process.pid % 20_000);
    const count = 8;
    // Run synchronously: our event loop is blocked, so all eight frames wait in the TAP queue.
    const script = `const s=require("node:dgram").createSocket("udp4");let n=0;` +
      `const next=()=>{if(n++<${count})s.send(Buffer.from("edgelan "+n),${port},"${staticIp}",next);else s.close();};next();`;
    const sent = spawnSync("ip", ["netns", "exec", ns, process.execPath, "-e", script], { encoding: "utf8", timeout: 20_000 });
    expect(sent.status, sent.stderr).toBe(0);
    await waitFor(() => frames().filter((f) => isUdpTo(f, staticIp, port)).length >= count, `${count} UDP frames`);
    const ours = batches.slice(before).map((batch) => batch.filter((f) => isUdpTo(f, staticIp, port)).length);
    expect(Math.max(...ours)).toBe(count);
    expect(tap.stats().rxBatches).toBeLessThan(tap.stats().rxFrames);
  });

  it("hands over frames that stay valid after later reads (read into an arena that is never rewritten)", () => {
    const hex = (frame: Uint8Array): string => Buffer.from(frame).toString("hex");
    expect(views.length).toBeGreaterThan(8);
    expect(views.map(hex)).toEqual(frames().map(hex));
    // Views of one batch share one ArrayBuffer, owned by JavaScript, larger than the batch (the arena).
    expect(views.every((view) => view.buffer.byteLength >= 4 * 1024 * 1024)).toBe(true);
  });

  it("writes a batch, one frame per write, and counts it", () => {
    const before = tap.stats();
    const batch = [1, 2, 3].map((n) => arpReply(`02:e1:7e:00:01:0${n}`, `${subnet}.${10 + n}`, hostMac, hostIp));
    tap.send(batch);
    const after = tap.stats();
    expect(after.txFrames - before.txFrames).toBe(3);
    expect(after.txBytes - before.txBytes).toBe(batch.reduce((sum, f) => sum + f.length, 0));
  });

  it("counts writes the kernel refuses (link down: EIO) instead of throwing", async () => {
    const down = track(TapBackend.open("eltdown0", { netns: ns, up: false }));
    expect(down.info().up).toBe(false);
    down.send([arpReply(peerMac, peerIp, hostMac, hostIp), arpReply(peerMac, peerIp, hostMac, hostIp)]);
    expect(down.stats()).toMatchObject({ txFrames: 0, txErrors: 2 });
    expect(down.lastErrno()).toBe(5); // EIO
    await down.close();
  });

  it("refuses a second open of a busy device and bad names with typed errors", async () => {
    await expect(openBackend("tap:elt0", { netns: ns })).rejects.toSatisfy((e: unknown) => isBackendError(e, "device-busy"));
    await expect(openBackend("tap:lo", { netns: ns })).rejects.toSatisfy((e: unknown) => isBackendError(e, "device-conflict"));
    await expect(openBackend("tap:x", { netns: `elt-${process.pid}-missing` })).rejects.toSatisfy((e: unknown) => isBackendError(e, "netns-missing"));
    await expect(openBackend("tap:a-name-far-too-long")).rejects.toSatisfy((e: unknown) => isBackendError(e, "bad-name"));
  });

  it("reports a deleted device through onClose and releases it", async () => {
    const other = track(TapBackend.open("elt1", { netns: ns }));
    other.onFrames(() => undefined);
    const closed = new Promise<Error | undefined>((resolve) => other.onClose(resolve));
    ip("-n", ns, "link", "del", "elt1");
    const error = await Promise.race([
      closed,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("no onClose within 5 s of deleting the device")), 5_000)),
    ]);
    expect(isBackendError(error, "device-error")).toBe(true);
    other.send([arpReply(peerMac, peerIp, hostMac, hostIp)]);
    expect(other.stats().txDropped).toBe(1);
  });

  it("closing removes the device, and a name can be reused", async () => {
    const other = TapBackend.open("elt2", { netns: ns });
    other.onFrames(() => undefined);
    let closedWith: Error | undefined | null = null;
    other.onClose((error) => { closedWith = error; });
    await other.close();
    expect(closedWith).toBeUndefined();
    expect(spawnSync("ip", ["-n", ns, "link", "show", "dev", "elt2"], { stdio: "ignore" }).status).not.toBe(0);
    const again = track(TapBackend.open("elt2", { netns: ns }));
    expect(again.info().up).toBe(true);
    await again.close();
  });

  it("lets the process exit once the backend is closed (no hanging poll)", async () => {
    const script = [
      `import { TapBackend } from ${JSON.stringify(new URL("../../client/backends/tap.ts", import.meta.url).pathname)};`,
      `const tap = TapBackend.open("elt3", { netns: ${JSON.stringify(ns)} });`,
      `tap.onFrames(() => {});`,
      `setTimeout(() => { void tap.close().then(() => console.log("closed")); }, 100);`,
    ].join("\n");
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    let output = "";
    child.stdout?.on("data", (chunk: Buffer) => { output += chunk.toString(); });
    child.stderr?.on("data", (chunk: Buffer) => { output += chunk.toString(); });
    const timer = setTimeout(() => { if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGKILL"); }, 20_000);
    const code = await exitOf(child);
    clearTimeout(timer);
    expect(output).toContain("closed");
    expect(code).toBe(0);
  });
});
