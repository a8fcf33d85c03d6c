// docs/protocol.md §8 (control records: filters, MACs, acks, stats, ping/pong, link), against the real segment.
import { describe, expect, it } from "vitest";
import { exports } from "cloudflare:workers";
import { Ack, ADMIN, BASE, BROADCAST, freshSegment, F, frame, joinToken, mac, Peer, Status } from "./peer.ts";



/** Sender A (0x01) and receiver B (0x02, 16 credits, `features`) on a fresh segment. */
async function pair(bFeatures = 0): Promise<{ segment: string; a: Peer; b: Peer }> {
  const segment = await freshSegment();
  const { peer: a } = await Peer.join(segment, { macs: [mac(1)], features: F.Coalesced });
  const { peer: b } = await Peer.join(segment, { macs: [mac(2)], features: bFeatures });
  await b.post(16);
  await b.settle();
  return { segment, a, b };
}

/** Sends `frames` from A in one message, waits for the completions, then settles B; returns the markers B received. */
async function deliveredMarkers(a: Peer, b: Peer, frames: Uint8Array[]): Promise<number[]> {
  a.send(frames.map((f, i) => ({ type: "tx", id: i, flags: 0, frame: f })));
  await a.completions(frames.length);
  await b.settle();
  return b.take("rx").map((r) => r.frame[14] as number);
}

const MULTICAST_A = 0x01_00_5e_00_00_0a;
const MULTICAST_B = 0x01_00_5e_00_00_0b;

describe("§8.1 set-filter", () => {
  it("§8.1 a fresh port gets broadcast and its own unicast only: no multicast, no unknown unicast", async () => {
    const { a, b } = await pair();
    const frames = [frame(BROADCAST, mac(1), 1), frame(mac(2), mac(1), 2), frame(MULTICAST_A, mac(1), 3), frame(mac(9), mac(1), 4)];
    expect(await deliveredMarkers(a, b, frames)).toEqual([1, 2]);
    a.close();
    b.close();
  });

  it("§8.1 allMulticast receives every multicast frame; a list receives only its groups", async () => {
    const { a, b } = await pair();
    b.send([{ type: "set-filter", seq: 1, promiscuous: false, allMulticast: true, multicast: [] }]);
    expect(await b.next("ack")).toMatchObject({ seq: 1, status: Ack.Ok });
    expect(await deliveredMarkers(a, b, [frame(MULTICAST_A, mac(1), 1), frame(MULTICAST_B, mac(1), 2)])).toEqual([1, 2]);
    b.send([{ type: "set-filter", seq: 2, promiscuous: false, allMulticast: false, multicast: [MULTICAST_B] }]);
    expect(await b.next("ack")).toMatchObject({ seq: 2, status: Ack.Ok });
    expect(await deliveredMarkers(a, b, [frame(MULTICAST_A, mac(1), 3), frame(MULTICAST_B, mac(1), 4)])).toEqual([4]);
    a.close();
    b.close();
  });

  it("§8.1 a promiscuous port receives unknown unicast", async () => {
    const { a, b } = await pair();
    b.send([{ type: "set-filter", seq: 1, promiscuous: true, allMulticast: false, multicast: [] }]);
    await b.next("ack");
    expect(await deliveredMarkers(a, b, [frame(mac(9), mac(1), 5)])).toEqual([5]);
    a.close();
    b.close();
  });

  it("§8 each request gets exactly one answer with its seq, in request order", async () => {
    const { a, b } = await pair(F.Stats);
    b.send([
      { type: "set-filter", seq: 10, promiscuous: false, allMulticast: true, multicast: [] },
      { type: "stats-request", seq: 11 },
      { type: "add-mac", seq: 12, mac: mac(0x22) },
      { type: "ping", seq: 13, timestamp: 0 },
      { type: "remove-mac", seq: 14, mac: mac(0x22) },
    ]);
    await b.next("ack");
    await b.until(() => (b.records.filter((r) => "seq" in r).length >= 4 ? true : undefined), "four more answers");
    expect(b.records.filter((r) => "seq" in r).map((r) => [r.type, (r as { seq: number }).seq])).toEqual([
      ["stats-reply", 11], ["ack", 12], ["pong", 13], ["ack", 14],
    ]);
    a.close();
    b.close();
  });
});

describe("§8.2 add-mac and remove-mac", () => {
  it("§8.2 add-mac registers a MAC: frames to it are delivered; remove-mac gives it up", async () => {
    const { a, b } = await pair();
    b.send([{ type: "add-mac", seq: 1, mac: mac(0x20) }]);
    expect(await b.next("ack")).toMatchObject({ seq: 1, status: Ack.Ok });
    expect(await deliveredMarkers(a, b, [frame(mac(0x20), mac(1), 1)])).toEqual([1]);
    b.send([{ type: "remove-mac", seq: 2, mac: mac(0x20) }]);
    expect(await b.next("ack")).toMatchObject({ seq: 2, status: Ack.Ok });
    expect(await deliveredMarkers(a, b, [frame(mac(0x20), mac(1), 2)])).toEqual([]);
    a.close();
    b.close();
  });

  it("§8.3 refusals: invalid-mac (1), mac-taken (2), unknown-mac (4); a refused request changes nothing and the port stays open", async () => {
    const { a, b } = await pair();
    b.send([
      { type: "add-mac", seq: 1, mac: MULTICAST_A },
      { type: "add-mac", seq: 2, mac: mac(1) },
      { type: "remove-mac", seq: 3, mac: mac(0x33) },
    ]);
    const acks = await b.collect("ack", 3);
    expect(acks.map((r) => [r.seq, r.status])).toEqual([[1, Ack.InvalidMac], [2, Ack.MacTaken], [3, Ack.UnknownMac]]);
    // mac(1) still belongs to A: A may send from it.
    expect(await deliveredMarkers(a, b, [frame(mac(2), mac(1), 9)])).toEqual([9]);
    expect(b.closed).toBeUndefined();
    a.close();
    b.close();
  });

  it("§8.3 too-many-macs (3): a port owns at most 16 MACs", async () => {
    const { a, b } = await pair();
    b.send(Array.from({ length: 16 }, (_, i) => ({ type: "add-mac" as const, seq: i, mac: mac(0x100 + i) })));
    const acks = await b.collect("ack", 16);
    expect(acks.map((r) => r.status)).toEqual([...new Array(15).fill(Ack.Ok), Ack.TooManyMacs]);
    a.close();
    b.close();
  });

  it("§8.3 not-permitted (6): a monitor port cannot own MACs", async () => {
    const segment = await freshSegment();
    const token = await joinToken(segment, "monitor");
    const { peer } = await Peer.join(segment, { portKind: "monitor" }, { token, query: "?kind=monitor" });
    peer.send([{ type: "add-mac", seq: 1, mac: mac(5) }]);
    expect(await peer.next("ack")).toMatchObject({ seq: 1, status: Ack.NotPermitted });
    peer.close();
  });
});

describe("§8.4 stats", () => {
  it("§8.4 with Stats a stats-request is answered with a stats-reply: rxFrames = forwarded + ingress drops", async () => {
    const segment = await freshSegment();
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)], features: F.Stats | F.Coalesced });
    const { peer: b } = await Peer.join(segment, { macs: [mac(2)] });
    await b.post(8);
    a.send([
      { type: "tx", id: 0, flags: 0, frame: frame(mac(2), mac(1)) },
      { type: "tx", id: 1, flags: 0, frame: frame(mac(2), mac(9)) },
      { type: "tx", id: 2, flags: 0, frame: new Uint8Array(8) },
    ]);
    await a.completions(3);
    a.send([{ type: "stats-request", seq: 4 }]);
    const reply = await a.next("stats-reply");
    expect(reply.seq).toBe(4);
    expect(reply.counters.rxFrames).toBe(3);
    expect(reply.counters.drops[Status.SpoofedSource]).toBe(1);
    expect(reply.counters.drops[Status.Runt]).toBe(1);
    expect(reply.counters.drops[0] ?? 0).toBe(0);
    expect(reply.counters.drops.length).toBeLessThanOrEqual(64);
    a.close();
    b.close();
  });

  it("§8.4 tx counts frames delivered to the port, not frames queued for it", async () => {
    const segment = await freshSegment();
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)], features: F.Coalesced });
    const { peer: b } = await Peer.join(segment, { macs: [mac(2)], features: F.Stats | F.RxQueue, rxQueue: 8 });
    a.send([0, 1, 2].map((id) => ({ type: "tx", id, flags: 0, frame: frame(mac(2), mac(1), id) })));
    await a.completions(3);
    b.send([{ type: "stats-request", seq: 1 }]);
    const queued = await b.next("stats-reply");
    expect([queued.queuedFrames, queued.counters.txFrames]).toEqual([3, 0]);
    await b.post(8);
    await b.collect("rx", 3);
    b.send([{ type: "stats-request", seq: 2 }]);
    const delivered = await b.next("stats-reply");
    expect([delivered.queuedFrames, delivered.counters.txFrames, delivered.counters.txBytes]).toEqual([0, 3, 3 * 64]);
    a.close();
    b.close();
  });

  it("§8.4 without Stats a stats-request gets an ack with status 7 (not-negotiated)", async () => {
    const segment = await freshSegment();
    const { peer } = await Peer.join(segment, { features: 0 });
    peer.send([{ type: "stats-request", seq: 3 }]);
    await peer.until(() => peer.records.find((r) => r.type === "ack" || r.type === "stats-reply"), "an answer");
    expect(peer.take("stats-reply")).toEqual([]);
    expect(await peer.next("ack")).toMatchObject({ seq: 3, status: Ack.NotNegotiated });
    peer.close();
  });
});

describe("§8.5 ping and pong", () => {
  it("§8.5 a ping is answered with a pong echoing seq and timestamp", async () => {
    const segment = await freshSegment();
    const { peer } = await Peer.join(segment);
    peer.send([{ type: "ping", seq: 0xfffffffe, timestamp: 1767225600000.5 }]);
    expect(await peer.next("pong")).toEqual({ type: "pong", seq: 0xfffffffe, timestamp: 1767225600000.5 });
    peer.close();
  });

  it("§8.5 the segment sends no PING to a port that received less than 1 MiB: a port idle for 3 s receives nothing", async () => {
    const segment = await freshSegment();
    const { peer } = await Peer.join(segment, { features: 0x1ff });
    const before = peer.messages.length;
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(peer.messages.slice(before)).toEqual([]);
    peer.close();
  });

  /** 1,514-byte frames a port receives before 4 MiB are unacknowledged. */
  const LIMIT_FRAMES = Math.ceil((4 * 1024 * 1024) / 1514);

  /** A sender and a receiver with room for 4,000 frames; `frames` RX frames of 1,514 bytes sent to the receiver, 64 per message. */
  async function readAckPair(): Promise<{ sender: Peer; receiver: Peer; flood(frames: number): Promise<void> }> {
    const segment = await freshSegment({ rxQueueFrames: 8 });
    const { peer: receiver } = await Peer.join(segment, { macs: [mac(0x851)], features: F.Coalesced | F.RxQueue, rxQueue: 8, txWindow: 64 });
    await receiver.post(4000, 1514);
    const { peer: sender } = await Peer.join(segment, { macs: [mac(0x852)], features: F.Coalesced, txWindow: 64 });
    let id = 0;
    const flood = async (frames: number): Promise<void> => {
      for (let sent = 0; sent < frames; sent += 64) {
        const batch = Array.from({ length: Math.min(64, frames - sent) }, () => ({ type: "tx" as const, id: id++ & 0xffff, flags: 0, frame: frame(mac(0x851), mac(0x852), 0, 1514) }));
        sender.send(batch);
        await sender.completions(batch.length);
      }
    };
    return { sender, receiver, flood };
  }

  it("§8.5 past 1 MiB of unacknowledged RX the segment sends a PING, after the RX it covers", async () => {
    const { receiver, flood } = await readAckPair();
    await flood(700);
    const ping = await receiver.next("ping");
    expect(ping.seq).toBeGreaterThan(0);
    const rxBeforePing = receiver.messages.flatMap((m) => m.records ?? []).findIndex((r) => r.type === "ping");
    expect(receiver.messages.flatMap((m) => m.records ?? []).slice(0, rxBeforePing).filter((r) => r.type === "rx").length * 1514).toBeGreaterThanOrEqual(1024 * 1024);
  });

  it("§8.5 a port that never answers the segment's PING stops receiving past 4 MiB (queue, then rx-queue-full)", async () => {
    const { receiver, flood } = await readAckPair();
    await flood(LIMIT_FRAMES + 40);
    await receiver.settle();
    expect(receiver.take("rx")).toHaveLength(LIMIT_FRAMES);
    expect(receiver.take("ping")).toHaveLength(1);
  });

  it("§8.5 a port that answers each PING keeps receiving: the pong releases the queued frames", async () => {
    const { receiver, flood } = await readAckPair();
    await flood(LIMIT_FRAMES + 8);
    await receiver.settle();
    expect(receiver.take("rx")).toHaveLength(LIMIT_FRAMES);
    const ping = await receiver.next("ping");
    receiver.send([{ type: "pong", seq: ping.seq, timestamp: ping.timestamp }]);
    expect(await receiver.collect("rx", 8)).toHaveLength(8);
    await flood(10);
    expect(await receiver.collect("rx", 10)).toHaveLength(10);
  });
});

describe("§8.6 link", () => {
  /** The LINK records of the messages a peer received, read by hand with the §8.6 layout: bool up at 0, reserved u8 at 1, str at 2. */
  function linkRecords(peer: Peer): Array<{ up: number; reserved: number; reason: string }> {
    const found: Array<{ up: number; reserved: number; reason: string }> = [];
    for (const { bytes } of peer.messages) {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      let at = 8;
      for (let i = 0; i < view.getUint16(4, true); i++) {
        const type = bytes[at] as number;
        const length = view.getUint32(at + 2, true);
        const body = bytes.subarray(at + 6, at + 6 + length);
        if (type === 0x28) {
          const reasonLength = body[2] as number;
          expect(length).toBe(3 + reasonLength);
          found.push({ up: body[0] as number, reserved: body[1] as number, reason: new TextDecoder().decode(body.subarray(3, 3 + reasonLength)) });
        }
        at += 6 + length;
      }
    }
    return found;
  }

  it("§8.6 a deleted segment sends LINK down (up at offset 0, reason at offset 2) to a port with LinkNotices, then closes 4010", async () => {
    const segment = await freshSegment();
    const { peer } = await Peer.join(segment, { features: F.LinkNotices });
    const response = await exports.default.fetch(`${BASE}/v1/segments/${segment}`, { method: "DELETE", headers: ADMIN });
    expect(response.status).toBe(200);
    expect((await peer.closedWith()).code).toBe(4010);
    expect(linkRecords(peer)).toEqual([{ up: 0, reserved: 0, reason: "segment deleted" }]);
  });

  it("§8.6 LINK is sent only to ports that negotiated LinkNotices", async () => {
    const segment = await freshSegment();
    const { peer } = await Peer.join(segment, { features: F.Coalesced | F.Stats });
    await exports.default.fetch(`${BASE}/v1/segments/${segment}`, { method: "DELETE", headers: ADMIN });
    expect((await peer.closedWith()).code).toBe(4010);
    const types = peer.messages.flatMap(({ bytes }) => [bytes[8]]);
    expect(types.slice(1)).not.toContain(0x28);
    expect(linkRecords(peer)).toEqual([]);
  });
});
