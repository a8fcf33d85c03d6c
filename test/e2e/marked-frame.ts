import { writeMac } from "../../datapath/mac.ts";

/** A 64-byte Ethernet frame: destination, source, EtherType 0x88b5, byte 14 a marker to tell frames apart. */
export function markedFrame(dst: number, src: number, marker: number): Uint8Array {
  const bytes = new Uint8Array(64);
  writeMac(dst, bytes, 0);
  writeMac(src, bytes, 6);
  bytes.set([0x88, 0xb5, marker], 12);
  return bytes;
}
