// The tunnel v1 wire format, record by record, as literal bytes. Each case is
// both directions: the bytes decode to the record, and the record encodes to
// exactly these bytes.
import { describe, expect, it } from "vitest";
import {
  checkRecord, decodeMessage, encodeMessage, forEachRecord, MessageEncoder, TunnelEncodeError,
} from "../../../datapath/tunnel/codec.ts";
import { MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, MAX_RECORDS_PER_MESSAGE } from "../../../datapath/tunnel/constants.ts";
import type { DecodeErrorCode, TunnelRecord } from "../../../datapath/tunnel/records.ts";
import { hex, toHex } from "./hex.ts";

const ONE_RECORD = "45 4c 01 00 01 00 00 00"; // "EL", framing v1, flags 0, 1 record, reserved 0
const MAC_1 = 0x02_00_00_00_00_01;
const MAC_2 = 0x02_00_00_00_00_02;
const SESSION = Uint8Array.from({ length: 16 }, (_, i) => i);

interface WireCase { name: string; record: TunnelRecord; bytes: string }

const CASES: WireCase[] = [
  {
    name: "hello without resume",
    record: {
      type: "hello", minVersion: 1, maxVersion: 1, features: 0x7f, portKind: "member", macs: [MAC_1],
      txWindow: 256, rxQueue: 128, clientName: "t", clientVersion: "1",
    },
    bytes: `${ONE_RECORD}
      01 00 1b 00 00 00      # hello, flags 0, body 27 bytes
      01 00 01 00            # minVersion 1, maxVersion 1
      7f 00 00 00            # features
      00 01 00 01            # txWindow 256, port kind 0 (member), 1 MAC
      80 00 00 00            # rxQueue 128
      02 00 00 00 00 01      # MAC
      01 74 01 31            # name "t", version "1"
      00                     # no resume`,
  },
  {
    name: "hello with resume, bridge port, no MACs",
    record: {
      type: "hello", minVersion: 1, maxVersion: 3, features: 0, portKind: "bridge", macs: [],
      txWindow: 32768, rxQueue: 0, clientName: "", clientVersion: "é", resume: { sessionId: SESSION, token: Uint8Array.of(0xaa, 0xbb) },
    },
    bytes: `${ONE_RECORD}
      01 00 28 00 00 00      # hello, body 40 bytes
      01 00 03 00 00 00 00 00
      00 80 01 00            # txWindow 32768, kind 1 (bridge), 0 MACs
      00 00 00 00            # rxQueue 0
      00 02 c3 a9            # name "", version "é" (2 UTF-8 bytes)
      01 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f   # resume: session id
      02 aa bb               # token`,
  },
  {
    name: "welcome",
    record: {
      type: "welcome", version: 1, features: 0x05, portId: 7, maxFrameSize: 1514, txWindow: 256, rxQueue: 128,
      sessionId: SESSION, resumeToken: Uint8Array.of(0xaa, 0xbb), macs: [MAC_1],
    },
    bytes: `${ONE_RECORD}
      02 00 2c 00 00 00      # welcome, body 44 bytes
      01 00 00 01            # version 1, txWindow 256
      05 00 00 00 07 00 00 00 80 00 00 00   # features, portId 7, rxQueue 128
      ea 05 01 02            # maxFrameSize 1514, 1 MAC, token 2 bytes
      00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f
      02 00 00 00 00 01 aa bb`,
  },
  { name: "refuse", record: { type: "refuse", code: 4009, reason: "taken" }, bytes: `${ONE_RECORD} 03 00 08 00 00 00  a9 0f 05 74 61 6b 65 6e` },
  { name: "bye", record: { type: "bye", code: 1000, reason: "" }, bytes: `${ONE_RECORD} 04 00 03 00 00 00  e8 03 00` },
  {
    name: "tx",
    record: { type: "tx", id: 42, flags: 0, frame: Uint8Array.of(1, 2, 3, 4, 5) },
    bytes: `${ONE_RECORD} 10 00 07 00 00 00  2a 00  01 02 03 04 05`,
  },
  {
    name: "tx-complete across the u16 wrap",
    record: { type: "tx-complete", firstId: 65534, count: 4, status: 0 },
    bytes: `${ONE_RECORD} 11 00 06 00 00 00  fe ff 04 00 00 00`,
  },
  { name: "rx-post", record: { type: "rx-post", count: 256, bufferSize: 1518 }, bytes: `${ONE_RECORD} 12 00 08 00 00 00  00 01 00 00 ee 05 00 00` },
  { name: "rx", record: { type: "rx", flags: 1, frame: Uint8Array.of(9, 8, 7) }, bytes: `${ONE_RECORD} 13 01 03 00 00 00  09 08 07` },
  {
    name: "set-filter",
    record: { type: "set-filter", seq: 9, promiscuous: false, allMulticast: true, multicast: [0x01_00_5e_00_00_fb] },
    bytes: `${ONE_RECORD} 20 00 0d 00 00 00  09 00 00 00 00 01 01  01 00 5e 00 00 fb`,
  },
  { name: "add-mac", record: { type: "add-mac", seq: 10, mac: MAC_2 }, bytes: `${ONE_RECORD} 21 00 0a 00 00 00  0a 00 00 00 02 00 00 00 00 02` },
  { name: "remove-mac", record: { type: "remove-mac", seq: 11, mac: MAC_2 }, bytes: `${ONE_RECORD} 22 00 0a 00 00 00  0b 00 00 00 02 00 00 00 00 02` },
  {
    name: "ack",
    record: { type: "ack", seq: 10, status: 2, reason: "in use" },
    bytes: `${ONE_RECORD} 23 00 0d 00 00 00  0a 00 00 00 02 00 06 69 6e 20 75 73 65`,
  },
  { name: "stats-request", record: { type: "stats-request", seq: 3 }, bytes: `${ONE_RECORD} 24 00 04 00 00 00  03 00 00 00` },
  {
    name: "stats-reply",
    record: {
      type: "stats-reply", seq: 3, creditsAvailable: 100, queuedFrames: 2, queuedBytes: 128,
      counters: { rxFrames: 5, rxBytes: 300, txFrames: 2 ** 32 + 1, txBytes: 0, drops: [0, 7] },
    },
    bytes: `${ONE_RECORD}
      25 00 41 00 00 00      # stats-reply, body 65 bytes
      03 00 00 00 64 00 00 00 02 00 00 00 80 00 00 00   # seq, credits, queued frames, queued bytes
      05 00 00 00 00 00 00 00  2c 01 00 00 00 00 00 00   # rxFrames, rxBytes (u64)
      01 00 00 00 01 00 00 00  00 00 00 00 00 00 00 00   # txFrames 2^32+1, txBytes
      02 00 00 00 00 00 00 00 00  07 00 00 00 00 00 00 00 # 2 drop counters: [0, 7]`,
  },
  { name: "ping", record: { type: "ping", seq: 1, timestamp: 1.5 }, bytes: `${ONE_RECORD} 26 00 0c 00 00 00  01 00 00 00  00 00 00 00 00 00 f8 3f` },
  { name: "pong", record: { type: "pong", seq: 1, timestamp: 1.5 }, bytes: `${ONE_RECORD} 27 00 0c 00 00 00  01 00 00 00  00 00 00 00 00 00 f8 3f` },
  { name: "link", record: { type: "link", up: false, reason: "down" }, bytes: `${ONE_RECORD} 28 00 07 00 00 00  00 00 04 64 6f 77 6e` },
];

function decodeOk(bytes: Uint8Array): TunnelRecord[] {
  const result = decodeMessage(bytes);
  if (!result.ok) throw new Error(`${result.error.code}: ${result.error.message}`);
  return result.value;
}

function decodeError(bytes: Uint8Array): { code: DecodeErrorCode; message: string } {
  const result = decodeMessage(bytes);
  if (result.ok) throw new Error("expected a decode error");
  return result.error;
}

describe("tunnel codec: every record type as literal bytes", () => {
  it.each(CASES)("$name decodes from and encodes to its bytes", ({ record, bytes }) => {
    const wire = hex(bytes);
    expect(decodeOk(wire)).toEqual([record]);
    expect(toHex(encodeMessage([record]))).toBe(toHex(wire));
  });

  it("covers all 17 record types", () => {
    expect(new Set(CASES.map((c) => c.record.type)).size).toBe(17);
  });

  it("encodes an empty message as the bare header", () => {
    expect(toHex(encodeMessage([]))).toBe("45 4c 01 00 00 00 00 00");
    expect(decodeOk(hex("45 4c 01 00 00 00 00 00"))).toEqual([]);
  });

  it("decodes a batch of two TX records with frames that are views into the message, not copies", () => {
    const wire = hex("45 4c 01 00 02 00 00 00  10 00 03 00 00 00 00 00 aa  10 00 04 00 00 00 01 00 bb cc");
    const [first, second] = decodeOk(wire);
    expect(first).toEqual({ type: "tx", id: 0, flags: 0, frame: Uint8Array.of(0xaa) });
    expect(second).toEqual({ type: "tx", id: 1, flags: 0, frame: Uint8Array.of(0xbb, 0xcc) });
    if (second?.type !== "tx") throw new Error("not tx");
    expect(second.frame.buffer).toBe(wire.buffer);
    wire[25] = 0xdd;
    expect(second.frame[0]).toBe(0xdd);
  });

  it("carries TX flags through untouched (the segment, not the codec, judges them)", () => {
    expect(decodeOk(encodeMessage([{ type: "tx", id: 1, flags: 0xff, frame: new Uint8Array(0) }]))).toEqual([
      { type: "tx", id: 1, flags: 0xff, frame: new Uint8Array(0) },
    ]);
  });

  it("round-trips a maximum-size frame and a zero-length frame", () => {
    const big = new Uint8Array(MAX_FRAME_BYTES).map((_, i) => i & 0xff);
    const records: TunnelRecord[] = [{ type: "rx", flags: 0, frame: big }, { type: "tx", id: 65535, flags: 0, frame: new Uint8Array(0) }];
    expect(decodeOk(encodeMessage(records))).toEqual(records);
  });
});

describe("tunnel codec: malformed input yields a typed error naming the problem", () => {
  const ping = hex(CASES.find((c) => c.name === "ping")?.bytes ?? "");

  function withByte(bytes: Uint8Array, at: number, value: number): Uint8Array {
    const copy = bytes.slice();
    copy[at] = value;
    return copy;
  }

  const MALFORMED: Array<{ name: string; bytes: () => Uint8Array; code: DecodeErrorCode; mentions: string }> = [
    { name: "empty message", bytes: () => new Uint8Array(0), code: "truncated-header", mentions: "0 bytes" },
    { name: "truncated header", bytes: () => hex("45 4c 01 00 01"), code: "truncated-header", mentions: "5 bytes" },
    { name: "bad magic", bytes: () => withByte(ping, 0, 0x46), code: "bad-magic", mentions: "0x4c46" },
    { name: "unknown framing version", bytes: () => withByte(ping, 2, 2), code: "unsupported-version", mentions: "version 2" },
    { name: "header flags set", bytes: () => withByte(ping, 3, 1), code: "reserved-nonzero", mentions: "byte 3" },
    { name: "header reserved set", bytes: () => withByte(ping, 7, 1), code: "reserved-nonzero", mentions: "bytes 6-7" },
    { name: "message over 1 MiB", bytes: () => new Uint8Array(MAX_MESSAGE_BYTES + 1), code: "message-too-large", mentions: "1048577" },
    { name: "record count over 4096", bytes: () => hex("45 4c 01 00 01 10 00 00"), code: "too-many-records", mentions: "4097" },
    { name: "count says 2, one record present", bytes: () => withByte(ping, 4, 2), code: "truncated-record", mentions: "record 1" },
    { name: "count says 0, one record present", bytes: () => withByte(ping, 4, 0), code: "record-count-mismatch", mentions: "0 records" },
    { name: "trailing bytes", bytes: () => hex(`${toHex(ping)} 00`), code: "record-count-mismatch", mentions: "27 bytes" },
    { name: "record length past the end", bytes: () => withByte(ping, 11, 1), code: "record-length-past-end", mentions: "record 0 (ping)" },
    { name: "unknown record type", bytes: () => withByte(ping, 8, 0x7f), code: "unknown-record-type", mentions: "0x7f" },
    { name: "flags on a control record", bytes: () => withByte(ping, 9, 1), code: "reserved-nonzero", mentions: "record 0 (ping)" },
    {
      name: "ping body too long", bytes: () => hex(`${ONE_RECORD} 26 00 0d 00 00 00 01 00 00 00 00 00 00 00 00 00 f8 3f 00`),
      code: "bad-record-length", mentions: "1 unexpected bytes",
    },
    { name: "ping body too short", bytes: () => hex(`${ONE_RECORD} 26 00 06 00 00 00 01 00 00 00 00 00`), code: "bad-record-length", mentions: "timestamp" },
    { name: "tx without an id", bytes: () => hex(`${ONE_RECORD} 10 00 01 00 00 00 07`), code: "bad-record-length", mentions: "record 0 (tx)" },
    { name: "tx-complete of 5 bytes", bytes: () => hex(`${ONE_RECORD} 11 00 05 00 00 00 00 00 01 00 00`), code: "bad-record-length", mentions: "exactly 6" },
    { name: "tx-complete with flags", bytes: () => hex(`${ONE_RECORD} 11 01 06 00 00 00 00 00 01 00 00 00`), code: "reserved-nonzero", mentions: "tx-complete" },
    { name: "tx-complete of zero ids", bytes: () => hex(`${ONE_RECORD} 11 00 06 00 00 00 05 00 00 00 00 00`), code: "zero-count", mentions: "at least one id" },
    { name: "rx-post of 7 bytes", bytes: () => hex(`${ONE_RECORD} 12 00 07 00 00 00 01 00 00 00 00 06 00`), code: "bad-record-length", mentions: "rx-post" },
    { name: "oversize tx frame", bytes: () => oversize(0x10, 2), code: "oversize-frame", mentions: "65536 bytes" },
    { name: "oversize rx frame", bytes: () => oversize(0x13, 0), code: "oversize-frame", mentions: "record 0 (rx)" },
    { name: "reason not UTF-8", bytes: () => hex(`${ONE_RECORD} 03 00 05 00 00 00 a9 0f 02 ff fe`), code: "invalid-utf8", mentions: "reason" },
    { name: "truncated UTF-8 sequence", bytes: () => hex(`${ONE_RECORD} 28 00 04 00 00 00 01 00 01 c3`), code: "invalid-utf8", mentions: "record 0 (link)" },
    { name: "overlong UTF-8", bytes: () => hex(`${ONE_RECORD} 28 00 05 00 00 00 01 00 02 c0 af`), code: "invalid-utf8", mentions: "reason" },
    { name: "string length past the body", bytes: () => hex(`${ONE_RECORD} 28 00 03 00 00 00 01 05 41`), code: "bad-record-length", mentions: "reason" },
    { name: "hello with 17 MACs", bytes: () => helloWithMacCount(17), code: "too-many-macs", mentions: "17 addresses" },
    { name: "set-filter with 65 MACs", bytes: () => setFilterWithCount(65), code: "too-many-macs", mentions: "65 addresses" },
    { name: "hello with port kind 3", bytes: () => withByte(hello(), 24, 3), code: "invalid-port-kind", mentions: "port kind 3" },
    { name: "hello resume flag 2", bytes: () => withByte(hello(), 40, 2), code: "invalid-boolean", mentions: "resume flag" },
    { name: "link up = 2", bytes: () => hex(`${ONE_RECORD} 28 00 03 00 00 00 02 00 00`), code: "invalid-boolean", mentions: "up must be 0 or 1" },
    { name: "welcome token of 65 bytes", bytes: () => welcomeWithToken(65), code: "token-too-long", mentions: "65 bytes" },
    { name: "stats counter above 2^53", bytes: () => statsWithHighWord(0x0020_0000), code: "counter-out-of-range", mentions: "rxFrames" },
  ];

  function oversize(type: number, prefix: number): Uint8Array {
    const body = prefix + MAX_FRAME_BYTES + 1;
    const bytes = new Uint8Array(8 + 6 + body);
    bytes.set(hex(`${ONE_RECORD} ${type.toString(16)} 00`));
    new DataView(bytes.buffer).setUint32(10, body, true);
    return bytes;
  }

  function hello(): Uint8Array {
    return hex(CASES[0]?.bytes ?? "");
  }

  function helloWithMacCount(count: number): Uint8Array {
    const macs = "02 00 00 00 00 01 ".repeat(count);
    const body = 16 + 6 * count + 3;
    return hex(`${ONE_RECORD} 01 00 ${body.toString(16).padStart(2, "0")} 00 00 00  01 00 01 00 00 00 00 00 00 01 00 ${count.toString(16)} 00 00 00 00 ${macs} 00 00 00`);
  }

  function setFilterWithCount(count: number): Uint8Array {
    const bytes = new Uint8Array(8 + 6 + 7 + 6 * count);
    bytes.set(hex(`${ONE_RECORD} 20 00`));
    const view = new DataView(bytes.buffer);
    view.setUint32(10, 7 + 6 * count, true);
    bytes[20] = count;
    return bytes;
  }

  function welcomeWithToken(length: number): Uint8Array {
    const bytes = new Uint8Array(8 + 6 + 36 + length);
    bytes.set(hex(`${ONE_RECORD} 02 00`));
    new DataView(bytes.buffer).setUint32(10, 36 + length, true);
    bytes[14 + 19] = length;
    return bytes;
  }

  function statsWithHighWord(high: number): Uint8Array {
    const bytes = hex(CASES.find((c) => c.record.type === "stats-reply")?.bytes ?? "");
    new DataView(bytes.buffer).setUint32(14 + 16 + 4, high, true);
    return bytes;
  }

  it.each(MALFORMED)("$name → $code", ({ bytes, code, mentions }) => {
    const error = decodeError(bytes());
    expect(error.code).toBe(code);
    expect(error.message).toContain(mentions);
  });

  it("forEachRecord rejects the same inputs before calling the visitor at all", () => {
    for (const { bytes, code } of MALFORMED) {
      let calls = 0;
      const result = forEachRecord(bytes(), { record: () => calls++, tx: () => calls++ });
      expect(result.ok ? "ok" : result.error.code).toBe(code);
      expect(calls).toBe(0);
    }
  });

  it("rejects a whole message when only its last record is bad (no partial batches)", () => {
    const good = encodeMessage([{ type: "tx", id: 1, flags: 0, frame: Uint8Array.of(1) }, { type: "ping", seq: 1, timestamp: 0 }]);
    const bad = withByte(good, 8 + 6 + 3, 0x7f); // the ping's type byte
    const seen: number[] = [];
    const result = forEachRecord(bad, { tx: (id) => seen.push(id) });
    expect(result.ok).toBe(false);
    expect(seen).toEqual([]);
  });
});

describe("forEachRecord: the allocation-light visitor", () => {
  it("visits TX, RX, completions and posts by method and everything else as records, in order", () => {
    const records: TunnelRecord[] = [
      { type: "tx", id: 5, flags: 0, frame: Uint8Array.of(1) },
      { type: "ping", seq: 2, timestamp: 3 },
      { type: "rx", flags: 2, frame: Uint8Array.of(2, 3) },
      { type: "tx-complete", firstId: 4, count: 2, status: 11 },
      { type: "rx-post", count: 8, bufferSize: 2048 },
    ];
    const seen: string[] = [];
    const result = forEachRecord(encodeMessage(records), {
      tx: (id, flags, frame) => seen.push(`tx ${id} ${flags} ${toHex(frame)}`),
      rx: (flags, frame) => seen.push(`rx ${flags} ${toHex(frame)}`),
      txComplete: (firstId, count, status) => seen.push(`done ${firstId}+${count} ${status}`),
      rxPost: (count, size) => seen.push(`post ${count}x${size}`),
      record: (record) => seen.push(record.type),
    });
    expect(result).toEqual({ ok: true, value: 5 });
    expect(seen).toEqual(["tx 5 0 01", "ping", "rx 2 02 03", "done 4+2 11", "post 8x2048"]);
  });

  it("routes hot-path records to `record` when their method is absent", () => {
    const records: TunnelRecord[] = [{ type: "tx", id: 5, flags: 0, frame: Uint8Array.of(1) }, { type: "rx-post", count: 1, bufferSize: 64 }];
    const seen: TunnelRecord[] = [];
    forEachRecord(encodeMessage(records), { record: (record) => seen.push(record) });
    expect(seen).toEqual(records);
  });
});

describe("MessageEncoder", () => {
  it("streams records, reports size and count, and is reusable after reset", () => {
    const encoder = new MessageEncoder(8);
    encoder.addTx(1, 0, Uint8Array.of(0xaa, 0xbb));
    encoder.addTxComplete(1, 1, 0);
    expect(encoder.recordCount).toBe(2);
    expect(encoder.byteLength).toBe(8 + 6 + 4 + 6 + 6);
    const first = encoder.finish();
    expect(decodeOk(first)).toEqual([
      { type: "tx", id: 1, flags: 0, frame: Uint8Array.of(0xaa, 0xbb) },
      { type: "tx-complete", firstId: 1, count: 1, status: 0 },
    ]);
    encoder.reset();
    encoder.addRx(0, Uint8Array.of(1));
    expect(decodeOk(encoder.finish())).toEqual([{ type: "rx", flags: 0, frame: Uint8Array.of(1) }]);
    expect(decodeOk(first)).toHaveLength(2); // finish() copied: the earlier message is intact
  });

  it("finishView() shares the encoder's buffer (valid until the next add or reset)", () => {
    const encoder = new MessageEncoder();
    encoder.addRxPost(1, 64);
    const view = encoder.finishView();
    expect(decodeOk(view)).toEqual([{ type: "rx-post", count: 1, bufferSize: 64 }]);
    encoder.reset();
    encoder.addRxPost(2, 128);
    encoder.finishView();
    expect(decodeOk(view)).toEqual([{ type: "rx-post", count: 2, bufferSize: 128 }]);
  });

  it("refuses to exceed the record count limit and says when a frame no longer fits", () => {
    const encoder = new MessageEncoder();
    for (let i = 0; i < MAX_RECORDS_PER_MESSAGE; i++) encoder.addTxComplete(i, 1, 0);
    expect(encoder.fitsFrame(0)).toBe(false);
    expect(() => encoder.addTxComplete(0, 1, 0)).toThrowError(TunnelEncodeError);
    expect(decodeOk(encoder.finish())).toHaveLength(MAX_RECORDS_PER_MESSAGE);
  });

  it("refuses to exceed 1 MiB", () => {
    const encoder = new MessageEncoder();
    const frame = new Uint8Array(60_000);
    let added = 0;
    while (encoder.fitsFrame(frame.length)) {
      encoder.addRx(0, frame);
      added++;
    }
    expect(added).toBe(17);
    expect(() => encoder.addRx(0, frame)).toThrowError(/does not fit/);
    expect(encoder.finish().length).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
  });

  it.each<[string, TunnelRecord, string]>([
    ["id above u16", { type: "tx", id: 65536, flags: 0, frame: new Uint8Array(0) }, "field-out-of-range"],
    ["frame above 65535", { type: "rx", flags: 0, frame: new Uint8Array(65536) }, "oversize-frame"],
    ["empty completion run", { type: "tx-complete", firstId: 0, count: 0, status: 0 }, "field-out-of-range"],
    ["reason above 255 bytes", { type: "bye", code: 1000, reason: "é".repeat(128) }, "string-too-long"],
    ["17 MACs", { type: "add-mac", seq: 0, mac: 2 ** 48 }, "field-out-of-range"],
    ["short session id", { type: "welcome", version: 1, features: 0, portId: 1, maxFrameSize: 1514, txWindow: 1, rxQueue: 0, sessionId: new Uint8Array(15), resumeToken: new Uint8Array(0), macs: [] }, "field-out-of-range"],
    ["fractional seq", { type: "stats-request", seq: 1.5 }, "field-out-of-range"],
  ])("checkRecord reports %s as %s", (_name, record, code) => {
    const result = checkRecord(record);
    expect(result.ok ? "ok" : result.error.code).toBe(code);
    expect(() => encodeMessage([record])).toThrowError(TunnelEncodeError);
  });

  it("recovers after a failed encodeMessage (the shared encoder is reset)", () => {
    expect(() => encodeMessage([{ type: "ping", seq: 1, timestamp: 0 }, { type: "stats-request", seq: -1 }])).toThrow();
    expect(decodeOk(encodeMessage([{ type: "stats-request", seq: 1 }]))).toEqual([{ type: "stats-request", seq: 1 }]);
  });
});
