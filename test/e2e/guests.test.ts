// Real guests: Linux network stacks in namespaces this test creates, each with a
// TAP attached by the real `edgelan join`, sharing a LAN through a segment on a
// real `wrangler dev`. Needs root and /dev/net/tun (CI runs as root).
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildArpFrame, ArpOperation, parseIpv4 } from "../../datapath/inet.ts";
import { BROADCAST_MAC, parseMac } from "../../datapath/mac.ts";
import { startRelay, type RunningRelay } from "./relay-harness.ts";
import { background, commandExists, guestSkipReason, Namespaces, ping } from "./guests.ts";

const CLI = join(import.meta.dirname, "..", "..", "bin", "edgelan.mjs");
const skip = guestSkipReason();
const missingTools = ["iperf3", "dnsmasq", "busybox", "ping"].filter((tool) => !commandExists(tool));

let relay: RunningRelay;
const namespaces = new Namespaces();
let nsA: string;
let nsB: string;
let work: string;

function segmentUrl(name: string): string {
  return `${relay.wsUrl}/v1/segments/${name}/connect`;
}

function must(result: { ok: true; value: number } | { ok: false; error: { message: string } }): number {
  if (!result.ok) throw new Error(result.error.message);
  return result.value;
}

/** Runs the CLI to completion; resolves with its exit code and output. */
function cli(args: string[], timeoutMs = 30_000): Promise<{ code: number | null; output: string }> {
  const process_ = background(process.execPath, [CLI, ...args]);
  const timer = setTimeout(() => void process_.stop(), timeoutMs);
  return process_.exited.then((code) => {
    clearTimeout(timer);
    return { code, output: process_.output() };
  });
}

describe.skipIf(skip !== null || missingTools.length > 0)(
  `real guests through a segment${skip !== null ? ` (skipped: ${skip})` : missingTools.length > 0 ? ` (skipped: missing ${missingTools.join(", ")})` : ""}`,
  () => {
    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), "edgelan-guests-"));
      relay = await startRelay();
      nsA = namespaces.create("a");
      nsB = namespaces.create("b");
      namespaces.join(nsA, segmentUrl("guests"), { mac: "02:00:00:00:e1:01" });
      namespaces.join(nsB, segmentUrl("guests"), { mac: "02:00:00:00:e1:02" });
      await namespaces.address(nsA, "elt0", "10.235.0.1/24");
      await namespaces.address(nsB, "elt0", "10.235.0.2/24");
    });

    afterAll(async () => {
      await namespaces.cleanup();
      await relay?.stop();
      if (relay !== undefined) rmSync(relay.stateDir, { recursive: true, force: true });
      if (work !== undefined) rmSync(work, { recursive: true, force: true });
    });

    it("pings both ways between two TAP namespaces", async () => {
      expect(await namespaces.reachable(nsA, "10.235.0.2", 20_000)).toBe(true);
      expect(ping(namespaces, nsA, "10.235.0.2", 5).received).toBe(5);
      expect(ping(namespaces, nsB, "10.235.0.1", 5).received).toBe(5);
    });

    it("carries an iperf3 TCP run of a few seconds", async () => {
      const report = await namespaces.iperf(nsA, "10.235.0.1", nsB, 3);
      expect(report?.error).toBeUndefined();
      expect(report?.end?.sum_received?.bytes).toBeGreaterThan(1_000_000);
      expect(report?.end?.sum_received?.bits_per_second).toBeGreaterThan(0);
    });

    it("leases an address from dnsmasq in one namespace to a DHCP client in the other (the broadcast path)", async () => {
      const nsServer = namespaces.create("dhcps");
      const nsClient = namespaces.create("dhcpc");
      namespaces.join(nsServer, segmentUrl("dhcp"), { mac: "02:00:00:00:e2:01" });
      namespaces.join(nsClient, segmentUrl("dhcp"), { mac: "02:00:00:00:e2:02", extra: [] });
      await namespaces.address(nsServer, "elt0", "10.236.0.1/24");
      await namespaces.address(nsClient, "elt0", "127.1.2.3/32"); // the link must be up; the DHCP lease adds the real address
      const leases = join(work, "leases");
      const dnsmasq = namespaces.spawn(nsServer, "dnsmasq", [
        "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=elt0", "--bind-interfaces", "--user=root",
        "--dhcp-range=10.236.0.50,10.236.0.60,255.255.255.0,1h", `--dhcp-leasefile=${leases}`, `--pid-file=${join(work, "dnsmasq.pid")}`,
      ]);
      const events = join(work, "udhcpc-events");
      const script = join(work, "udhcpc.sh");
      // Only configures the interface inside the namespace: nothing on the host (no resolv.conf) is touched.
      writeFileSync(script, `#!/bin/sh\necho "$1 $ip" >> ${events}\n[ "$1" = bound ] && ip addr add "$ip/24" dev "$interface"\nexit 0\n`);
      chmodSync(script, 0o755);
      namespaces.exec(nsClient, "busybox", ["udhcpc", "-i", "elt0", "-n", "-q", "-f", "-t", "8", "-T", "2", "-s", script], 60_000);
      await dnsmasq.stop();
      expect(readFileSync(events, "utf8")).toMatch(/bound 10\.236\.0\.(5\d|60)/);
      expect(namespaces.exec(nsClient, "ip", ["-4", "addr", "show", "dev", "elt0"])).toMatch(/10\.236\.0\.(5\d|60)\/24/);
      expect(readFileSync(leases, "utf8")).toMatch(/02:00:00:00:e2:02 10\.236\.0\./);
    });

    it("isolates segments: a namespace on another segment reaches neither", async () => {
      const nsC = namespaces.create("c");
      namespaces.join(nsC, segmentUrl("guests-other"), { mac: "02:00:00:00:e1:03" });
      await namespaces.address(nsC, "elt0", "10.235.0.3/24");
      expect(ping(namespaces, nsC, "10.235.0.1", 3).received).toBe(0);
      expect(ping(namespaces, nsC, "10.235.0.2", 3).received).toBe(0);
      expect(ping(namespaces, nsA, "10.235.0.3", 3).received).toBe(0);
      // The two members of "guests" still reach each other.
      expect(ping(namespaces, nsA, "10.235.0.2", 2).received).toBe(2);
    });

    it("edgelan ping answers ARP, pings a TAP host and exits 0; an absent host exits non-zero with a clear message", async () => {
      const ok = await cli(["ping", segmentUrl("guests"), "10.235.0.1", "--count", "3", "--interval", "200", "--source-ip", "10.235.0.77"]);
      expect(ok.output).toMatch(/3 packets transmitted, 3 received, 0% packet loss/);
      expect(ok.code).toBe(0);
      const absent = await cli(["ping", segmentUrl("guests"), "10.235.0.99", "--count", "2", "--interval", "100", "--source-ip", "10.235.0.78"]);
      expect(absent.code).toBe(1);
      expect(absent.output).toMatch(/no ARP reply from 10\.235\.0\.99/);
    });

    it("cables a VDE stream (2-byte lengths on stdio) into the segment with edgelan pipe", async () => {
      const child = spawn(process.execPath, [CLI, "pipe", segmentUrl("guests")], { stdio: ["pipe", "pipe", "pipe"] });
      const received: Buffer[] = [];
      child.stdout.on("data", (chunk: Buffer) => received.push(chunk));
      const ourMac = must(parseMac("02:00:00:00:e1:77"));
      const request = buildArpFrame({ destination: BROADCAST_MAC, source: ourMac }, {
        operation: ArpOperation.Request, senderMac: ourMac, senderIp: must(parseIpv4("10.235.0.77")), targetMac: 0, targetIp: must(parseIpv4("10.235.0.1")),
      });
      const framed = Buffer.alloc(2 + request.length);
      framed.writeUInt16BE(request.length, 0);
      framed.set(request, 2);
      const deadline = Date.now() + 20_000;
      let reply: Buffer | undefined;
      while (reply === undefined && Date.now() < deadline) {
        child.stdin.write(framed);
        await new Promise((resolve) => setTimeout(resolve, 500));
        reply = findArpReply(Buffer.concat(received));
      }
      child.kill("SIGTERM");
      expect(reply).toBeDefined();
      // The reply comes from namespace A's TAP MAC and is addressed to the cable's MAC.
      expect(reply?.subarray(6, 12).toString("hex")).toBe("02000000e101");
      expect(reply?.subarray(0, 6).toString("hex")).toBe("02000000e177");
    });

    it("survives a relay restart mid-ping: the agents reconnect, resume and ping goes on", async () => {
      expect(ping(namespaces, nsA, "10.235.0.2", 2).received).toBe(2);
      const pinger = namespaces.spawn(nsA, "ping", ["-D", "-n", "-i", "0.2", "-W", "1", "-c", "150", "10.235.0.2"]);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const { port, stateDir } = relay;
      const killedAt = Date.now() / 1000;
      await relay.stop({ keepState: true });
      const downUntil = Date.now() / 1000;
      relay = await startRelay({ port, stateDir });
      expect(await namespaces.reachable(nsB, "10.235.0.1", 45_000)).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      await pinger.stop("SIGINT");
      // -D prefixes each reply with its Unix time: there must be replies before the kill and after the relay was back.
      const replyTimes = [...pinger.output().matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map((m) => Number(m[1]));
      const diagnostics = `ping output:\n${pinger.output()}`;
      expect(replyTimes.filter((t) => t < killedAt).length, diagnostics).toBeGreaterThan(2);
      expect(replyTimes.filter((t) => t > downUntil).length, diagnostics).toBeGreaterThan(2);
      const described = (await (await fetch(`${relay.baseUrl}/v1/segments/guests`)).json()) as { ports: Array<{ macs: string[] }>; counters: { sessionsResumed: number } };
      expect(described.ports.flatMap((p) => p.macs)).toEqual(expect.arrayContaining(["02:00:00:00:e1:01", "02:00:00:00:e1:02"]));
      expect(described.counters.sessionsResumed).toBeGreaterThanOrEqual(1);
    });
  },
);

/** The first ARP reply in a 2-byte-length framed stream, if any. */
function findArpReply(stream: Buffer): Buffer | undefined {
  for (let offset = 0; offset + 2 <= stream.length; ) {
    const length = stream.readUInt16BE(offset);
    const frame = stream.subarray(offset + 2, offset + 2 + length);
    if (frame.length < length) return undefined;
    if (frame.length >= 42 && frame.readUInt16BE(12) === 0x0806 && frame.readUInt16BE(20) === 2) return frame;
    offset += 2 + length;
  }
  return undefined;
}
