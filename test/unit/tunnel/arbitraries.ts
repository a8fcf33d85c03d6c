// fast-check arbitraries for every tunnel record type, within the wire limits.
import fc from "fast-check";
import { MAX_RESUME_TOKEN_BYTES, PORT_KINDS } from "../../../datapath/tunnel/constants.ts";
import type { TunnelRecord } from "../../../datapath/tunnel/records.ts";

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const counter = fc.maxSafeNat();
const mac = fc.integer({ min: 0, max: 2 ** 48 - 1 });
const macs = (max: number): fc.Arbitrary<number[]> => fc.array(mac, { maxLength: max });
// Up to 60 code points of 4 UTF-8 bytes at most stays within the 255-byte string limit.
const text = fc.string({ unit: "binary", maxLength: 60 });
const bytes = (min: number, max: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: min, maxLength: max });
/** Byte arrays whose content comes from a seed: generating each byte separately would dominate the fuzz time. */
const seeded = (min: number, max: number): fc.Arbitrary<Uint8Array> =>
  fc.tuple(fc.integer({ min, max }), fc.integer({ min: 0, max: 0xffff_ffff })).map(([length, seed]) => {
    const out = new Uint8Array(length);
    let state = seed >>> 0;
    for (let i = 0; i < length; i++) {
      state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
      out[i] = state >>> 24;
    }
    return out;
  });
const frame = fc.oneof({ weight: 3, arbitrary: bytes(0, 24) }, { weight: 2, arbitrary: seeded(0, 1600) });

const hello = fc.record(
  {
    type: fc.constant("hello" as const), minVersion: u16, maxVersion: u16, features: u32, portKind: fc.constantFrom(...PORT_KINDS),
    macs: macs(16), txWindow: u16, rxQueue: u32, clientName: text, clientVersion: text,
    resume: fc.record({ sessionId: bytes(16, 16), token: bytes(0, MAX_RESUME_TOKEN_BYTES) }),
  },
  { requiredKeys: ["type", "minVersion", "maxVersion", "features", "portKind", "macs", "txWindow", "rxQueue", "clientName", "clientVersion"] },
);

const welcome = fc.record({
  type: fc.constant("welcome" as const), version: u16, features: u32, portId: u32, maxFrameSize: u16, txWindow: u16, rxQueue: u32,
  sessionId: bytes(16, 16), resumeToken: bytes(0, MAX_RESUME_TOKEN_BYTES), macs: macs(16),
});

const statsReply = fc.record({
  type: fc.constant("stats-reply" as const), seq: u32, creditsAvailable: u32, queuedFrames: u32, queuedBytes: u32,
  counters: fc.record({ rxFrames: counter, rxBytes: counter, txFrames: counter, txBytes: counter, drops: fc.array(counter, { maxLength: 64 }) }),
});

/** Any valid record of protocol v1. */
export const recordArb: fc.Arbitrary<TunnelRecord> = fc.oneof(
  hello,
  welcome,
  fc.record({ type: fc.constant("refuse" as const), code: u16, reason: text }),
  fc.record({ type: fc.constant("bye" as const), code: u16, reason: text }),
  fc.record({ type: fc.constant("tx" as const), id: u16, flags: u8, frame }),
  fc.record({ type: fc.constant("tx-complete" as const), firstId: u16, count: fc.integer({ min: 1, max: 0xffff }), status: u16 }),
  fc.record({ type: fc.constant("rx-post" as const), count: u32, bufferSize: u32 }),
  fc.record({ type: fc.constant("rx" as const), flags: u8, frame }),
  fc.record({ type: fc.constant("set-filter" as const), seq: u32, promiscuous: fc.boolean(), allMulticast: fc.boolean(), multicast: macs(64) }),
  fc.record({ type: fc.constant("add-mac" as const), seq: u32, mac }),
  fc.record({ type: fc.constant("remove-mac" as const), seq: u32, mac }),
  fc.record({ type: fc.constant("ack" as const), seq: u32, status: u16, reason: text }),
  fc.record({ type: fc.constant("stats-request" as const), seq: u32 }),
  statsReply,
  fc.record({ type: fc.constant("ping" as const), seq: u32, timestamp: fc.double() }),
  fc.record({ type: fc.constant("pong" as const), seq: u32, timestamp: fc.double() }),
  fc.record({ type: fc.constant("link" as const), up: fc.boolean(), reason: text }),
);

/** A valid message's records (a small batch). */
export const messageArb: fc.Arbitrary<TunnelRecord[]> = fc.array(recordArb, { maxLength: 8 });
