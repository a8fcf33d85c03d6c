import { afterEach, describe, expect, it, vi } from "vitest";
import { DiagError, DiagHost, summarize, type FramePort } from "../../client/diag-host.ts";
import { checkEthernetFrame } from "../../datapath/ethernet.ts";
import { checkIcmpEcho, checkIpv4Packet, IcmpEchoType } from "../../datapath/inet.ts";
import { frame, hex, mac } from "./datapath-frames.ts";

// A = 02:00:00:00:00:0a at 10.77.0.1, B = 02:00:00:00:00:0b at 10.77.0.250, the test probe = 02:00:00:00:00:0c.
const A = { mac: mac("02:00:00:00:00:0a"), ip: "10.77.0.1" };
const B = { mac: mac("02:00:00:00:00:0b"), ip: "10.77.0.250" };

/** What the wire does with a frame going from one end to the other: deliver it, drop it, or deliver other bytes. */
type WireFilter = (frame: Uint8Array, from: "a" | "b") => Uint8Array | null;

interface Wire {
  a: FramePort;
  b: FramePort;
  /** Every frame either end sent, in order, before filtering. */
  sent: { from: "a" | "b"; frame: Uint8Array }[];
}

/**
 * Two FramePorts joined back to back. Delivery is asynchronous (a microtask),
 * like a real tunnel, and each batch stays one batch.
 */
function wire(filter: WireFilter = (f) => f): Wire {
  const handlers: { a: ((frames: Uint8Array[]) => void)[]; b: ((frames: Uint8Array[]) => void)[] } = { a: [], b: [] };
  const sent: Wire["sent"] = [];
  const end = (self: "a" | "b", peer: "a" | "b"): FramePort => ({
    send(frames) {
      const delivered: Uint8Array[] = [];
      for (const f of frames) {
        sent.push({ from: self, frame: f });
        const out = filter(f, self);
        if (out !== null) delivered.push(out);
      }
      if (delivered.length > 0) queueMicrotask(() => handlers[peer].forEach((handler) => handler(delivered)));
    },
    onFrames(handler) {
      handlers[self].push(handler);
    },
  });
  return { a: end("a", "b"), b: end("b", "a"), sent };
}

/** The ICMP echo in an untagged frame, or null if it is something else. */
function echoIn(bytes: Uint8Array): { type: number; sequence: number } | null {
  const eth = checkEthernetFrame(bytes);
  if (!eth.ok || eth.value.etherType() !== 0x0800) return null;
  const ip = checkIpv4Packet(eth.value.payload());
  if (!ip.ok) return null;
  const echo = checkIcmpEcho(ip.value.payload());
  return echo.ok ? { type: echo.value.type(), sequence: echo.value.sequence() } : null;
}

function toHex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");
}

const hosts: DiagHost[] = [];
function host(port: FramePort, options: { mac: number; ip: string }): DiagHost {
  const created = new DiagHost(port, options);
  hosts.push(created);
  return created;
}

afterEach(() => {
  for (const created of hosts.splice(0)) created.close();
});

const FAST = { intervalMs: 5, timeoutMs: 200, resolve: { attempts: 3, intervalMs: 20 } };

describe("two diagnostic hosts back to back", () => {
  it("A resolves B with ARP and pings it 5 times with no loss", async () => {
    const link = wire();
    const a = host(link.a, A);
    const b = host(link.b, B);
    expect(await a.resolve(B.ip, { intervalMs: 20 })).toBe(B.mac);

    const replies: number[] = [];
    const summary = await a.ping(B.ip, {
      ...FAST,
      count: 5,
      onReply: (seq, rtt) => {
        replies.push(seq);
        expect(rtt).toBeGreaterThanOrEqual(0);
      },
    });

    expect(summary).toMatchObject({ target: "10.77.0.250", transmitted: 5, received: 5, lossPercent: 0 });
    expect(summary.rttsMs).toHaveLength(5);
    for (const rtt of summary.rttsMs) expect(rtt).toBeGreaterThanOrEqual(0);
    expect(summary.minMs).not.toBeNull();
    expect(summary.minMs as number).toBeLessThanOrEqual(summary.p50Ms as number);
    expect(summary.p50Ms as number).toBeLessThanOrEqual(summary.maxMs as number);
    expect(replies).toEqual([1, 2, 3, 4, 5]);

    expect(b.counters).toMatchObject({ arpRequestsAnswered: 1, echoRequestsAnswered: 5, framesIgnored: 0, checksumErrors: 0 });
    expect(a.counters).toMatchObject({
      arpRequestsSent: 1, arpRepliesReceived: 1, echoRequestsSent: 5, echoRepliesMatched: 5, echoRepliesUnmatched: 0, framesIgnored: 0,
    });
    // ARP frames (42 bytes of content) and small echoes are padded to the 60-byte minimum.
    expect(link.sent.length).toBe(2 + 10);
    for (const { frame: sent } of link.sent) expect(sent.length).toBeGreaterThanOrEqual(60);
    expect(link.sent[0]?.frame.length).toBe(60);
  });

  it("B pings A back without a new ARP exchange: A's request taught B its address", async () => {
    const link = wire();
    const a = host(link.a, A);
    const b = host(link.b, B);
    await a.ping(B.ip, { ...FAST, count: 1 });
    const summary = await b.ping(A.ip, { ...FAST, count: 2 });
    expect(summary.received).toBe(2);
    expect(b.counters.arpRequestsSent).toBe(0);
    expect(a.counters.echoRequestsAnswered).toBe(2);
  });

  it("counts loss exactly when the wire drops every second reply", async () => {
    const link = wire((f, from) => {
      const echo = echoIn(f);
      return from === "b" && echo?.type === IcmpEchoType.Reply && echo.sequence % 2 === 0 ? null : f;
    });
    const a = host(link.a, A);
    const b = host(link.b, B);
    const replies: number[] = [];
    const summary = await a.ping(B.ip, { ...FAST, count: 6, timeoutMs: 60, onReply: (seq) => replies.push(seq) });
    expect(summary).toMatchObject({ transmitted: 6, received: 3, lossPercent: 50 });
    expect(replies).toEqual([1, 3, 5]);
    expect(b.counters.echoRequestsAnswered).toBe(6);
  });

  it("fails resolution with a clear error when nobody has the address", async () => {
    const link = wire();
    const a = host(link.a, A);
    const b = host(link.b, B);
    const error = await a.ping("10.77.0.99", { ...FAST, count: 3, resolve: { attempts: 3, intervalMs: 10 } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DiagError);
    expect((error as DiagError).code).toBe("arp-timeout");
    expect((error as DiagError).message).toBe(
      "no ARP reply from 10.77.0.99 after 3 requests 10 ms apart: no host on the segment answers for that address",
    );
    expect(a.counters.arpRequestsSent).toBe(3);
    expect(a.counters.echoRequestsSent).toBe(0);
    // B heard the three broadcasts and answered none.
    expect(b.counters).toMatchObject({ arpRequestsAnswered: 0, framesIgnored: 3 });
  });

  it("ignores and counts echo requests whose IPv4 or ICMP checksum is bad", async () => {
    const link = wire((f, from) => {
      const echo = echoIn(f);
      if (from !== "a" || echo?.type !== IcmpEchoType.Request) return f;
      const corrupted = f.slice();
      if (echo.sequence === 1) corrupted[14 + 8] = 0x3f; // IPv4 TTL 64 → 63, header checksum left stale
      else corrupted[14 + 20 + 8] = 0xff; // first echo data byte, ICMP checksum left stale
      return corrupted;
    });
    const a = host(link.a, A);
    const b = host(link.b, B);
    const summary = await a.ping(B.ip, { ...FAST, count: 2, timeoutMs: 40 });
    expect(summary).toMatchObject({ transmitted: 2, received: 0, lossPercent: 100, rttsMs: [], minMs: null, avgMs: null, maxMs: null, p50Ms: null });
    expect(b.counters).toMatchObject({ checksumErrors: 2, framesIgnored: 2, echoRequestsAnswered: 0, arpRequestsAnswered: 1 });
  });
});

describe("one host on the wire, driven by literal frames", () => {
  /** A host B and a probe that sends raw frames to it and collects its replies. */
  function probe(): { b: DiagHost; send: (...frames: Uint8Array[]) => Promise<Uint8Array[]> } {
    const link = wire();
    const b = host(link.b, B);
    const received: Uint8Array[] = [];
    link.a.onFrames((frames) => received.push(...frames));
    return {
      b,
      send: async (...frames) => {
        link.a.send(frames);
        // One microtask to deliver, one for the reply.
        await new Promise((resolve) => setTimeout(resolve, 0));
        return received.splice(0);
      },
    };
  }

  //               destination         source              type
  const ETH_BROADCAST_FROM_A = "ff ff ff ff ff ff | 02 00 00 00 00 0a | 08 06";
  const ETH_A_FROM_B_ARP = "02 00 00 00 00 0a | 02 00 00 00 00 0b | 08 06";
  //               htype ptype hl pl oper | sender MAC        | sender IP   | target MAC        | target IP
  const WHO_HAS_250 = "00 01 08 00 06 04 00 01 | 02 00 00 00 00 0a | 0a 4d 00 01 | 00 00 00 00 00 00 | 0a 4d 00 fa";
  const WHO_HAS_251 = "00 01 08 00 06 04 00 01 | 02 00 00 00 00 0a | 0a 4d 00 01 | 00 00 00 00 00 00 | 0a 4d 00 fb";
  const IS_AT_B = "00 01 08 00 06 04 00 02 | 02 00 00 00 00 0b | 0a 4d 00 fa | 02 00 00 00 00 0a | 0a 4d 00 01";

  it("answers ARP for its own IP with a 60-byte reply, and for no other", async () => {
    const { b, send } = probe();
    const replies = await send(frame(`${ETH_BROADCAST_FROM_A} | ${WHO_HAS_251}`), frame(`${ETH_BROADCAST_FROM_A} | ${WHO_HAS_250}`));
    expect(replies.map(toHex)).toEqual([toHex(frame(`${ETH_A_FROM_B_ARP} | ${IS_AT_B}`))]);
    expect(b.counters).toMatchObject({ framesReceived: 2, arpRequestsAnswered: 1, framesIgnored: 1 });
  });

  it("answers an echo request with the literal reply: same id, sequence and data, fresh checksums", async () => {
    const { b, send } = probe();
    const request = frame(
      "02 00 00 00 00 0b | 02 00 00 00 00 0a | 08 00 |" +
        "45 00 00 24 00 01 40 00 40 01 25 44 | 0a 4d 00 01 | 0a 4d 00 fa |" +
        "08 00 54 35 12 34 00 01 | 61 62 63 64 65 66 67 68",
    );
    const expected = frame(
      "02 00 00 00 00 0a | 02 00 00 00 00 0b | 08 00 |" +
        "45 00 00 24 00 00 00 00 40 01 65 45 | 0a 4d 00 fa | 0a 4d 00 01 |" +
        "00 00 5c 35 12 34 00 01 | 61 62 63 64 65 66 67 68",
    );
    expect((await send(request)).map(toHex)).toEqual([toHex(expected)]);
    expect(b.counters.echoRequestsAnswered).toBe(1);
  });

  it("ignores, counts and never throws on frames that are not for it", async () => {
    const { b, send } = probe();
    const replies = await send(
      hex("02 00 00 00 00 0b 02 00 00 00 00 0a 08"), // runt
      frame(`02 00 00 00 00 0c | 02 00 00 00 00 0a | 08 06 | ${WHO_HAS_250}`), // another host's MAC
      frame(`01 00 5e 00 00 01 | 02 00 00 00 00 0a | 08 06 | ${WHO_HAS_250}`), // multicast
      frame(`ff ff ff ff ff ff | 02 00 00 00 00 0a | 81 00 00 2a 08 06 | ${WHO_HAS_250}`), // 802.1Q tagged
      frame(`ff ff ff ff ff ff | 02 00 00 00 00 0b | 08 06 | ${WHO_HAS_250}`), // its own MAC as source
      frame("02 00 00 00 00 0b | 02 00 00 00 00 0a | 86 dd | 60 00 00 00"), // IPv6
      hex("ff ff ff ff ff ff | 02 00 00 00 00 0a | 08 06 | 00 01 08 00 06 04 00 01"), // ARP cut after 8 bytes
      frame("02 00 00 00 00 0b | 02 00 00 00 00 0a | 08 00 | 65 00"), // IP version 6 in an IPv4 frame
      // UDP to B (protocol 17), valid header checksum 65 3d.
      frame("02 00 00 00 00 0b | 02 00 00 00 00 0a | 08 00 | 45 00 00 1c 00 00 00 00 40 11 65 3d 0a 4d 00 01 0a 4d 00 fa"),
      // An echo reply nobody asked for (the reply literal from above).
      frame(
        "02 00 00 00 00 0b | 02 00 00 00 00 0a | 08 00 | 45 00 00 24 00 00 00 00 40 01 65 45 0a 4d 00 01 0a 4d 00 fa |" +
          "00 00 5c 35 12 34 00 01 61 62 63 64 65 66 67 68",
      ),
    );
    expect(replies).toEqual([]);
    expect(b.counters).toMatchObject({ framesReceived: 10, framesIgnored: 10, echoRepliesUnmatched: 1, checksumErrors: 0, framesSent: 0 });
  });
});

describe("options, errors and close", () => {
  it("refuses bad addresses and options with typed errors", async () => {
    const link = wire();
    expect(() => new DiagHost(link.a, { mac: A.mac, ip: "10.77.0" })).toThrow(DiagError);
    expect(() => new DiagHost(link.a, { mac: mac("ff:ff:ff:ff:ff:ff"), ip: A.ip })).toThrow(/non-zero unicast/);
    const a = host(link.a, A);
    await expect(a.ping(A.ip, { ...FAST, count: 1 })).rejects.toMatchObject({ code: "own-address" });
    await expect(a.ping("10.77.0.300", { ...FAST, count: 1 })).rejects.toMatchObject({ code: "invalid-ipv4" });
    await expect(a.ping(B.ip, { ...FAST, count: 0 })).rejects.toMatchObject({ code: "invalid-option" });
    await expect(a.ping(B.ip, { ...FAST, count: 1, payloadBytes: 1473 })).rejects.toMatchObject({ code: "invalid-option" });
    await expect(a.resolve(B.ip, { attempts: 0 })).rejects.toMatchObject({ code: "invalid-option" });
  });

  it("close() rejects what is in flight with `closed` and leaves no timers", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      const link = wire();
      const a = host(link.a, A);
      host(link.b, B);
      const resolving = a.resolve("10.77.0.99", { attempts: 100, intervalMs: 10_000 });
      await a.resolve(B.ip); // the ARP exchange runs on microtasks, no timer needed
      const pinging = a.ping(B.ip, { count: 100, intervalMs: 10_000, timeoutMs: 10_000 });
      await vi.advanceTimersByTimeAsync(15_000); // two requests out, the first answered, a retry timer for .99 pending
      expect(vi.getTimerCount()).toBeGreaterThan(0);
      a.close();
      expect(vi.getTimerCount()).toBe(0);
      await expect(resolving).rejects.toMatchObject({ code: "closed" });
      await expect(pinging).rejects.toMatchObject({ code: "closed" });
      await expect(a.ping(B.ip, { ...FAST, count: 1 })).rejects.toMatchObject({ code: "closed" });
      expect(a.counters.echoRepliesMatched).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it("summarizes with nearest-rank median and null statistics without replies", () => {
    expect(summarize("10.0.0.1", 4, [4, 1, 3, 2])).toEqual({
      target: "10.0.0.1", transmitted: 4, received: 4, lossPercent: 0, rttsMs: [4, 1, 3, 2], minMs: 1, avgMs: 2.5, maxMs: 4, p50Ms: 2,
    });
    expect(summarize("10.0.0.1", 3, [])).toMatchObject({ received: 0, lossPercent: 100, minMs: null, p50Ms: null });
  });
});
