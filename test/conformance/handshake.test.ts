// docs/protocol.md §5 (session records) and §11.1 (state machine, negotiation), against the real segment.
import { describe, expect, it } from "vitest";
import { ALL_FEATURES, createSegment, F, frame, hello, joinToken, mac, Peer, Status } from "./peer.ts";

const SEGMENT = "handshake";
await createSegment(SEGMENT, { maxFrameSize: 9000, rxQueueBytes: 1 << 20 });

/** The REFUSE and close of a HELLO the segment must refuse. */
async function refused(overrides: Parameters<typeof hello>[0], query = ""): Promise<{ refuse: { code: number; reason: string }; close: number }> {
  const peer = await Peer.open(SEGMENT, { query });
  peer.send([hello(overrides)]);
  const refuse = await peer.next("refuse");
  const close = (await peer.closedWith()).code;
  return { refuse, close };
}

describe("§11.1 the first message", () => {
  it("§11.1 a first message that does not start with HELLO closes with 4002", async () => {
    const peer = await Peer.open(SEGMENT);
    peer.send([{ type: "ping", seq: 1, timestamp: 0 }]);
    expect((await peer.closedWith()).code).toBe(4002);
  });

  it("§11.1 a TX record in the HELLO's message is an unexpected record: close 4006", async () => {
    const peer = await Peer.open(SEGMENT);
    peer.send([hello({ macs: [mac(0x101)] }), { type: "tx", id: 0, flags: 0, frame: frame(mac(0x102), mac(0x101)) }]);
    expect((await peer.closedWith()).code).toBe(4006);
  });

  it("§11.1 a second HELLO is an unexpected record: close 4006", async () => {
    const { peer } = await Peer.join(SEGMENT);
    peer.send([hello()]);
    expect((await peer.closedWith()).code).toBe(4006);
  });

  it("§11.1 a record in the wrong direction (an rx from the client) is an unexpected record: close 4006", async () => {
    const { peer } = await Peer.join(SEGMENT);
    peer.send([{ type: "rx", flags: 0, frame: frame(mac(1), mac(2)) }]);
    expect((await peer.closedWith()).code).toBe(4006);
  });

  it("§11.1 rx-post and control records after the HELLO in the first message are applied, their answers after the WELCOME", async () => {
    const peer = await Peer.open(SEGMENT);
    peer.send([
      hello({ macs: [mac(0x110)] }),
      { type: "rx-post", count: 4, bufferSize: 1518 },
      { type: "add-mac", seq: 7, mac: mac(0x111) },
    ]);
    await peer.next("ack");
    const types = peer.messages.flatMap((m) => m.records ?? []).map((r) => r.type);
    expect(types.indexOf("welcome")).toBeLessThan(types.indexOf("ack"));
    // The credits were applied: a frame to the port is delivered at once.
    const { peer: sender } = await Peer.join(SEGMENT, { macs: [mac(0x112)] });
    sender.send([{ type: "tx", id: 0, flags: 0, frame: frame(mac(0x111), mac(0x112), 5) }]);
    expect((await peer.next("rx")).frame[14]).toBe(5);
    peer.close();
    sender.close();
  });

  it("§11.1 a port that never sends a HELLO is closed with 4002, no earlier than 10 s after it connected", async () => {
    const opened = Date.now();
    const peer = await Peer.open(SEGMENT);
    const closed = await peer.closedWith(40_000);
    expect(closed.code).toBe(4002);
    // The deadline is 10 s; the segment's alarm enforces it, so it may fire somewhat later, never sooner.
    expect(Date.now() - opened).toBeGreaterThanOrEqual(10_000 - 50);
  });
});

describe("§11.1 negotiation", () => {
  it("§11.1 version: the highest version both ranges share (1 of 1..3)", async () => {
    const { peer, welcome } = await Peer.join(SEGMENT, { minVersion: 1, maxVersion: 3 });
    expect(welcome.version).toBe(1);
    peer.close();
  });

  it("§11.1 version: no common version is REFUSE 4001, then close 4001", async () => {
    const { refuse, close } = await refused({ minVersion: 2, maxVersion: 3 });
    expect(refuse.code).toBe(4001);
    expect(close).toBe(4001);
  });

  it("§11.1 version: an inverted range (minVersion > maxVersion) is REFUSE 4001", async () => {
    const { refuse, close } = await refused({ minVersion: 1, maxVersion: 0 });
    expect([refuse.code, close]).toEqual([4001, 4001]);
    const again = await refused({ minVersion: 2, maxVersion: 1 });
    expect([again.refuse.code, again.close]).toEqual([4001, 4001]);
  });

  it("§10 features: every known bit offered is granted (offered ∩ supported = all ten), unknown bits are ignored", async () => {
    const { peer, welcome } = await Peer.join(SEGMENT, { features: 0xffff_ffff });
    expect(welcome.features).toBe(ALL_FEATURES);
    peer.close();
  });

  it("§10 features: the grant is a subset of the offer", async () => {
    const offered = F.Coalesced | F.Stats | F.Lazy;
    const { peer, welcome } = await Peer.join(SEGMENT, { features: offered });
    expect(welcome.features).toBe(offered);
    peer.close();
  });

  it("§11.1 txWindow: 0 asks for the default, 256", async () => {
    const { peer, welcome } = await Peer.join(SEGMENT, { txWindow: 0 });
    expect(welcome.txWindow).toBe(256);
    peer.close();
  });

  it("§11.1 txWindow: the largest power of two ≤ the wanted window (100 → 64)", async () => {
    const { peer, welcome } = await Peer.join(SEGMENT, { txWindow: 100 });
    expect(welcome.txWindow).toBe(64);
    peer.close();
  });

  it("§11.1 txWindow: capped at the segment limit, 1024", async () => {
    const { peer, welcome } = await Peer.join(SEGMENT, { txWindow: 32768 });
    expect(welcome.txWindow).toBe(1024);
    peer.close();
  });

  it("§11.1 rxQueue: 0 unless RxQueue is granted, else ≤ the wanted value", async () => {
    const without = await Peer.join(SEGMENT, { rxQueue: 100 });
    expect(without.welcome.rxQueue).toBe(0);
    const granted = await Peer.join(SEGMENT, { features: F.RxQueue, rxQueue: 100 });
    expect(granted.welcome.rxQueue).toBeGreaterThan(0);
    expect(granted.welcome.rxQueue).toBeLessThanOrEqual(100);
    without.peer.close();
    granted.peer.close();
  });

  it("§5.3/§11.1 a MAC that is not usable unicast (group bit) is REFUSE 4013", async () => {
    const { refuse, close } = await refused({ macs: [0x01_00_5e_00_00_01] });
    expect([refuse.code, close]).toEqual([4013, 4013]);
  });

  it("§5.3/§11.1 the zero MAC is REFUSE 4013", async () => {
    const { refuse } = await refused({ macs: [0] });
    expect(refuse.code).toBe(4013);
  });

  it("§5.3/§11.1 a MAC owned by another port is REFUSE 4009", async () => {
    const { peer } = await Peer.join(SEGMENT, { macs: [mac(0x120)] });
    const { refuse, close } = await refused({ macs: [mac(0x120)] });
    expect([refuse.code, close]).toEqual([4009, 4009]);
    expect(refuse.reason).toContain("02:00:00:00:01:20");
    peer.close();
  });

  it("§11.1 the same MAC twice in one HELLO is accepted and owned once: frames to it arrive once", async () => {
    const { peer, welcome } = await Peer.join(SEGMENT, { macs: [mac(0x125), mac(0x125)] });
    expect(new Set(welcome.macs)).toEqual(new Set([mac(0x125)]));
    await peer.post(4);
    const { peer: sender } = await Peer.join(SEGMENT, { macs: [mac(0x126)] });
    sender.send([{ type: "tx", id: 0, flags: 0, frame: frame(mac(0x125), mac(0x126), 1) }, { type: "tx", id: 1, flags: 0, frame: frame(mac(0x125), mac(0x126), 2) }]);
    await sender.completions(2);
    expect((await peer.collect("rx", 2)).map((r) => r.frame[14])).toEqual([1, 2]);
    peer.send([{ type: "ping", seq: 1, timestamp: 0 }]);
    await peer.next("pong");
    expect(peer.take("rx")).toEqual([]);
    peer.close();
    sender.close();
  });

  it("§11.1 a MAC the join token does not allow is REFUSE 4008", async () => {
    const token = await joinToken(SEGMENT, "member", ["02:00:00:00:01:30"]);
    const peer = await Peer.open(SEGMENT, { token });
    peer.send([hello({ macs: [mac(0x131)] })]);
    expect((await peer.next("refuse")).code).toBe(4008);
    expect((await peer.closedWith()).code).toBe(4008);
  });

  it("§11.1 a member that asks for no MAC is assigned a random locally administered unicast MAC", async () => {
    const { peer, welcome } = await Peer.join(SEGMENT, { macs: [] });
    expect(welcome.macs).toHaveLength(1);
    const first = Math.floor((welcome.macs[0] as number) / 2 ** 40);
    expect(first & 0x01).toBe(0); // unicast
    expect(first & 0x02).toBe(2); // locally administered
    peer.close();
  });

  it("§5.1 a HELLO for another port kind than the join was authorized for is REFUSE 4008", async () => {
    const { refuse } = await refused({ portKind: "bridge" });
    expect(refuse.code).toBe(4008);
  });

  it("§11.1 a monitor that asks for a MAC is REFUSE 4008", async () => {
    const token = await joinToken(SEGMENT, "monitor");
    const peer = await Peer.open(SEGMENT, { token, query: "?kind=monitor" });
    peer.send([hello({ portKind: "monitor", macs: [mac(0x150)] })]);
    expect((await peer.next("refuse")).code).toBe(4008);
    expect((await peer.closedWith()).code).toBe(4008);
  });

  it("§5.2 a monitor port owns no MACs", async () => {
    const token = await joinToken(SEGMENT, "monitor");
    const { peer, welcome } = await Peer.join(SEGMENT, { portKind: "monitor" }, { token, query: "?kind=monitor" });
    expect(welcome.macs).toEqual([]);
    peer.close();
  });

  it("§5.2 WELCOME carries a 16-byte session id, and a resume token only when Resume was granted", async () => {
    const plain = await Peer.join(SEGMENT);
    expect(plain.welcome.sessionId).toHaveLength(16);
    expect(plain.welcome.resumeToken).toHaveLength(0);
    const resumable = await Peer.join(SEGMENT, { features: F.Resume });
    expect(resumable.welcome.resumeToken.length).toBeGreaterThan(0);
    expect(resumable.welcome.resumeToken.length).toBeLessThanOrEqual(64);
    plain.peer.close();
    resumable.peer.close();
  });

  it("§5.4 a client BYE closes the socket with 1000", async () => {
    const { peer } = await Peer.join(SEGMENT);
    peer.send([{ type: "bye", code: 1000, reason: "leaving" }]);
    expect((await peer.closedWith()).code).toBe(1000);
  });

  it("§5.1 a member may send only from its MACs: another source is spoofed-source", async () => {
    const { peer } = await Peer.join(SEGMENT, { macs: [mac(0x140)], features: F.Coalesced });
    const { peer: other } = await Peer.join(SEGMENT, { macs: [mac(0x141)] });
    await other.post(4);
    peer.send([{ type: "tx", id: 0, flags: 0, frame: frame(mac(0x141), mac(0x142)) }]);
    expect((await peer.completions(1))[0]?.status).toBe(Status.SpoofedSource);
    peer.close();
    other.close();
  });
});
