// End-to-end: the real `wrangler dev` with real `ws` clients in descriptor and
// raw mode, on the same segment and on different segments.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { DropReason } from "../../datapath/counters.ts";
import { formatMac, macKeyAt, parseMac } from "../../datapath/mac.ts";
import { CloseCode } from "../../datapath/tunnel/close-codes.ts";
import { KEEPALIVE_REQUEST, KEEPALIVE_RESPONSE } from "../../datapath/tunnel/constants.ts";
import { startRelay, type RunningRelay } from "./relay-harness.ts";
import { UpgradeRefused, WireClient } from "./wire-client.ts";

const ADMIN = "e2e-admin-token";
let relay: RunningRelay;

function mac(text: string): number {
  const parsed = parseMac(text);
  if (!parsed.ok) throw new Error(parsed.error.message);
  return parsed.value;
}

/** An Ethernet frame: destination, source, EtherType 0x88b5 (local experimental), `size` bytes in all, tagged by `marker`. */
function frame(dst: string, src: string, size = 64, marker = 0): Uint8Array {
  const bytes = new Uint8Array(size);
  const d = mac(dst);
  const s = mac(src);
  for (let i = 0; i < 6; i++) {
    bytes[i] = Math.floor(d / 2 ** (8 * (5 - i))) % 256;
    bytes[6 + i] = Math.floor(s / 2 ** (8 * (5 - i))) % 256;
  }
  bytes[12] = 0x88;
  bytes[13] = 0xb5;
  bytes[14] = marker & 0xff;
  return bytes;
}

async function admin(method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${relay.baseUrl}${path}`, {
    method, headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function createSegment(name: string, config: Record<string, unknown> = {}): Promise<string> {
  const response = await admin("PUT", `/v1/segments/${name}`, { openJoin: true, ...config });
  expect(response.status).toBe(201);
  return `${relay.wsUrl}/v1/segments/${name}/connect`;
}

async function mintToken(segment: string, role: string, macs?: string[]): Promise<string> {
  const response = await admin("POST", `/v1/segments/${segment}/tokens`, { role, ttlSeconds: 600, macs });
  expect(response.status).toBe(201);
  return ((await response.json()) as { token: string }).token;
}

/** Joins with credits posted so frames are delivered at once. */
async function member(url: string, macText: string, credits = 64, extra: Record<string, unknown> = {}): Promise<WireClient> {
  const { client } = await WireClient.join(url, { macs: [mac(macText)], ...extra });
  if (credits > 0) client.send([{ type: "rx-post", count: credits, bufferSize: 2048 }]);
  return client;
}

/** Waits until `client` has received `count` RX frames (and returns them), taking them. */
async function rxFrames(client: WireClient, count: number): Promise<Uint8Array[]> {
  await client.until(() => (client.records.filter((r) => r.type === "rx").length >= count ? true : undefined), `${count} rx records`);
  return client.take("rx").map((r) => r.frame);
}

/** Lets in-flight messages arrive, then asserts nothing more came. */
async function settle(ms = 300): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

beforeAll(async () => {
  relay = await startRelay({ adminToken: ADMIN });
});

afterAll(async () => {
  await relay?.stop();
});

describe("descriptor mode through a real relay", () => {
  it("answers every TX id with exactly one completion and delivers broadcast to every other port, never back", async () => {
    const url = await createSegment("bcast");
    const a = await member(url, "02:00:00:00:0a:01");
    const b = await member(url, "02:00:00:00:0a:02");
    const c = await member(url, "02:00:00:00:0a:03");
    a.send([0, 1, 2].map((id) => ({ type: "tx" as const, id, flags: 0, frame: frame("ff:ff:ff:ff:ff:ff", "02:00:00:00:0a:01", 64, id) })));
    const [fromB, fromC] = await Promise.all([rxFrames(b, 3), rxFrames(c, 3)]);
    expect(fromB.map((f) => f[14])).toEqual([0, 1, 2]);
    expect(fromC.map((f) => f[14])).toEqual([0, 1, 2]);
    const completion = await a.next("tx-complete");
    expect(completion).toMatchObject({ firstId: 0, count: 3, status: 0 });
    await settle();
    expect(a.take("rx")).toHaveLength(0);
    expect(a.take("tx-complete")).toHaveLength(0);
    for (const client of [a, b, c]) client.close();
  });

  it("sends unicast to a learned MAC to exactly that port, and floods unknown unicast only to ports that accept it", async () => {
    const url = await createSegment("ucast");
    const a = await member(url, "02:00:00:00:0b:01");
    const b = await member(url, "02:00:00:00:0b:02");
    // A bridge port needs a bridge token: an open segment admits members only without one.
    const bridgeToken = await mintToken("ucast", "bridge");
    const { client: bridge } = await WireClient.join(`${url}?kind=bridge`, { portKind: "bridge", macs: [] }, { token: bridgeToken });
    bridge.send([{ type: "rx-post", count: 64, bufferSize: 2048 }]);
    // Unknown unicast from A: the bridge port (which may have anything behind it) gets it, member B does not.
    a.send([{ type: "tx", id: 0, flags: 0, frame: frame("02:00:00:00:0b:99", "02:00:00:00:0b:01", 64, 7) }]);
    const flooded = await rxFrames(bridge, 1);
    expect(flooded[0]?.[14]).toBe(7);
    // The bridge port now sends from a host behind it; the segment learns that MAC.
    bridge.send([{ type: "tx", id: 0, flags: 0, frame: frame("02:00:00:00:0b:01", "02:00:00:00:0b:99", 64, 8) }]);
    expect((await rxFrames(a, 1))[0]?.[14]).toBe(8);
    // Unicast to the learned MAC reaches only the bridge port.
    a.send([{ type: "tx", id: 1, flags: 0, frame: frame("02:00:00:00:0b:99", "02:00:00:00:0b:01", 64, 9) }]);
    expect((await rxFrames(bridge, 1))[0]?.[14]).toBe(9);
    await settle();
    expect(b.take("rx")).toHaveLength(0);
    for (const client of [a, b, bridge]) client.close();
  });

  it("completes an oversize frame with its drop reason and a runt with its own", async () => {
    const url = await createSegment("sizes");
    const a = await member(url, "02:00:00:00:0c:01");
    const b = await member(url, "02:00:00:00:0c:02");
    a.send([
      { type: "tx", id: 10, flags: 0, frame: frame("02:00:00:00:0c:02", "02:00:00:00:0c:01", 1515) },
      { type: "tx", id: 11, flags: 0, frame: new Uint8Array(10) },
      { type: "tx", id: 12, flags: 0, frame: frame("02:00:00:00:0c:02", "02:00:00:00:0c:01", 1514) },
    ]);
    const completions = [await a.next("tx-complete"), await a.next("tx-complete"), await a.next("tx-complete")];
    expect(completions).toEqual([
      { type: "tx-complete", firstId: 10, count: 1, status: DropReason.Oversize },
      { type: "tx-complete", firstId: 11, count: 1, status: DropReason.Runt },
      { type: "tx-complete", firstId: 12, count: 1, status: 0 },
    ]);
    expect(await rxFrames(b, 1)).toHaveLength(1);
    a.close();
    b.close();
  });

  it("queues frames for a port without credit up to its bound, drops and counts the rest, and delivers the queue when credit comes", async () => {
    const url = await createSegment("credits", { rxQueueFrames: 8 });
    const a = await member(url, "02:00:00:00:0d:01");
    const b = await member(url, "02:00:00:00:0d:02", 0, { rxQueue: 8 });
    a.send(Array.from({ length: 20 }, (_, id) => ({ type: "tx" as const, id, flags: 0, frame: frame("02:00:00:00:0d:02", "02:00:00:00:0d:01", 100, id) })));
    expect(await a.next("tx-complete")).toMatchObject({ firstId: 0, count: 20, status: 0 });
    b.send([{ type: "stats-request", seq: 1 }]);
    const stats = await b.next("stats-reply");
    expect(stats.queuedFrames).toBe(8);
    expect(stats.counters.drops[DropReason.RxQueueFull]).toBe(12);
    const segment = (await (await admin("GET", "/v1/segments/credits")).json()) as { queuedBytes: number };
    expect(segment.queuedBytes).toBe(800);
    b.send([{ type: "rx-post", count: 5, bufferSize: 2048 }]);
    const delivered = await rxFrames(b, 5);
    expect(delivered.map((f) => f[14])).toEqual([0, 1, 2, 3, 4]);
    a.close();
    b.close();
  });

  it("delivers a queue longer than one message may carry (4096 records) over several messages when credit comes, losing nothing", async () => {
    const url = await createSegment("long-queue", { rxQueueFrames: 6000 });
    const a = await member(url, "02:00:00:00:0d:11", 0, { txWindow: 1024 });
    const b = await member(url, "02:00:00:00:0d:12", 0, { rxQueue: 6000 });
    for (let message = 0; message < 5; message++) {
      a.send(Array.from({ length: 1000 }, (_, i) => {
        const seq = message * 1000 + i;
        return { type: "tx" as const, id: seq, flags: 0, frame: frame("02:00:00:00:0d:12", "02:00:00:00:0d:11", 64, seq) };
      }));
      expect(await a.next("tx-complete")).toMatchObject({ firstId: message * 1000, count: 1000, status: 0 });
    }
    b.send([{ type: "stats-request", seq: 1 }]);
    expect((await b.next("stats-reply")).queuedFrames).toBe(5000);
    b.send([{ type: "rx-post", count: 5000, bufferSize: 2048 }, { type: "stats-request", seq: 2 }]);
    const delivered = await rxFrames(b, 5000);
    expect(delivered.map((f) => f[14])).toEqual(Array.from({ length: 5000 }, (_, i) => i & 0xff));
    const stats = await b.next("stats-reply");
    expect(stats).toMatchObject({ seq: 2, queuedFrames: 0, creditsAvailable: 0 });
    expect(stats.counters.txFrames).toBe(5000);
    a.close();
    b.close();
  });

  it("isolates segments: a broadcast never leaves its segment", async () => {
    const urlOne = await createSegment("iso-one");
    const urlTwo = await createSegment("iso-two");
    const a = await member(urlOne, "02:00:00:00:0e:01");
    const b = await member(urlOne, "02:00:00:00:0e:02");
    const other = await member(urlTwo, "02:00:00:00:0e:03");
    a.send([{ type: "tx", id: 0, flags: 0, frame: frame("ff:ff:ff:ff:ff:ff", "02:00:00:00:0e:01") }]);
    await rxFrames(b, 1);
    await settle();
    expect(other.take("rx")).toHaveLength(0);
    for (const client of [a, b, other]) client.close();
  });

  it("refuses a MAC that another port holds", async () => {
    const url = await createSegment("taken");
    const a = await member(url, "02:00:00:00:0f:01");
    const intruder = await WireClient.connect(url);
    intruder.send([{
      type: "hello", minVersion: 1, maxVersion: 1, features: 0, portKind: "member", macs: [mac("02:00:00:00:0f:01")],
      txWindow: 8, rxQueue: 8, clientName: "intruder", clientVersion: "0",
    }]);
    const refusal = await intruder.next("refuse");
    expect(refusal.code).toBe(CloseCode.MacTaken);
    expect((await intruder.closed()).code).toBe(CloseCode.MacTaken);
    a.close();
  });
});

describe("raw mode through a real relay", () => {
  it("exchanges one frame per message with descriptor ports, learning the raw port's MAC", async () => {
    const url = await createSegment("raw");
    const raw = await WireClient.connect(url, { subprotocol: null });
    const d = await member(url, "02:00:00:00:10:02");
    raw.sendBytes(frame("ff:ff:ff:ff:ff:ff", "02:00:00:00:10:01", 60, 1));
    const [broadcast] = await rxFrames(d, 1);
    expect(formatMac(macKeyAt(broadcast as Uint8Array, 6))).toBe("02:00:00:00:10:01");
    d.send([{ type: "tx", id: 0, flags: 0, frame: frame("02:00:00:00:10:01", "02:00:00:00:10:02", 60, 2) }]);
    await raw.until(() => (raw.rawFrames.length > 0 ? true : undefined), "a raw frame");
    expect(raw.rawFrames[0]?.[14]).toBe(2);
    raw.close();
    d.close();
  });
});

describe("bad input is refused with a specific code and harms no one else", () => {
  it("closes a sender of a malformed message with 4000 while its neighbour keeps working", async () => {
    const url = await createSegment("malformed");
    const bad = await member(url, "02:00:00:00:11:01");
    const good = await member(url, "02:00:00:00:11:02");
    const peer = await member(url, "02:00:00:00:11:03");
    bad.sendBytes(new Uint8Array([0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00]));
    expect((await bad.closed()).code).toBe(CloseCode.Malformed);
    good.send([{ type: "tx", id: 0, flags: 0, frame: frame("02:00:00:00:11:03", "02:00:00:00:11:02") }]);
    expect(await rxFrames(peer, 1)).toHaveLength(1);
    const described = (await (await admin("GET", "/v1/segments/malformed")).json()) as { counters: { malformedMessages: number; protocolErrors: number } };
    expect(described.counters).toMatchObject({ malformedMessages: 1, protocolErrors: 1 });
    good.close();
    peer.close();
  });

  it("closes a sender that claims more records than allowed with 4005", async () => {
    const url = await createSegment("too-many");
    const bad = await member(url, "02:00:00:00:11:04");
    bad.sendBytes(new Uint8Array([0x45, 0x4c, 0x01, 0x00, 0xff, 0xff, 0x00, 0x00]));
    expect((await bad.closed()).code).toBe(CloseCode.TooManyRecords);
  });

  it("closes a descriptor port that sends text other than the keepalive with 4000", async () => {
    const url = await createSegment("text");
    const bad = await member(url, "02:00:00:00:11:05");
    bad.sendBytes("hello?");
    expect((await bad.closed()).code).toBe(CloseCode.Malformed);
  });

  it("closes a client that repeats a TX id within one message with 4003", async () => {
    const url = await createSegment("dup-id");
    const { client } = await WireClient.join(url, { macs: [mac("02:00:00:00:12:02")], txWindow: 8 });
    const tx = { type: "tx" as const, id: 3, flags: 0, frame: frame("ff:ff:ff:ff:ff:ff", "02:00:00:00:12:02") };
    client.send([tx, tx]);
    expect(await client.closed()).toMatchObject({ code: CloseCode.WindowOverrun, reason: expect.stringContaining("twice") });
  });

  it("closes a client that exceeds its TX window with 4003", async () => {
    const url = await createSegment("overrun");
    const { client, welcome } = await WireClient.join(url, { macs: [mac("02:00:00:00:12:01")], txWindow: 4 });
    expect(welcome.txWindow).toBe(4);
    client.send(Array.from({ length: 5 }, (_, id) => ({ type: "tx" as const, id, flags: 0, frame: frame("ff:ff:ff:ff:ff:ff", "02:00:00:00:12:01") })));
    expect((await client.closed()).code).toBe(CloseCode.WindowOverrun);
  });

  it("closes a client whose first message is not HELLO with 4002", async () => {
    const url = await createSegment("nohello");
    const client = await WireClient.connect(url);
    client.send([{ type: "rx-post", count: 1, bufferSize: 2048 }]);
    expect((await client.closed()).code).toBe(CloseCode.HandshakeTimeout);
  });
});

describe("auth at the edge", () => {
  it("answers a join without a token on a closed segment with 401", async () => {
    await createSegment("closed", { openJoin: false });
    const attempt = WireClient.connect(`${relay.wsUrl}/v1/segments/closed/connect`);
    await expect(attempt).rejects.toBeInstanceOf(UpgradeRefused);
    await expect(attempt).rejects.toMatchObject({ status: 401 });
  });

  it("answers a token minted for another segment with 403 and admits the right one", async () => {
    await createSegment("closed-a", { openJoin: false });
    await createSegment("closed-b", { openJoin: false });
    const tokenForB = await mintToken("closed-b", "member");
    await expect(WireClient.connect(`${relay.wsUrl}/v1/segments/closed-a/connect`, { token: tokenForB })).rejects.toMatchObject({ status: 403 });
    const { welcome } = await WireClient.join(`${relay.wsUrl}/v1/segments/closed-b/connect`, { macs: [mac("02:00:00:00:13:01")] }, { token: tokenForB });
    expect(welcome.portId).toBeGreaterThan(0);
  });
});

describe("segment lifecycle", () => {
  it("closes every client with 4010 when the segment is deleted", async () => {
    const url = await createSegment("doomed");
    const a = await member(url, "02:00:00:00:14:01");
    const raw = await WireClient.connect(url, { subprotocol: null });
    // A raw guest (v86) speaks at once; its first frame also registers its MAC.
    raw.sendBytes(frame("ff:ff:ff:ff:ff:ff", "02:00:00:00:14:02"));
    await rxFrames(a, 1);
    const response = await admin("DELETE", "/v1/segments/doomed");
    expect(response.status).toBe(200);
    expect((await a.closed()).code).toBe(CloseCode.SegmentDeleted);
    expect((await raw.closed()).code).toBe(CloseCode.SegmentDeleted);
    expect((await admin("GET", "/v1/segments/doomed")).status).toBe(404);
  });

  it("answers the text keepalive without involving the segment", async () => {
    const url = await createSegment("keepalive");
    const ws = new WebSocket(url, ["edgelan.v1"]);
    const answer = await new Promise<string>((resolve, reject) => {
      ws.once("open", () => ws.send(KEEPALIVE_REQUEST));
      ws.once("message", (data: Buffer) => resolve(data.toString()));
      ws.once("error", reject);
    });
    expect(answer).toBe(KEEPALIVE_RESPONSE);
    ws.close();
  });
});
