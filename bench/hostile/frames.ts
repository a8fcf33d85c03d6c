// Frames the hostile benchmark sends: plain Ethernet frames with a payload stamp, and
// TCPv4 GSO super-frames with a virtio-net header (the amplification attack).
import { ETHERTYPE_IPV4 } from "../../datapath/inet.ts";
import { VnetFlag, VnetGso, VNET_HDR_LEN, writeVnetHeader } from "../../datapath/offload.ts";
import { MAX_FRAME_BYTES } from "../../datapath/tunnel/constants.ts";

export const BROADCAST = 0xff_ff_ff_ff_ff_ff;
/** EtherType of the benchmark's own frames (IEEE local experimental). */
export const ETHERTYPE_BENCH = 0x88b5;
const ETH_HEADER = 14;
const IPV4_HEADER = 20;
const TCP_HEADER = 20;

export function writeMac(bytes: Uint8Array, at: number, mac: number): void {
  for (let i = 0; i < 6; i++) bytes[at + i] = Math.floor(mac / 2 ** (8 * (5 - i))) % 256;
}

export function readMac(bytes: Uint8Array, at: number): number {
  let mac = 0;
  for (let i = 0; i < 6; i++) mac = mac * 256 + (bytes[at + i] as number);
  return mac;
}

/** An Ethernet frame of `size` bytes (at least 60) from `src` to `dst` with the benchmark EtherType. */
export function ethernetFrame(dst: number, src: number, size = 60): Uint8Array {
  const bytes = new Uint8Array(Math.max(60, size));
  writeMac(bytes, 0, dst);
  writeMac(bytes, 6, src);
  bytes[12] = ETHERTYPE_BENCH >>> 8;
  bytes[13] = ETHERTYPE_BENCH & 0xff;
  return bytes;
}

/** A bystander ping or echo: kind byte, sequence number and the sender's send time (ms, float64). */
export interface Stamp {
  echo: boolean;
  seq: number;
  sentAt: number;
}

const STAMP_AT = ETH_HEADER;

export function stampedFrame(dst: number, src: number, stamp: Stamp): Uint8Array {
  const bytes = ethernetFrame(dst, src, 64);
  const view = new DataView(bytes.buffer);
  bytes[STAMP_AT] = stamp.echo ? 2 : 1;
  view.setUint32(STAMP_AT + 1, stamp.seq);
  view.setFloat64(STAMP_AT + 5, stamp.sentAt);
  return bytes;
}

/** The stamp of a bystander frame, or null for anything else (floods, attack traffic). */
export function readStamp(frame: Uint8Array): Stamp | null {
  if (frame.length < 64 || frame[12] !== ETHERTYPE_BENCH >>> 8 || frame[13] !== (ETHERTYPE_BENCH & 0xff)) return null;
  const kind = frame[STAMP_AT];
  if (kind !== 1 && kind !== 2) return null;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  return { echo: kind === 2, seq: view.getUint32(STAMP_AT + 1), sentAt: view.getFloat64(STAMP_AT + 5) };
}

/**
 * A virtio-net header + TCPv4 super-frame of `payload` bytes that asks to be cut into segments
 * of `gsoSize` bytes: with gso_size 1 one 64 KiB super-frame becomes ~65,000 frames.
 */
export function tcpSuperFrame(dst: number, src: number, payload: number, gsoSize: number): Uint8Array {
  const frameLength = Math.min(MAX_FRAME_BYTES, ETH_HEADER + IPV4_HEADER + TCP_HEADER + payload);
  const bytes = new Uint8Array(VNET_HDR_LEN + frameLength);
  const headers = ETH_HEADER + IPV4_HEADER + TCP_HEADER;
  writeVnetHeader({ flags: VnetFlag.NeedsCsum, gsoType: VnetGso.TcpV4, hdrLen: headers, gsoSize, csumStart: ETH_HEADER + IPV4_HEADER, csumOffset: 16 }, bytes);
  const frame = bytes.subarray(VNET_HDR_LEN);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  writeMac(frame, 0, dst);
  writeMac(frame, 6, src);
  view.setUint16(12, ETHERTYPE_IPV4);
  frame[ETH_HEADER] = 0x45;
  view.setUint16(ETH_HEADER + 2, frameLength - ETH_HEADER);
  frame[ETH_HEADER + 8] = 64;
  frame[ETH_HEADER + 9] = 6;
  view.setUint32(ETH_HEADER + 12, 0x0a_ea_00_01);
  view.setUint32(ETH_HEADER + 16, 0x0a_ea_00_02);
  const tcp = ETH_HEADER + IPV4_HEADER;
  view.setUint16(tcp, 40000);
  view.setUint16(tcp + 2, 5001);
  frame[tcp + 12] = 5 << 4;
  frame[tcp + 13] = 0x10; // ACK
  view.setUint16(tcp + 14, 65535);
  return bytes;
}

/** Segments one super-frame becomes at `gsoSize`. */
export function segmentsOf(superFrame: Uint8Array, gsoSize: number): number {
  const payload = superFrame.length - VNET_HDR_LEN - ETH_HEADER - IPV4_HEADER - TCP_HEADER;
  return Math.max(1, Math.ceil(payload / gsoSize));
}
