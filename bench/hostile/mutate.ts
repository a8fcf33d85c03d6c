// Random and mutated tunnel messages for the fuzz runner: valid records built with the real
// encoder, then (most of the time) broken in one of several ways. A seeded generator makes
// every run reproducible.
import { MessageEncoder } from "../../datapath/tunnel/codec.ts";
import { KNOWN_FEATURES, MAX_FILTER_MACS, RecordType } from "../../datapath/tunnel/constants.ts";
import type { TunnelRecord } from "../../datapath/tunnel/records.ts";
import { BROADCAST, ethernetFrame } from "./frames.ts";

/** xorshift32: small, fast, seeded. */
export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  /** A uint32. */
  next(): number {
    let x = this.state;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state;
  }

  /** An integer in [0, n). */
  below(n: number): number {
    return n <= 1 ? 0 : this.next() % n;
  }

  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)] as T;
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.next() & 0xff;
    return out;
  }

  /** A locally administered unicast MAC. */
  mac(): number {
    return 0x02_00_00_00_00_00 + this.below(0x1_0000_0000);
  }
}

/** A HELLO with random (but encodable) features, window, queue and MACs. */
export function randomHello(random: Random): TunnelRecord {
  const macs = Array.from({ length: random.below(3) }, () => random.mac());
  return {
    type: "hello", minVersion: 1, maxVersion: 1 + random.below(2), features: random.next() & KNOWN_FEATURES,
    portKind: random.chance(0.9) ? "member" : random.pick(["bridge", "monitor"] as const),
    macs, txWindow: 1 + random.below(1024), rxQueue: random.below(1024), clientName: "fuzz", clientVersion: String(random.below(100)),
  };
}

/**
 * A record a client may send in an open session, with random values (some out of what the segment accepts);
 * rarely (1 in 200) a record a client must not send there, which ends the session.
 */
function randomRecord(random: Random, nextId: () => number, bystanders: readonly number[]): TunnelRecord {
  switch (random.chance(0.005) ? 8 : random.below(8)) {
    case 0:
    case 1:
    case 2: {
      const dst = random.pick([BROADCAST, random.mac(), ...bystanders]);
      const frame = random.chance(0.8) ? ethernetFrame(dst, random.mac(), 60 + random.below(1500)) : random.bytes(random.below(1600));
      return { type: "tx", id: nextId(), flags: random.chance(0.9) ? 0 : random.below(256), frame };
    }
    case 3:
      // Mostly valid posts (an invalid one ends the session); the credits still run past the limit over a long session.
      return random.chance(0.02)
        ? { type: "rx-post", count: random.next(), bufferSize: random.pick([0, 59, random.next()]) }
        : { type: "rx-post", count: random.below(64), bufferSize: random.pick([60, 1514, 2048, 65_545]) };
    case 4:
      return {
        type: "set-filter", seq: random.next(), promiscuous: random.chance(0.3), allMulticast: random.chance(0.5),
        multicast: Array.from({ length: random.below(MAX_FILTER_MACS) }, () => random.mac() + 0x01_00_00_00_00_00 * random.below(2)),
      };
    case 5:
      return { type: random.chance(0.5) ? "add-mac" : "remove-mac", seq: random.next(), mac: random.chance(0.2) ? random.pick(bystanders) : random.mac() };
    case 6:
      return { type: "stats-request", seq: random.next() };
    case 7:
      return { type: "ping", seq: random.next(), timestamp: random.next() };
    default:
      return random.pick<TunnelRecord>([
        { type: "bye", code: 1000, reason: "fuzz" },
        { type: "tx-complete", firstId: random.below(65536), count: 1 + random.below(10), status: random.below(20) },
        { type: "pong", seq: random.next(), timestamp: random.next() },
        { type: "link", up: random.chance(0.5), reason: "fuzz" },
        randomHello(random),
      ]);
  }
}

/** A message of 1–32 random records, encoded by the real encoder. */
export function validMessage(random: Random, nextId: () => number, bystanders: readonly number[]): Uint8Array {
  const encoder = new MessageEncoder(4096);
  const count = 1 + random.below(32);
  for (let i = 0; i < count; i++) {
    try {
      encoder.add(randomRecord(random, nextId, bystanders));
    } catch {
      // A value the encoder itself refuses (too long, out of range): leave it out.
    }
  }
  return encoder.finish().slice();
}

const RECORD_TYPES = Object.values(RecordType);

/** Breaks a message in one random way: bit flips, truncation, extension, a wrong type, length or count, or plain garbage. */
export function mutate(random: Random, message: Uint8Array): Uint8Array {
  const out = message.slice();
  const view = new DataView(out.buffer);
  switch (random.below(8)) {
    case 0: {
      for (let flips = 1 + random.below(8); flips > 0 && out.length > 0; flips--) {
        const at = random.below(out.length);
        out[at] = (out[at] as number) ^ (1 << random.below(8));
      }
      return out;
    }
    case 1:
      return out.subarray(0, random.below(out.length));
    case 2: {
      const longer = new Uint8Array(out.length + 1 + random.below(64));
      longer.set(out);
      longer.set(random.bytes(longer.length - out.length), out.length);
      return longer;
    }
    case 3:
      // The first record's type byte (offset 8) becomes another known or unknown type.
      if (out.length > 8) out[8] = random.chance(0.5) ? random.pick(RECORD_TYPES) : random.below(256);
      return out;
    case 4:
      // The first record's body length (u32 at offset 10) lies.
      if (out.length >= 14) view.setUint32(10, random.chance(0.5) ? random.next() : Math.max(0, view.getUint32(10, true) + random.below(9) - 4), true);
      return out;
    case 5:
      // The header's record count (u16 at offset 4) lies.
      if (out.length >= 8) view.setUint16(4, random.below(0x10000), true);
      return out;
    case 6:
      // Magic, framing version or flags.
      if (out.length >= 8) out[random.below(4)] = random.below(256);
      return out;
    default:
      return random.bytes(random.below(2048));
  }
}
