// docs/protocol.md §1 (two modes), §4 (message layout, strict decoding) and §9 (keepalive),
// against the real segment: each malformed message closes with the code of the §4.2 table,
// and nothing of an invalid message is applied.
import { describe, expect, it } from "vitest";
import { encodeMessage } from "../../datapath/tunnel/codec.ts";
import { BROADCAST, createSegment, frame, header, mac, Peer } from "./peer.ts";

const SEGMENT = "framing";
await createSegment(SEGMENT);

/** The first 16 bytes of a HELLO body (§5.1): versions 1..1, no features, window 1, `kind`, `macCount`, rxQueue 0. */
function helloFixed(kind: number, macCount: number): number[] {
  return [1, 0, 1, 0, 0, 0, 0, 0, 1, 0, kind, macCount, 0, 0, 0, 0];
}

/** A fresh open port (after WELCOME, with credits) to send a bad message on. */
async function openPort(n: number): Promise<Peer> {
  const { peer } = await Peer.join(SEGMENT, { macs: [mac(n)] });
  await peer.post(16);
  return peer;
}

describe("§1 two modes on one URL", () => {
  it("§1 offering edgelan.v1 selects descriptor mode: the server selects the subprotocol", async () => {
    const response = await Peer.upgrade(SEGMENT);
    expect(response.status).toBe(101);
    expect(response.headers.get("Sec-WebSocket-Protocol")).toBe("edgelan.v1");
    response.webSocket?.accept();
    response.webSocket?.close(1000, "done");
  });

  it("§1 offering no subprotocol selects raw mode: the handshake response has none", async () => {
    const response = await Peer.upgrade(SEGMENT, { descriptor: false });
    expect(response.status).toBe(101);
    expect(response.headers.get("Sec-WebSocket-Protocol")).toBeNull();
    response.webSocket?.accept();
    response.webSocket?.close(1000, "done");
  });
});

describe("§4 message layout", () => {
  it("§4 a message with zero records is valid and does nothing", async () => {
    const port = await openPort(0x401);
    port.sendBytes(Uint8Array.from(header(0)));
    port.send([{ type: "ping", seq: 1, timestamp: 1 }]);
    expect((await port.next("pong")).seq).toBe(1);
    expect(port.closed).toBeUndefined();
    port.close();
  });

  const cases: Array<{ name: string; bytes: () => Uint8Array; code: number }> = [
    { name: "truncated-header (fewer than 8 bytes)", bytes: () => Uint8Array.of(0x45, 0x4c, 1, 0), code: 4000 },
    { name: "bad-magic", bytes: () => Uint8Array.from([0x4c, 0x45, 1, 0, 0, 0, 0, 0]), code: 4000 },
    { name: "unsupported-version (framing version 2)", bytes: () => Uint8Array.from(header(0, { version: 2 })), code: 4001 },
    { name: "reserved-nonzero (header flags)", bytes: () => Uint8Array.from(header(0, { flags: 1 })), code: 4000 },
    { name: "reserved-nonzero (header reserved field)", bytes: () => Uint8Array.from(header(0, { reserved: 1 })), code: 4000 },
    // A ping record (12-byte body) with record flags 1: only tx and rx have flags.
    { name: "reserved-nonzero (record flags on a ping)", bytes: () => Uint8Array.from([...header(1), 0x26, 0x01, 12, 0, 0, 0, ...new Array(12).fill(0)]), code: 4000 },
    { name: "too-many-records (4097)", bytes: () => Uint8Array.from(header(4097)), code: 4005 },
    { name: "truncated-record", bytes: () => Uint8Array.from([...header(1), 0x26, 0, 12]), code: 4000 },
    { name: "unknown-record-type (0x7f)", bytes: () => Uint8Array.from([...header(1), 0x7f, 0, 0, 0, 0, 0]), code: 4000 },
    { name: "record-length-past-end", bytes: () => Uint8Array.from([...header(1), 0x26, 0, 12, 0, 0, 0, 1, 2, 3]), code: 4000 },
    { name: "record-count-mismatch (bytes after the last record)", bytes: () => Uint8Array.from([...header(0), 0x26]), code: 4000 },
    { name: "bad-record-length (a ping body of 11 bytes)", bytes: () => Uint8Array.from([...header(1), 0x26, 0, 11, 0, 0, 0, ...new Array(11).fill(0)]), code: 4000 },
    // set-filter: seq, promiscuous = 2 (a bool must be 0 or 1), allMulticast 0, 0 MACs.
    { name: "invalid-boolean", bytes: () => Uint8Array.from([...header(1), 0x20, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0]), code: 4000 },
    // A tx-complete run of 0 ids (the record is segment → client, but decoding comes first).
    { name: "zero-count", bytes: () => Uint8Array.from([...header(1), 0x11, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0]), code: 4000 },
    // A hello record in an open session whose clientName is the lone byte 0xff (not UTF-8).
    { name: "invalid-utf8", bytes: () => Uint8Array.from([...header(1), 0x01, 0, 20, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0]), code: 4000 },
    // A hello with macCount 17 (the field allows 16).
    { name: "too-many-macs (a HELLO with 17 MACs)", bytes: () => Uint8Array.from([...header(1), 0x01, 0, 121, 0, 0, 0, ...helloFixed(0, 17), ...new Array(17 * 6).fill(2), 0, 0, 0]), code: 4000 },
    { name: "too-many-macs (a set-filter with 65 groups)", bytes: () => Uint8Array.from([...header(1), 0x20, 0, 0x8d, 1, 0, 0, 1, 0, 0, 0, 0, 0, 65, ...new Array(65 * 6).fill(1)]), code: 4000 },
    { name: "invalid-port-kind (3)", bytes: () => Uint8Array.from([...header(1), 0x01, 0, 19, 0, 0, 0, ...helloFixed(3, 0), 0, 0, 0]), code: 4000 },
    // hasResume 1, a 16-byte session id, then a 65-byte token.
    { name: "token-too-long (65 bytes)", bytes: () => Uint8Array.from([...header(1), 0x01, 0, 101, 0, 0, 0, ...helloFixed(0, 0), 0, 0, 1, ...new Array(16).fill(0xa0), 65, ...new Array(65).fill(0x5e)]), code: 4000 },
    // A tx record of id 0 and a 65,536-byte frame: body 65,538 = 0x010002.
    { name: "oversize-frame (a 65,536-byte TX frame)", bytes: () => Uint8Array.from([...header(1), 0x10, 0, 0x02, 0x00, 0x01, 0x00, 0, 0, ...new Array(65_536).fill(0)]), code: 4000 },
    // A stats-reply (decoded before its direction is checked) whose rxFrames is 2^53.
    { name: "counter-out-of-range (a u64 of 2^53)", bytes: () => Uint8Array.from([...header(1), 0x25, 0, 49, 0, 0, 0, ...new Array(16).fill(0), 0, 0, 0, 0, 0, 0, 0x20, 0, ...new Array(24).fill(0), 0]), code: 4000 },
    { name: "message-too-large (over 1 MiB)", bytes: () => new Uint8Array(1_048_577).fill(0), code: 4004 },
  ];
  for (const badCase of cases) {
    it(`§4.2 ${badCase.name} closes the socket with ${badCase.code}`, async () => {
      const port = await openPort(0x410 + cases.indexOf(badCase));
      port.sendBytes(badCase.bytes());
      expect((await port.closedWith()).code).toBe(badCase.code);
    });
  }

  it("§4.2 decoding is whole message or nothing: a valid TX before a malformed record is not applied", async () => {
    const receiver = await openPort(0x430);
    const sender = await openPort(0x431);
    const valid = encodeMessage([{ type: "tx", id: 0, flags: 0, frame: frame(BROADCAST, mac(0x431), 0x99) }]);
    // Same message, but claiming 2 records and carrying an unknown record type as the second.
    const bytes = Uint8Array.from([...header(2), ...valid.subarray(8), 0x7f, 0, 0, 0, 0, 0]);
    sender.sendBytes(bytes);
    expect((await sender.closedWith()).code).toBe(4000);
    // The receiver got nothing from the sender: a ping round trip on it shows its queue is empty.
    receiver.send([{ type: "ping", seq: 9, timestamp: 0 }]);
    await receiver.next("pong");
    expect(receiver.take("rx")).toEqual([]);
    receiver.close();
  });

  it("§4.2 a text message other than the keepalive closes with 4000", async () => {
    const port = await openPort(0x440);
    port.sendBytes("hello");
    expect((await port.closedWith()).code).toBe(4000);
  });
});

describe("§9 keepalive", () => {
  it("§9 the text message ping is answered with the text pong and the port stays open", async () => {
    const port = await openPort(0x450);
    port.sendBytes("ping");
    await port.until(() => (port.texts.includes("pong") ? true : undefined), "the text pong");
    port.send([{ type: "ping", seq: 2, timestamp: 0 }]);
    expect((await port.next("pong")).seq).toBe(2);
    expect(port.closed).toBeUndefined();
    port.close();
  });

  it("§9 the keepalive works before the HELLO too, and does not count as the first message", async () => {
    const port = await Peer.open(SEGMENT);
    port.sendBytes("ping");
    await port.until(() => (port.texts.includes("pong") ? true : undefined), "the text pong");
    port.send([{ type: "hello", minVersion: 1, maxVersion: 1, features: 0, portKind: "member", macs: [], txWindow: 1, rxQueue: 0, clientName: "k", clientVersion: "1" }]);
    await port.next("welcome");
    port.close();
  });
});
