/**
 * Tunnel protocol v1 codec: messages of records, little-endian, byte layouts in
 * docs/protocol.md. Decoding is strict and zero-copy (frames are subarray views
 * of the input), never throws and never reads out of bounds; a message is
 * accepted whole or not at all. Encoding throws TunnelEncodeError only when a
 * caller hands it a field outside its wire range (a bug, not bad input).
 */
import { readU16LE, readU32LE, writeU16LE, writeU32LE } from "../bytes.ts";
import { macKeyAt, writeMac, type MacKey } from "../mac.ts";
import { fail, ok, type Failure, type Result } from "../result.ts";
import {
  FRAMING_VERSION, MAX_FILTER_MACS, MAX_FRAME_BYTES, MAX_MACS_PER_PORT, MAX_MESSAGE_BYTES, MAX_RECORDS_PER_MESSAGE,
  MAX_RESUME_TOKEN_BYTES, MAX_STATS_DROPS, MAX_STRING_BYTES, MESSAGE_HEADER_BYTES, MESSAGE_MAGIC, PORT_KINDS,
  RECORD_HEADER_BYTES, RecordType, RxFlag, SESSION_ID_BYTES, TxFlag, VNET_HEADER_BYTES, type PortKind,
} from "./constants.ts";
import type { DecodeErrorCode, EncodeErrorCode, HelloRecord, TunnelRecord, TunnelRecordType } from "./records.ts";

/** No prefix: an RX record of one part. */
const EMPTY_PREFIX = new Uint8Array(0);

const TWO_POW_32 = 2 ** 32;
/** Largest high word of a u64 counter that still fits a double exactly (2^53 - 1). */
const MAX_SAFE_HIGH_WORD = 0x1f_ffff;
const TX_BODY_PREFIX = 2;

// Fatal so that invalid UTF-8 is an error, not U+FFFD; ignoreBOM so a leading U+FEFF survives a round trip.
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

const TYPE_NAMES: Readonly<Record<number, TunnelRecordType>> = {
  [RecordType.Hello]: "hello",
  [RecordType.Welcome]: "welcome",
  [RecordType.Refuse]: "refuse",
  [RecordType.Bye]: "bye",
  [RecordType.Tx]: "tx",
  [RecordType.TxComplete]: "tx-complete",
  [RecordType.RxPost]: "rx-post",
  [RecordType.Rx]: "rx",
  [RecordType.SetFilter]: "set-filter",
  [RecordType.AddMac]: "add-mac",
  [RecordType.RemoveMac]: "remove-mac",
  [RecordType.Ack]: "ack",
  [RecordType.StatsRequest]: "stats-request",
  [RecordType.StatsReply]: "stats-reply",
  [RecordType.Ping]: "ping",
  [RecordType.Pong]: "pong",
  [RecordType.Link]: "link",
};

/** The wire type code of a record type name. */
export const RECORD_TYPE_CODES: Readonly<Record<TunnelRecordType, number>> = Object.fromEntries(
  Object.entries(TYPE_NAMES).map(([code, name]) => [name, Number(code)]),
) as Record<TunnelRecordType, number>;


// ---------------------------------------------------------------------------
// Decoding

/** Receives the records of a valid message, in order; a missing method routes that record to `record`. */
export interface RecordVisitor {
  /** A TX descriptor; `frame` is a view into the message. */
  tx?(id: number, flags: number, frame: Uint8Array): void;
  /** An RX record; `frame` is a view into the message. */
  rx?(flags: number, frame: Uint8Array): void;
  /** A completion run. */
  txComplete?(firstId: number, count: number, status: number): void;
  /** An RX credit post. */
  rxPost?(count: number, bufferSize: number): void;
  /** Any other record (and the four above when their method is absent), decoded as an object. */
  record?(record: TunnelRecord): void;
}

/** Where a record sits, for error messages. */
interface Place { index: number; offset: number; name: string }

function placeText(place: Place): string {
  return `record ${place.index} (${place.name}) at byte ${place.offset}`;
}

/** Reads the fields of one record body in order; the first problem sticks and later reads return zeros. */
class BodyReader {
  private pos: number;
  failure: Failure<DecodeErrorCode> | null = null;

  constructor(private readonly bytes: Uint8Array, start: number, private readonly end: number, private readonly place: Place) {
    this.pos = start;
  }

  /** Records the first failure only, so the message names the root cause. */
  fail(code: DecodeErrorCode, detail: string): void {
    if (this.failure === null) this.failure = { code, message: `${placeText(this.place)}: ${detail}` };
  }

  /** True if `n` more bytes are in the body; otherwise fails with bad-record-length. */
  private take(n: number, field: string): boolean {
    if (this.failure !== null) return false;
    if (this.pos + n > this.end) {
      this.fail("bad-record-length", `body ends before ${field} (needs ${n} bytes at body offset ${this.pos - this.bodyStart()})`);
      return false;
    }
    return true;
  }

  private bodyStart(): number {
    return this.place.offset + RECORD_HEADER_BYTES;
  }

  u8(field: string): number {
    if (!this.take(1, field)) return 0;
    return this.bytes[this.pos++] as number;
  }

  u16(field: string): number {
    if (!this.take(2, field)) return 0;
    const value = readU16LE(this.bytes, this.pos);
    this.pos += 2;
    return value;
  }

  u32(field: string): number {
    if (!this.take(4, field)) return 0;
    const value = readU32LE(this.bytes, this.pos);
    this.pos += 4;
    return value;
  }

  /** A u64 that must fit a double exactly (counters). */
  u64(field: string): number {
    const low = this.u32(field);
    const high = this.u32(field);
    if (high > MAX_SAFE_HIGH_WORD) this.fail("counter-out-of-range", `${field} exceeds 2^53 - 1`);
    return high * TWO_POW_32 + low;
  }

  f64(field: string): number {
    if (!this.take(8, field)) return 0;
    const view = new DataView(this.bytes.buffer, this.bytes.byteOffset + this.pos, 8);
    this.pos += 8;
    return view.getFloat64(0, true);
  }

  /** A 0/1 byte. */
  bool(field: string): boolean {
    const value = this.u8(field);
    if (value > 1) this.fail("invalid-boolean", `${field} must be 0 or 1, got ${value}`);
    return value === 1;
  }

  /** `n` raw bytes as a view into the message. */
  view(n: number, field: string): Uint8Array {
    if (!this.take(n, field)) return new Uint8Array(0);
    const value = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return value;
  }

  mac(field: string): MacKey {
    if (!this.take(6, field)) return 0;
    const value = macKeyAt(this.bytes, this.pos);
    this.pos += 6;
    return value;
  }

  /** `count` MACs, after checking `count` against `limit`. */
  macs(count: number, limit: number, field: string): MacKey[] {
    if (count > limit) {
      this.fail("too-many-macs", `${field} has ${count} addresses, at most ${limit} allowed`);
      return [];
    }
    const list: MacKey[] = [];
    for (let i = 0; i < count; i++) list.push(this.mac(field));
    return list;
  }

  /** A string: u8 byte length, then that many bytes of UTF-8. */
  string(field: string): string {
    const length = this.u8(`${field} length`);
    const raw = this.view(length, field);
    if (this.failure !== null || length === 0) return "";
    try {
      return utf8Decoder.decode(raw);
    } catch {
      this.fail("invalid-utf8", `${field} is not valid UTF-8`);
      return "";
    }
  }

  /** Fails unless every body byte was consumed. */
  done(): void {
    if (this.failure === null && this.pos !== this.end) {
      this.fail("bad-record-length", `${this.end - this.pos} unexpected bytes after the last field`);
    }
  }
}

function portKindAt(reader: BodyReader): PortKind {
  const code = reader.u8("port kind");
  const kind = PORT_KINDS[code];
  if (kind === undefined) {
    reader.fail("invalid-port-kind", `port kind ${code} is not 0 (member), 1 (bridge) or 2 (monitor)`);
    return "member";
  }
  return kind;
}

function readHello(r: BodyReader): TunnelRecord {
  const minVersion = r.u16("minVersion");
  const maxVersion = r.u16("maxVersion");
  const features = r.u32("features");
  const txWindow = r.u16("txWindow");
  const portKind = portKindAt(r);
  const macCount = r.u8("MAC count");
  const rxQueue = r.u32("rxQueue");
  const macs = r.macs(macCount, MAX_MACS_PER_PORT, "requested MACs");
  const clientName = r.string("client name");
  const clientVersion = r.string("client version");
  const hello: HelloRecord = { type: "hello", minVersion, maxVersion, features, portKind, macs, txWindow, rxQueue, clientName, clientVersion };
  if (r.bool("resume flag")) hello.resume = { sessionId: r.view(SESSION_ID_BYTES, "session id"), token: readToken(r) };
  return hello;
}

function readToken(r: BodyReader): Uint8Array {
  const length = r.u8("token length");
  if (length > MAX_RESUME_TOKEN_BYTES) r.fail("token-too-long", `resume token is ${length} bytes, at most ${MAX_RESUME_TOKEN_BYTES} allowed`);
  return r.view(length, "resume token");
}

function readWelcome(r: BodyReader): TunnelRecord {
  const version = r.u16("version");
  const txWindow = r.u16("txWindow");
  const features = r.u32("features");
  const portId = r.u32("portId");
  const rxQueue = r.u32("rxQueue");
  const maxFrameSize = r.u16("maxFrameSize");
  const macCount = r.u8("MAC count");
  const tokenLength = r.u8("token length");
  const sessionId = r.view(SESSION_ID_BYTES, "session id");
  const macs = r.macs(macCount, MAX_MACS_PER_PORT, "assigned MACs");
  if (tokenLength > MAX_RESUME_TOKEN_BYTES) r.fail("token-too-long", `resume token is ${tokenLength} bytes, at most ${MAX_RESUME_TOKEN_BYTES} allowed`);
  const resumeToken = r.view(tokenLength, "resume token");
  return { type: "welcome", version, features, portId, maxFrameSize, txWindow, rxQueue, sessionId, resumeToken, macs };
}

function readStatsReply(r: BodyReader): TunnelRecord {
  const seq = r.u32("seq");
  const creditsAvailable = r.u32("creditsAvailable");
  const queuedFrames = r.u32("queuedFrames");
  const queuedBytes = r.u32("queuedBytes");
  const rxFrames = r.u64("rxFrames");
  const rxBytes = r.u64("rxBytes");
  const txFrames = r.u64("txFrames");
  const txBytes = r.u64("txBytes");
  const dropCount = r.u8("drop count");
  if (dropCount > MAX_STATS_DROPS) r.fail("bad-record-length", `drop count ${dropCount} exceeds ${MAX_STATS_DROPS}`);
  const drops: number[] = [];
  for (let i = 0; i < dropCount && r.failure === null; i++) drops.push(r.u64(`drops[${i}]`));
  const counters = { rxFrames, rxBytes, txFrames, txBytes, drops };
  return { type: "stats-reply", seq, counters, creditsAvailable, queuedFrames, queuedBytes };
}

function readSetFilter(r: BodyReader): TunnelRecord {
  const seq = r.u32("seq");
  const promiscuous = r.bool("promiscuous");
  const allMulticast = r.bool("allMulticast");
  const count = r.u8("multicast count");
  const multicast = r.macs(count, MAX_FILTER_MACS, "multicast list");
  return { type: "set-filter", seq, promiscuous, allMulticast, multicast };
}

/** Decoders of the records that are not on the frame hot path, by type code. */
const CONTROL_READERS: Readonly<Record<number, (r: BodyReader) => TunnelRecord>> = {
  [RecordType.Hello]: readHello,
  [RecordType.Welcome]: readWelcome,
  [RecordType.Refuse]: (r) => ({ type: "refuse", code: r.u16("code"), reason: r.string("reason") }),
  [RecordType.Bye]: (r) => ({ type: "bye", code: r.u16("code"), reason: r.string("reason") }),
  [RecordType.SetFilter]: readSetFilter,
  [RecordType.AddMac]: (r) => ({ type: "add-mac", seq: r.u32("seq"), mac: r.mac("mac") }),
  [RecordType.RemoveMac]: (r) => ({ type: "remove-mac", seq: r.u32("seq"), mac: r.mac("mac") }),
  [RecordType.Ack]: (r) => ({ type: "ack", seq: r.u32("seq"), status: r.u16("status"), reason: r.string("reason") }),
  [RecordType.StatsRequest]: (r) => ({ type: "stats-request", seq: r.u32("seq") }),
  [RecordType.StatsReply]: readStatsReply,
  [RecordType.Ping]: (r) => ({ type: "ping", seq: r.u32("seq"), timestamp: r.f64("timestamp") }),
  [RecordType.Pong]: (r) => ({ type: "pong", seq: r.u32("seq"), timestamp: r.f64("timestamp") }),
  // protocol.md §8.6: up at 0, byte 1 reserved (sent as 0, ignored), the reason at 2.
  [RecordType.Link]: (r) => {
    const up = r.bool("up");
    r.u8("reserved");
    return { type: "link", up, reason: r.string("reason") };
  },
};

/** Checks the message header; returns the record count. */
function checkHeader(bytes: Uint8Array): Result<number, DecodeErrorCode> {
  if (bytes.length > MAX_MESSAGE_BYTES) {
    return fail("message-too-large", `message is ${bytes.length} bytes, at most ${MAX_MESSAGE_BYTES} allowed`);
  }
  if (bytes.length < MESSAGE_HEADER_BYTES) {
    return fail("truncated-header", `message is ${bytes.length} bytes, the header alone is ${MESSAGE_HEADER_BYTES}`);
  }
  const magic = readU16LE(bytes, 0);
  if (magic !== MESSAGE_MAGIC) return fail("bad-magic", `magic is 0x${magic.toString(16).padStart(4, "0")}, expected 0x4c45 ("EL")`);
  const version = bytes[2] as number;
  if (version !== FRAMING_VERSION) return fail("unsupported-version", `framing version ${version}, only ${FRAMING_VERSION} is supported`);
  if (bytes[3] !== 0 || readU16LE(bytes, 6) !== 0) return fail("reserved-nonzero", "header flags (byte 3) and reserved (bytes 6-7) must be zero");
  const count = readU16LE(bytes, 4);
  if (count > MAX_RECORDS_PER_MESSAGE) return fail("too-many-records", `${count} records, at most ${MAX_RECORDS_PER_MESSAGE} allowed`);
  return ok(count);
}

/** Internal sink: pass `null` to validate only. */
type Sink = RecordVisitor | null;

/**
 * One pass over a message. Record walkers return the next offset, or -1 after storing the failure here;
 * plain numbers instead of Result objects keep the per-record hot path free of allocations.
 */
interface Walk {
  readonly bytes: Uint8Array;
  readonly sink: Sink;
  index: number;
  offset: number;
  failure: Failure<DecodeErrorCode> | null;
}

/** Stores a failure for the current record and returns -1. */
function failRecord(walk: Walk, code: DecodeErrorCode, detail: string): number {
  const name = TYPE_NAMES[walk.bytes[walk.offset] as number] ?? "unknown";
  walk.failure = { code, message: `${placeText({ index: walk.index, offset: walk.offset, name })}: ${detail}` };
  return -1;
}

/** Decodes the record at walk.offset, hands it to the sink, and returns the next offset (or -1). */
function walkRecord(walk: Walk): number {
  const { bytes, offset, index } = walk;
  if (offset + RECORD_HEADER_BYTES > bytes.length) {
    walk.failure = { code: "truncated-record", message: `record ${index} header at byte ${offset} needs ${RECORD_HEADER_BYTES} bytes, ${bytes.length - offset} left` };
    return -1;
  }
  const code = bytes[offset] as number;
  const flags = bytes[offset + 1] as number;
  const length = readU32LE(bytes, offset + 2);
  const start = offset + RECORD_HEADER_BYTES;
  const end = start + length;
  if (TYPE_NAMES[code] === undefined) return failRecord(walk, "unknown-record-type", `unknown type 0x${code.toString(16).padStart(2, "0")}`);
  if (end > bytes.length) return failRecord(walk, "record-length-past-end", `claims ${length} body bytes, ${bytes.length - start} left`);
  switch (code) {
    case RecordType.Tx: return walkTx(walk, start, end, flags);
    case RecordType.Rx: return walkRx(walk, start, end, flags);
    case RecordType.TxComplete: return walkTxComplete(walk, start, end, flags);
    case RecordType.RxPost: return walkRxPost(walk, start, end, flags);
    default: return walkControl(walk, start, end, flags);
  }
}

/** Largest tx/rx record frame: 65,535, plus the virtio-net header when the record's flags carry `headerFlag`. */
function maxFrameFor(flags: number, headerFlag: number): number {
  return (flags & headerFlag) !== 0 ? MAX_FRAME_BYTES + VNET_HEADER_BYTES : MAX_FRAME_BYTES;
}

function walkTx(walk: Walk, start: number, end: number, flags: number): number {
  const frameLength = end - start - TX_BODY_PREFIX;
  if (frameLength < 0) return failRecord(walk, "bad-record-length", `body is ${end - start} bytes, a TX needs at least 2 (the id)`);
  const maxTx = maxFrameFor(flags, TxFlag.VnetHeader);
  if (frameLength > maxTx) return failRecord(walk, "oversize-frame", `frame is ${frameLength} bytes, at most ${maxTx}`);
  const sink = walk.sink;
  if (sink !== null) {
    const id = readU16LE(walk.bytes, start);
    const frame = walk.bytes.subarray(start + TX_BODY_PREFIX, end);
    if (sink.tx !== undefined) sink.tx(id, flags, frame);
    else sink.record?.({ type: "tx", id, flags, frame });
  }
  return end;
}

function walkRx(walk: Walk, start: number, end: number, flags: number): number {
  const maxRx = maxFrameFor(flags, RxFlag.VnetHeader);
  if (end - start > maxRx) return failRecord(walk, "oversize-frame", `frame is ${end - start} bytes, at most ${maxRx}`);
  const sink = walk.sink;
  if (sink !== null) {
    const frame = walk.bytes.subarray(start, end);
    if (sink.rx !== undefined) sink.rx(flags, frame);
    else sink.record?.({ type: "rx", flags, frame });
  }
  return end;
}

function walkTxComplete(walk: Walk, start: number, end: number, flags: number): number {
  if (!checkFixedBody(walk, end - start, 6, flags)) return -1;
  const bytes = walk.bytes;
  const count = readU16LE(bytes, start + 2);
  if (count === 0) return failRecord(walk, "zero-count", "a completion run must cover at least one id");
  const sink = walk.sink;
  if (sink !== null) {
    const firstId = readU16LE(bytes, start);
    const status = readU16LE(bytes, start + 4);
    if (sink.txComplete !== undefined) sink.txComplete(firstId, count, status);
    else sink.record?.({ type: "tx-complete", firstId, count, status });
  }
  return end;
}

function walkRxPost(walk: Walk, start: number, end: number, flags: number): number {
  if (!checkFixedBody(walk, end - start, 8, flags)) return -1;
  const sink = walk.sink;
  if (sink !== null) {
    const count = readU32LE(walk.bytes, start);
    const bufferSize = readU32LE(walk.bytes, start + 4);
    if (sink.rxPost !== undefined) sink.rxPost(count, bufferSize);
    else sink.record?.({ type: "rx-post", count, bufferSize });
  }
  return end;
}

/** For fixed-size records: flags must be zero and the body exactly `size` bytes. */
function checkFixedBody(walk: Walk, length: number, size: number, flags: number): boolean {
  if (flags !== 0) failRecord(walk, "reserved-nonzero", `record flags must be zero, got 0x${flags.toString(16)}`);
  else if (length !== size) failRecord(walk, "bad-record-length", `body is ${length} bytes, must be exactly ${size}`);
  return walk.failure === null;
}

function walkControl(walk: Walk, start: number, end: number, flags: number): number {
  if (flags !== 0) return failRecord(walk, "reserved-nonzero", `record flags must be zero, got 0x${flags.toString(16)}`);
  const code = walk.bytes[walk.offset] as number;
  const place = { index: walk.index, offset: walk.offset, name: TYPE_NAMES[code] as string };
  const reader = new BodyReader(walk.bytes, start, end, place);
  const record = (CONTROL_READERS[code] as (r: BodyReader) => TunnelRecord)(reader);
  reader.done();
  if (reader.failure !== null) {
    walk.failure = reader.failure;
    return -1;
  }
  walk.sink?.record?.(record);
  return end;
}

/** Walks every record; stops at the first failure. */
function walkMessage(bytes: Uint8Array, sink: Sink): Result<number, DecodeErrorCode> {
  const header = checkHeader(bytes);
  if (!header.ok) return header;
  const walk: Walk = { bytes, sink, index: 0, offset: MESSAGE_HEADER_BYTES, failure: null };
  for (; walk.index < header.value; walk.index++) {
    const next = walkRecord(walk);
    if (next < 0) return { ok: false, error: walk.failure as Failure<DecodeErrorCode> };
    walk.offset = next;
  }
  if (walk.offset !== bytes.length) {
    return fail("record-count-mismatch", `header declares ${header.value} records ending at byte ${walk.offset}, but the message has ${bytes.length} bytes`);
  }
  return header;
}

/**
 * Decodes a whole message into records (strict, zero-copy: frames are views into `bytes`).
 * @param bytes one binary WebSocket message
 * @returns the records in order, or the first problem found (no partial result)
 */
export function decodeMessage(bytes: Uint8Array): Result<TunnelRecord[], DecodeErrorCode> {
  const records: TunnelRecord[] = [];
  const walked = walkMessage(bytes, { record: (record) => records.push(record) });
  return walked.ok ? ok(records) : walked;
}

/**
 * Validates a whole message, then hands its records to `visitor` in order without allocating per TX/RX record
 * beyond the frame view. The visitor is called only if the entire message is valid.
 * @param bytes one binary WebSocket message
 * @param visitor methods per record kind
 * @returns the record count, or the first problem found (then the visitor was never called)
 */
export function forEachRecord(bytes: Uint8Array, visitor: RecordVisitor): Result<number, DecodeErrorCode> {
  const checked = walkMessage(bytes, null);
  if (!checked.ok) return checked;
  return walkMessage(bytes, visitor);
}

// ---------------------------------------------------------------------------
// Encoding

/** Thrown by the encoder when a record field is outside its wire range: a caller bug. */
export class TunnelEncodeError extends Error {
  constructor(readonly code: EncodeErrorCode, message: string) {
    super(message);
    this.name = "TunnelEncodeError";
  }
}

function checkUint(value: number, max: number, field: string): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new TunnelEncodeError("field-out-of-range", `${field} must be an integer in 0..${max}, got ${value}`);
  }
}

function utf8Of(text: string, field: string): Uint8Array {
  const encoded = utf8Encoder.encode(text);
  if (encoded.length > MAX_STRING_BYTES) {
    throw new TunnelEncodeError("string-too-long", `${field} is ${encoded.length} UTF-8 bytes, at most ${MAX_STRING_BYTES}`);
  }
  return encoded;
}

function checkMacCount(macs: readonly MacKey[], limit: number, field: string): void {
  if (macs.length > limit) throw new TunnelEncodeError("too-many-macs", `${field} has ${macs.length} addresses, at most ${limit}`);
  for (const mac of macs) checkUint(mac, 0xffff_ffff_ffff, field);
}

const INITIAL_CAPACITY = 16 * 1024;

/**
 * Streaming encoder for one message at a time: append records, then `finish()`.
 * The buffer grows by doubling up to MAX_MESSAGE_BYTES and is kept across `reset()`,
 * so a hot path allocates nothing per record.
 */
export class MessageEncoder {
  private buffer: Uint8Array;
  private position = MESSAGE_HEADER_BYTES;
  private count = 0;

  /** @param initialCapacity starting buffer size in bytes */
  constructor(initialCapacity = INITIAL_CAPACITY) {
    this.buffer = new Uint8Array(Math.max(MESSAGE_HEADER_BYTES, Math.min(initialCapacity, MAX_MESSAGE_BYTES)));
  }

  /** Records appended since the last reset. */
  get recordCount(): number {
    return this.count;
  }

  /** Bytes the finished message will have, header included. */
  get byteLength(): number {
    return this.position;
  }

  /** True if a TX or RX record with a frame of `frameLength` bytes still fits this message. */
  fitsFrame(frameLength: number): boolean {
    return this.count < MAX_RECORDS_PER_MESSAGE &&
      this.position + RECORD_HEADER_BYTES + TX_BODY_PREFIX + frameLength <= MAX_MESSAGE_BYTES;
  }

  /** True if a record whose body is `bodyLength` bytes still fits this message. */
  fitsBody(bodyLength: number): boolean {
    return this.count < MAX_RECORDS_PER_MESSAGE && this.position + RECORD_HEADER_BYTES + bodyLength <= MAX_MESSAGE_BYTES;
  }

  /** Appends a TX record. @param id u16 descriptor id @param flags u8 @param frame the Ethernet frame (copied) */
  addTx(id: number, flags: number, frame: Uint8Array): void {
    checkUint(id, 0xffff, "tx id");
    this.checkFrame(frame, flags, TxFlag.VnetHeader);
    let at = this.beginRecord(RecordType.Tx, flags, TX_BODY_PREFIX + frame.length);
    at = this.putU16(at, id);
    this.buffer.set(frame, at);
  }

  /**
   * Appends an RX record. @param flags u8 (RxFlag bits) @param frame the Ethernet frame (copied)
   * @param prefix bytes that go before `frame` in the record (a virtio-net header), so a caller
   * holding the two apart need not join them into a new buffer first
   */
  addRx(flags: number, frame: Uint8Array, prefix: Uint8Array = EMPTY_PREFIX): void {
    const length = prefix.length + frame.length;
    this.checkLength(length, flags, RxFlag.VnetHeader);
    const at = this.beginRecord(RecordType.Rx, flags, length);
    if (prefix.length > 0) this.buffer.set(prefix, at);
    this.buffer.set(frame, at + prefix.length);
  }

  /** Appends a completion run. @param firstId u16 @param count 1..65535 ids @param status 0 or a DropReason */
  addTxComplete(firstId: number, count: number, status: number): void {
    checkUint(firstId, 0xffff, "firstId");
    checkUint(count, 0xffff, "count");
    if (count === 0) throw new TunnelEncodeError("field-out-of-range", "a completion run must cover at least one id");
    checkUint(status, 0xffff, "status");
    let at = this.beginRecord(RecordType.TxComplete, 0, 6);
    at = this.putU16(at, firstId);
    at = this.putU16(at, count);
    this.putU16(at, status);
  }

  /** Appends an rx-post. @param count u32 buffers @param bufferSize u32 bytes each */
  addRxPost(count: number, bufferSize: number): void {
    checkUint(count, 0xffff_ffff, "count");
    checkUint(bufferSize, 0xffff_ffff, "bufferSize");
    let at = this.beginRecord(RecordType.RxPost, 0, 8);
    at = this.putU32(at, count);
    this.putU32(at, bufferSize);
  }

  /** Appends any record. @param record the record; frames and byte fields are copied */
  add(record: TunnelRecord): void {
    switch (record.type) {
      case "tx": return this.addTx(record.id, record.flags, record.frame);
      case "rx": return this.addRx(record.flags, record.frame);
      case "tx-complete": return this.addTxComplete(record.firstId, record.count, record.status);
      case "rx-post": return this.addRxPost(record.count, record.bufferSize);
      default: return this.addControl(record);
    }
  }

  /**
   * The finished message as a fresh copy the caller owns; the encoder keeps its records until `reset()`.
   * @returns header + records
   */
  finish(): Uint8Array {
    return this.finishView().slice();
  }

  /**
   * The finished message as a view of the encoder's own buffer: no copy, but valid only until the next
   * add or reset. Use it when the bytes are consumed (or copied by the runtime) before that: the Node
   * client hands it to `ws`, which masks every client message into a buffer of its own. A sender whose
   * `send()` keeps a reference (workerd's WebSocket, `ws` with a zero mask) needs `finish()`.
   * @returns header + records
   */
  finishView(): Uint8Array {
    this.writeHeader();
    return this.buffer.subarray(0, this.position);
  }

  /** Empties the encoder, keeping its buffer. */
  reset(): void {
    this.position = MESSAGE_HEADER_BYTES;
    this.count = 0;
  }

  private writeHeader(): void {
    this.putU16(0, MESSAGE_MAGIC);
    this.buffer[2] = FRAMING_VERSION;
    this.buffer[3] = 0;
    this.putU16(4, this.count);
    this.putU16(6, 0);
  }

  private checkFrame(frame: Uint8Array, flags: number, headerFlag: number): void {
    this.checkLength(frame.length, flags, headerFlag);
  }

  private checkLength(length: number, flags: number, headerFlag: number): void {
    checkUint(flags, 0xff, "flags");
    const max = maxFrameFor(flags, headerFlag);
    if (length > max) {
      throw new TunnelEncodeError("oversize-frame", `frame is ${length} bytes, at most ${max}`);
    }
  }

  /** Writes a record header after checking limits; returns where the body starts. */
  private beginRecord(type: number, flags: number, bodyLength: number): number {
    if (!this.fitsBody(bodyLength)) {
      throw new TunnelEncodeError("message-full", `record of ${bodyLength} body bytes does not fit: ${this.count} records, ${this.position} bytes so far`);
    }
    this.ensure(this.position + RECORD_HEADER_BYTES + bodyLength);
    const at = this.position;
    this.buffer[at] = type;
    this.buffer[at + 1] = flags;
    this.putU32(at + 2, bodyLength);
    this.position = at + RECORD_HEADER_BYTES + bodyLength;
    this.count++;
    return at + RECORD_HEADER_BYTES;
  }

  private ensure(size: number): void {
    if (size <= this.buffer.length) return;
    let capacity = this.buffer.length;
    while (capacity < size) capacity *= 2;
    const grown = new Uint8Array(Math.min(capacity, MAX_MESSAGE_BYTES));
    grown.set(this.buffer.subarray(0, this.position));
    this.buffer = grown;
  }

  private putU16(at: number, value: number): number {
    writeU16LE(this.buffer, at, value);
    return at + 2;
  }

  private putU32(at: number, value: number): number {
    writeU32LE(this.buffer, at, value);
    return at + 4;
  }

  /** Encodes a control record into a scratch body, then appends it (cold path: allocation is fine). */
  private addControl(record: Exclude<TunnelRecord, { type: "tx" | "rx" | "tx-complete" | "rx-post" }>): void {
    const body = new BodyWriter();
    writeControlBody(body, record);
    const at = this.beginRecord(RECORD_TYPE_CODES[record.type], 0, body.length);
    body.copyInto(this.buffer, at);
  }
}

/** Collects the fields of one control record body. */
class BodyWriter {
  private readonly parts: Uint8Array[] = [];
  length = 0;

  bytes(value: Uint8Array): void {
    this.parts.push(value);
    this.length += value.length;
  }

  u8(value: number, field: string): void {
    checkUint(value, 0xff, field);
    this.bytes(Uint8Array.of(value));
  }

  u16(value: number, field: string): void {
    checkUint(value, 0xffff, field);
    this.bytes(Uint8Array.of(value & 0xff, value >>> 8));
  }

  u32(value: number, field: string): void {
    checkUint(value, 0xffff_ffff, field);
    this.bytes(Uint8Array.of(value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, value >>> 24));
  }

  u64(value: number, field: string): void {
    checkUint(value, Number.MAX_SAFE_INTEGER, field);
    this.u32(value % TWO_POW_32, field);
    this.u32(Math.floor(value / TWO_POW_32), field);
  }

  f64(value: number): void {
    const out = new Uint8Array(8);
    new DataView(out.buffer).setFloat64(0, value, true);
    this.bytes(out);
  }

  bool(value: boolean): void {
    this.bytes(Uint8Array.of(value ? 1 : 0));
  }

  macs(macs: readonly MacKey[]): void {
    const out = new Uint8Array(6 * macs.length);
    macs.forEach((mac, i) => writeMac(mac, out, 6 * i));
    this.bytes(out);
  }

  string(text: string, field: string): void {
    const encoded = utf8Of(text, field);
    this.u8(encoded.length, `${field} length`);
    this.bytes(encoded);
  }

  fixed(value: Uint8Array, size: number, field: string): void {
    if (value.length !== size) throw new TunnelEncodeError("field-out-of-range", `${field} must be ${size} bytes, got ${value.length}`);
    this.bytes(value);
  }

  token(value: Uint8Array): void {
    if (value.length > MAX_RESUME_TOKEN_BYTES) {
      throw new TunnelEncodeError("field-out-of-range", `resume token is ${value.length} bytes, at most ${MAX_RESUME_TOKEN_BYTES}`);
    }
    this.u8(value.length, "token length");
    this.bytes(value);
  }

  copyInto(target: Uint8Array, at: number): void {
    let offset = at;
    for (const part of this.parts) {
      target.set(part, offset);
      offset += part.length;
    }
  }
}

function writeHello(w: BodyWriter, r: Extract<TunnelRecord, { type: "hello" }>): void {
  checkMacCount(r.macs, MAX_MACS_PER_PORT, "requested MACs");
  const kind = PORT_KINDS.indexOf(r.portKind);
  if (kind < 0) throw new TunnelEncodeError("field-out-of-range", `unknown port kind ${String(r.portKind)}`);
  w.u16(r.minVersion, "minVersion");
  w.u16(r.maxVersion, "maxVersion");
  w.u32(r.features, "features");
  w.u16(r.txWindow, "txWindow");
  w.u8(kind, "port kind");
  w.u8(r.macs.length, "MAC count");
  w.u32(r.rxQueue, "rxQueue");
  w.macs(r.macs);
  w.string(r.clientName, "client name");
  w.string(r.clientVersion, "client version");
  w.bool(r.resume !== undefined);
  if (r.resume !== undefined) {
    w.fixed(r.resume.sessionId, SESSION_ID_BYTES, "session id");
    w.token(r.resume.token);
  }
}

function writeWelcome(w: BodyWriter, r: Extract<TunnelRecord, { type: "welcome" }>): void {
  checkMacCount(r.macs, MAX_MACS_PER_PORT, "assigned MACs");
  w.u16(r.version, "version");
  w.u16(r.txWindow, "txWindow");
  w.u32(r.features, "features");
  w.u32(r.portId, "portId");
  w.u32(r.rxQueue, "rxQueue");
  w.u16(r.maxFrameSize, "maxFrameSize");
  w.u8(r.macs.length, "MAC count");
  if (r.resumeToken.length > MAX_RESUME_TOKEN_BYTES) {
    throw new TunnelEncodeError("field-out-of-range", `resume token is ${r.resumeToken.length} bytes, at most ${MAX_RESUME_TOKEN_BYTES}`);
  }
  w.u8(r.resumeToken.length, "token length");
  w.fixed(r.sessionId, SESSION_ID_BYTES, "session id");
  w.macs(r.macs);
  w.bytes(r.resumeToken);
}

function writeStatsReply(w: BodyWriter, r: Extract<TunnelRecord, { type: "stats-reply" }>): void {
  const { counters } = r;
  if (counters.drops.length > MAX_STATS_DROPS) {
    throw new TunnelEncodeError("field-out-of-range", `${counters.drops.length} drop counters, at most ${MAX_STATS_DROPS}`);
  }
  w.u32(r.seq, "seq");
  w.u32(r.creditsAvailable, "creditsAvailable");
  w.u32(r.queuedFrames, "queuedFrames");
  w.u32(r.queuedBytes, "queuedBytes");
  w.u64(counters.rxFrames, "rxFrames");
  w.u64(counters.rxBytes, "rxBytes");
  w.u64(counters.txFrames, "txFrames");
  w.u64(counters.txBytes, "txBytes");
  w.u8(counters.drops.length, "drop count");
  counters.drops.forEach((value, i) => w.u64(value, `drops[${i}]`));
}

/** Serialises the body of a control record (every type except tx, rx, tx-complete, rx-post). */
function writeControlBody(w: BodyWriter, r: Exclude<TunnelRecord, { type: "tx" | "rx" | "tx-complete" | "rx-post" }>): void {
  switch (r.type) {
    case "hello": return writeHello(w, r);
    case "welcome": return writeWelcome(w, r);
    case "refuse":
    case "bye": w.u16(r.code, "code"); return w.string(r.reason, "reason");
    case "set-filter":
      checkMacCount(r.multicast, MAX_FILTER_MACS, "multicast list");
      w.u32(r.seq, "seq"); w.bool(r.promiscuous); w.bool(r.allMulticast); w.u8(r.multicast.length, "multicast count");
      return w.macs(r.multicast);
    case "add-mac":
    case "remove-mac": w.u32(r.seq, "seq"); checkMacCount([r.mac], 1, "mac"); return w.macs([r.mac]);
    case "ack": w.u32(r.seq, "seq"); w.u16(r.status, "status"); return w.string(r.reason, "reason");
    case "stats-request": return w.u32(r.seq, "seq");
    case "stats-reply": return writeStatsReply(w, r);
    case "ping":
    case "pong": w.u32(r.seq, "seq"); return w.f64(r.timestamp);
    case "link": w.bool(r.up); w.u8(0, "reserved"); return w.string(r.reason, "reason");
  }
}

const sharedEncoder = new MessageEncoder();

/**
 * Encodes records as one message.
 * @param records 0..MAX_RECORDS_PER_MESSAGE records
 * @returns a fresh byte array the caller owns
 * @throws TunnelEncodeError if a field is out of its wire range or the message would exceed the limits
 */
export function encodeMessage(records: readonly TunnelRecord[]): Uint8Array {
  sharedEncoder.reset();
  try {
    for (const record of records) sharedEncoder.add(record);
    return sharedEncoder.finish();
  } finally {
    sharedEncoder.reset();
  }
}

/**
 * Checks that a record can be encoded, as a value instead of an exception.
 * @param record the record to check
 * @returns ok, or the encode error code and message
 */
export function checkRecord(record: TunnelRecord): Result<void, EncodeErrorCode> {
  try {
    new MessageEncoder(MESSAGE_HEADER_BYTES).add(record);
    return ok(undefined);
  } catch (error) {
    if (error instanceof TunnelEncodeError) return fail(error.code, error.message);
    throw error;
  }
}

export { CompletionCoalescer } from "./completions.ts";
