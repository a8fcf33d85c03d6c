// Bench frames and the integrity checker: every bench frame carries its sender
// (byte 18) and a sequence number (bytes 14-17, little-endian), so the receiver
// can tell drops (gaps) from corruption (steps back).

/** EtherType of bench frames (IEEE local experimental); the checker ignores every other frame. */
const BENCH_ETHERTYPE = [0x88, 0xb5] as const;
const SEQ_AT = 14;
const SENDER_AT = 18;

function writeMac(bytes: Uint8Array, at: number, mac: number): void {
  for (let i = 0; i < 6; i++) bytes[at + i] = Math.floor(mac / 2 ** (8 * (5 - i))) % 256;
}

/** An Ethernet frame of `size` bytes from `src` to `dst`, EtherType 0x88b5 (local experimental). */
export function frame(dst: number, src: number, size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  writeMac(bytes, 0, dst);
  writeMac(bytes, 6, src);
  bytes[12] = BENCH_ETHERTYPE[0];
  bytes[13] = BENCH_ETHERTYPE[1];
  return bytes;
}

/** A bench frame from sender number `index` (MAC `src`): ready for stamp(). */
export function benchFrame(dst: number, src: number, index: number, size: number): Uint8Array {
  const bytes = frame(dst, src, size);
  bytes[SENDER_AT] = index;
  return bytes;
}

/** Writes sequence number `seq` into a bench frame. */
export function stamp(bytes: Uint8Array, seq: number): void {
  bytes[SEQ_AT] = seq & 0xff;
  bytes[SEQ_AT + 1] = (seq >>> 8) & 0xff;
  bytes[SEQ_AT + 2] = (seq >>> 16) & 0xff;
  bytes[SEQ_AT + 3] = (seq >>> 24) & 0xff;
}

/**
 * Frames from one sender arrive in order (one message is switched at a time), so each sender's
 * sequence must grow by exactly one; a gap is a drop (or corruption), a step back is corruption.
 */
export class Integrity {
  gaps = 0;
  /** Frames skipped over by gaps. */
  missing = 0;
  backwards = 0;
  private readonly expected: number[] = [];

  check(frame: Uint8Array): void {
    if (frame.length < SENDER_AT + 1 || frame[12] !== BENCH_ETHERTYPE[0] || frame[13] !== BENCH_ETHERTYPE[1]) return;
    const sender = frame[SENDER_AT] as number;
    const seq = ((frame[SEQ_AT] as number) | ((frame[SEQ_AT + 1] as number) << 8) | ((frame[SEQ_AT + 2] as number) << 16)) +
      (frame[SEQ_AT + 3] as number) * 0x100_0000;
    const expected = this.expected[sender] ?? 0;
    if (seq > expected) {
      this.gaps++;
      this.missing += seq - expected;
    }
    else if (seq < expected) this.backwards++;
    this.expected[sender] = seq + 1;
  }
}
