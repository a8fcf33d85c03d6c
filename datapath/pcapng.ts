/**
 * A pcapng writer (IETF draft-ietf-opsawg-pcapng): section header, interface
 * description, enhanced packet and interface statistics blocks, little-endian.
 * Each function returns one whole block, so a capture can be streamed block by
 * block to a file, a pipe (`wireshark -k -i -`) or a browser download.
 *
 * Every block is `type u32, total length u32, body, total length u32`, padded
 * to 32 bits; options are `code u16, length u16, value` padded to 32 bits and
 * closed by opt_endofopt (0, 0). Timestamps are u64 counts of the interface's
 * `if_tsresol` unit since 1970, written as the high then the low 32 bits.
 */

/** Block type codes. */
export const BlockType = {
  SectionHeader: 0x0a0d0d0a,
  InterfaceDescription: 0x00000001,
  InterfaceStatistics: 0x00000005,
  EnhancedPacket: 0x00000006,
} as const;

/** Written in every section header so a reader can tell the byte order. */
export const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

/** LINKTYPE_ETHERNET: frames start with the destination MAC, no FCS. */
export const LINKTYPE_ETHERNET = 1;

/** Option codes used here (per block type). */
const OptionCode = {
  EndOfOptions: 0,
  Comment: 1,
  ShbHardware: 2,
  ShbOs: 3,
  ShbUserApplication: 4,
  IfName: 2,
  IfDescription: 3,
  IfTsResolution: 9,
  EpbFlags: 2,
  IsbStartTime: 2,
  IsbEndTime: 3,
  IsbIfRecv: 4,
  IsbIfDrop: 5,
  IsbFilterAccept: 6,
  IsbUsrDeliv: 8,
} as const;

/** Timestamp units an interface may use: microseconds (the pcap default) or nanoseconds. */
export type TimestampResolution = "us" | "ns";
const TS_RESOLUTION_EXPONENT: Readonly<Record<TimestampResolution, number>> = { us: 6, ns: 9 };

/** epb_flags direction (bits 0–1). */
export type PacketDirection = "inbound" | "outbound";
/** epb_flags reception type (bits 2–4). */
export type ReceptionType = "unicast" | "multicast" | "broadcast" | "promiscuous";
const DIRECTION_BITS: Readonly<Record<PacketDirection, number>> = { inbound: 0b01, outbound: 0b10 };
const RECEPTION_BITS: Readonly<Record<ReceptionType, number>> = { unicast: 0b001, multicast: 0b010, broadcast: 0b011, promiscuous: 0b100 };

/** The 32-bit epb_flags word for a direction and a reception type. */
export function packetFlags(direction: PacketDirection | undefined, reception: ReceptionType | undefined): number {
  const directionBits = direction === undefined ? 0 : DIRECTION_BITS[direction];
  const receptionBits = reception === undefined ? 0 : RECEPTION_BITS[reception];
  return (directionBits | (receptionBits << 2)) >>> 0;
}

export interface SectionHeaderOptions {
  hardware?: string;
  os?: string;
  /** shb_userappl: the program that wrote the file. */
  userApplication?: string;
  comment?: string;
}

export interface InterfaceDescription {
  linkType: number;
  /** Largest number of bytes captured per packet; 0 = no limit. */
  snapLength: number;
  resolution: TimestampResolution;
  name?: string;
  description?: string;
}

export interface EnhancedPacket {
  /** Index of the interface's description block in this section (0 for the first). */
  interfaceId: number;
  /** In the interface's timestamp unit since 1970-01-01 (a safe integer: µs and ns both fit until 2255). */
  timestamp: number;
  /** The captured bytes. */
  data: Uint8Array;
  /** Length on the wire when `data` was truncated; defaults to `data.length`. */
  originalLength?: number;
  /** epb_flags (see `packetFlags`); omitted when undefined. */
  flags?: number;
  comment?: string;
}

export interface InterfaceStatistics {
  interfaceId: number;
  /** When the statistics were taken, in the interface's unit. */
  timestamp: number;
  startTime?: number;
  endTime?: number;
  /** isb_ifrecv: packets the interface received. */
  received?: number;
  /** isb_ifdrop: packets the interface dropped for lack of resources. */
  dropped?: number;
  /** isb_filteraccept: packets the capture filter accepted. */
  filterAccepted?: number;
  /** isb_usrdeliv: packets delivered to the user (written to the file). */
  delivered?: number;
  comment?: string;
}

/** A section header block; the section length is -1 (unknown), so the file can be streamed. */
export function sectionHeaderBlock(options: SectionHeaderOptions = {}): Uint8Array {
  const fixed = new Uint8Array(16);
  const view = new DataView(fixed.buffer);
  view.setUint32(0, BYTE_ORDER_MAGIC, true);
  view.setUint16(4, 1, true); // major version
  view.setUint16(6, 0, true); // minor version
  view.setBigInt64(8, -1n, true); // section length: not specified
  return block(BlockType.SectionHeader, fixed, [
    textOption(OptionCode.Comment, options.comment),
    textOption(OptionCode.ShbHardware, options.hardware),
    textOption(OptionCode.ShbOs, options.os),
    textOption(OptionCode.ShbUserApplication, options.userApplication),
  ]);
}

/** An interface description block; every packet block names an interface by its index in the section. */
export function interfaceDescriptionBlock(description: InterfaceDescription): Uint8Array {
  const fixed = new Uint8Array(8);
  const view = new DataView(fixed.buffer);
  view.setUint16(0, description.linkType, true);
  view.setUint16(2, 0, true); // reserved
  view.setUint32(4, description.snapLength, true);
  return block(BlockType.InterfaceDescription, fixed, [
    textOption(OptionCode.IfName, description.name),
    textOption(OptionCode.IfDescription, description.description),
    option(OptionCode.IfTsResolution, Uint8Array.of(TS_RESOLUTION_EXPONENT[description.resolution])),
  ]);
}

/** An enhanced packet block: one captured packet with its timestamp, flags and comment. */
export function enhancedPacketBlock(packet: EnhancedPacket): Uint8Array {
  const fixed = new Uint8Array(20 + padded(packet.data.length));
  const view = new DataView(fixed.buffer);
  view.setUint32(0, packet.interfaceId, true);
  writeTimestamp(view, 4, packet.timestamp);
  view.setUint32(12, packet.data.length, true);
  view.setUint32(16, packet.originalLength ?? packet.data.length, true);
  fixed.set(packet.data, 20);
  return block(BlockType.EnhancedPacket, fixed, [
    textOption(OptionCode.Comment, packet.comment),
    packet.flags === undefined ? null : option(OptionCode.EpbFlags, u32Bytes(packet.flags)),
  ]);
}

/** An interface statistics block, normally the last block of a capture. */
export function interfaceStatisticsBlock(statistics: InterfaceStatistics): Uint8Array {
  const fixed = new Uint8Array(12);
  const view = new DataView(fixed.buffer);
  view.setUint32(0, statistics.interfaceId, true);
  writeTimestamp(view, 4, statistics.timestamp);
  return block(BlockType.InterfaceStatistics, fixed, [
    textOption(OptionCode.Comment, statistics.comment),
    timestampOption(OptionCode.IsbStartTime, statistics.startTime),
    timestampOption(OptionCode.IsbEndTime, statistics.endTime),
    u64Option(OptionCode.IsbIfRecv, statistics.received),
    u64Option(OptionCode.IsbIfDrop, statistics.dropped),
    u64Option(OptionCode.IsbFilterAccept, statistics.filterAccepted),
    u64Option(OptionCode.IsbUsrDeliv, statistics.delivered),
  ]);
}

// ---- encoding helpers -----------------------------------------------------------

/** Rounds a length up to a multiple of 4. */
function padded(length: number): number {
  return (length + 3) & ~3;
}

/** Assembles a block: header, fixed part, options (null = absent) closed by opt_endofopt when any, trailer. */
function block(type: number, fixed: Uint8Array, options: ReadonlyArray<Uint8Array | null>): Uint8Array {
  const present = options.filter((entry): entry is Uint8Array => entry !== null);
  if (present.length > 0) present.push(new Uint8Array(4)); // opt_endofopt
  const optionBytes = present.reduce((sum, entry) => sum + entry.length, 0);
  const total = 12 + fixed.length + optionBytes;
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, type, true);
  view.setUint32(4, total, true);
  bytes.set(fixed, 8);
  let offset = 8 + fixed.length;
  for (const entry of present) {
    bytes.set(entry, offset);
    offset += entry.length;
  }
  view.setUint32(total - 4, total, true);
  return bytes;
}

/** One option: code, length, value, zero padding to 32 bits. */
function option(code: number, value: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(4 + padded(value.length));
  const view = new DataView(bytes.buffer);
  view.setUint16(0, code, true);
  view.setUint16(2, value.length, true);
  bytes.set(value, 4);
  return bytes;
}

/** A UTF-8 string option (not NUL-terminated), or null when absent or empty. */
function textOption(code: number, text: string | undefined): Uint8Array | null {
  if (text === undefined || text === "") return null;
  const value = new TextEncoder().encode(text);
  // An option's length is a u16; longer text is cut (at a byte, which a reader shows as a replacement character).
  return option(code, value.subarray(0, 0xfffc));
}

/** A timestamp option: high then low 32 bits, each in the section's byte order. */
function timestampOption(code: number, value: number | undefined): Uint8Array | null {
  if (value === undefined) return null;
  const bytes = new Uint8Array(8);
  writeTimestamp(new DataView(bytes.buffer), 0, value);
  return option(code, bytes);
}

/** A u64 count option: one little-endian 64-bit integer (unlike timestamps, not split into words). */
function u64Option(code: number, value: number | undefined): Uint8Array | null {
  if (value === undefined) return null;
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(Math.max(0, Math.floor(value))), true);
  return option(code, bytes);
}

function u32Bytes(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
  return bytes;
}

/** Writes a non-negative safe integer as two little-endian u32 words, high first. */
function writeTimestamp(view: DataView, offset: number, value: number): void {
  const whole = Math.max(0, Math.floor(value));
  view.setUint32(offset, Math.floor(whole / 0x1_0000_0000), true);
  view.setUint32(offset + 4, whole % 0x1_0000_0000, true);
}
