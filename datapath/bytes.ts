/**
 * Unsigned integer reads and writes over byte arrays, at offsets the caller has checked. Network
 * headers are big-endian; the tunnel's framing and the virtio-net header are little-endian.
 */

/** A big-endian u16 at `at`. */
export function readU16BE(bytes: Uint8Array, at: number): number {
  return ((bytes[at] as number) << 8) | (bytes[at + 1] as number);
}

/** Writes a big-endian u16 at `at`. */
export function writeU16BE(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = (value >>> 8) & 0xff;
  bytes[at + 1] = value & 0xff;
}

/** A big-endian u32 at `at` (unsigned). */
export function readU32BE(bytes: Uint8Array, at: number): number {
  return (((bytes[at] as number) << 24) >>> 0) + (((bytes[at + 1] as number) << 16) | ((bytes[at + 2] as number) << 8) | (bytes[at + 3] as number));
}

/** Writes a big-endian u32 at `at`. */
export function writeU32BE(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = (value >>> 24) & 0xff;
  bytes[at + 1] = (value >>> 16) & 0xff;
  bytes[at + 2] = (value >>> 8) & 0xff;
  bytes[at + 3] = value & 0xff;
}

/** A little-endian u16 at `at`. */
export function readU16LE(bytes: Uint8Array, at: number): number {
  return (bytes[at] as number) | ((bytes[at + 1] as number) << 8);
}

/** Writes a little-endian u16 at `at`. */
export function writeU16LE(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff;
  bytes[at + 1] = (value >>> 8) & 0xff;
}

/** A little-endian u32 at `at` (unsigned: the top byte is multiplied, not shifted). */
export function readU32LE(bytes: Uint8Array, at: number): number {
  return ((bytes[at] as number) | ((bytes[at + 1] as number) << 8) | ((bytes[at + 2] as number) << 16)) + (bytes[at + 3] as number) * 0x100_0000;
}

/** Writes a little-endian u32 at `at`. */
export function writeU32LE(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff;
  bytes[at + 1] = (value >>> 8) & 0xff;
  bytes[at + 2] = (value >>> 16) & 0xff;
  bytes[at + 3] = (value >>> 24) & 0xff;
}

/** A new buffer holding `a` then `b`. */
export function joinBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
