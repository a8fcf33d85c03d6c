/**
 * virtio-net header offloads (pure): parse and write the 10-byte header a TAP
 * device opened with IFF_VNET_HDR puts before each frame, complete a partial
 * checksum (NEEDS_CSUM), and segment a GSO super-frame (TCPv4, TCPv6, UDP_L4)
 * into standard frames in software, for receivers that cannot take it.
 *
 * Header layout (virtio-net v1, little-endian as on x86 with TUNSETVNETLE
 * semantics of a little-endian host):
 *   0 flags u8 · 1 gso_type u8 · 2 hdr_len u16 · 4 gso_size u16 · 6 csum_start u16 · 8 csum_offset u16
 */
import { readU16BE, readU16LE, writeU16BE } from "./bytes.ts";
import { ETH_HEADER_LEN, ETH_TYPE, TPID_8021Q, VLAN_HEADER_LEN, VLAN_INNER_TYPE } from "./ethernet.ts";
import { ETHERTYPE_IPV4, onesComplementSum } from "./inet.ts";
import { fail, ok, type Result } from "./result.ts";
import { MAX_FRAME_BYTES, VNET_HEADER_BYTES } from "./tunnel/constants.ts";

/** Bytes of the virtio-net header this project uses (no num_buffers field). */
export const VNET_HDR_LEN = VNET_HEADER_BYTES;
/**
 * Most segments a relay lets one super-frame become (checkOffload): ceil(payload / gso_size) must not
 * exceed it, which bounds the work and memory one TX record can cause. 128 admits every real TSO
 * frame: a 64 KiB super-frame at the smallest TCP MSS of IPv4's minimum MTU (576 - 40 - 12 option
 * bytes = 524) is 126 segments; gso_size 1 on the same frame would be 65,000.
 */
export const MAX_GSO_SEGMENTS = 128;

/** virtio-net header flag bits. */
export const VnetFlag = {
  /** The checksum at csum_start + csum_offset is partial (pseudo-header only) and must be completed. */
  NeedsCsum: 0x01,
  /** The receiver validated the checksum (informational; a plain frame). */
  DataValid: 0x02,
} as const;

/** virtio-net gso_type values (the ECN bit 0x80 may be or-ed in). */
export const VnetGso = { None: 0, TcpV4: 1, Udp: 3, TcpV6: 4, UdpL4: 5, Ecn: 0x80 } as const;

/** EtherType of IPv6. */
export const ETHERTYPE_IPV6 = 0x86dd;
const IP_PROTO_TCP = 6;
const IP_PROTO_UDP = 17;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

/** A decoded virtio-net header. */
export interface VnetHeader {
  readonly flags: number;
  readonly gsoType: number;
  readonly hdrLen: number;
  readonly gsoSize: number;
  readonly csumStart: number;
  readonly csumOffset: number;
}

/** Why a header or super-frame cannot be handled. */
export type OffloadError =
  | "truncated"
  | "unknown-flags"
  | "unsupported-gso"
  | "bad-checksum-offsets"
  | "bad-gso-size"
  | "not-ip"
  | "bad-ip-header"
  | "unsupported-ip-extension"
  | "bad-l4-header"
  | "oversize";


/** Parses the header at the start of `bytes`; unknown flag bits or gso types are errors. */
export function parseVnetHeader(bytes: Uint8Array): Result<VnetHeader, OffloadError> {
  if (bytes.length < VNET_HDR_LEN) return fail("truncated", `a virtio-net header needs ${VNET_HDR_LEN} bytes, got ${bytes.length}`);
  const flags = bytes[0] as number;
  if ((flags & ~(VnetFlag.NeedsCsum | VnetFlag.DataValid)) !== 0) return fail("unknown-flags", `virtio-net flags 0x${flags.toString(16)}`);
  const gsoType = bytes[1] as number;
  const base = gsoType & ~VnetGso.Ecn;
  if (base !== VnetGso.None && base !== VnetGso.TcpV4 && base !== VnetGso.TcpV6 && base !== VnetGso.UdpL4) {
    return fail("unsupported-gso", `gso_type 0x${gsoType.toString(16)} is not supported`);
  }
  return ok({ flags, gsoType, hdrLen: readU16LE(bytes, 2), gsoSize: readU16LE(bytes, 4), csumStart: readU16LE(bytes, 6), csumOffset: readU16LE(bytes, 8) });
}

/** Writes `header` as 10 bytes at `bytes[offset..]`. */
export function writeVnetHeader(header: VnetHeader, bytes: Uint8Array, offset = 0): void {
  const fields = [header.hdrLen, header.gsoSize, header.csumStart, header.csumOffset];
  bytes[offset] = header.flags;
  bytes[offset + 1] = header.gsoType;
  fields.forEach((value, i) => {
    bytes[offset + 2 + 2 * i] = value & 0xff;
    bytes[offset + 3 + 2 * i] = (value >>> 8) & 0xff;
  });
}

/** True when the header asks for nothing (no partial checksum, no GSO): the frame after it is a plain frame. */
export function isTrivialVnetHeader(bytes: Uint8Array): boolean {
  return ((bytes[0] as number) & VnetFlag.NeedsCsum) === 0 && bytes[1] === 0;
}

/** Prepends an all-zero header to a plain frame. */
export function withZeroVnetHeader(frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(VNET_HDR_LEN + frame.length);
  out.set(frame, VNET_HDR_LEN);
  return out;
}

/** Offsets found by parsing a super-frame's Ethernet, IP and L4 headers. */
interface Layout {
  readonly l3: number;
  readonly ipv4: boolean;
  readonly l4: number;
  readonly protocol: number;
  /** Bytes of all headers (Ethernet through TCP/UDP). */
  readonly headers: number;
  /** End of the IP packet within the frame. */
  readonly end: number;
}

/** Finds the L3 offset and EtherType (one 802.1Q tag allowed). */
function l3Of(frame: Uint8Array): Result<{ l3: number; type: number }, OffloadError> {
  if (frame.length < ETH_HEADER_LEN) return fail("truncated", "shorter than an Ethernet header");
  const outer = readU16BE(frame, ETH_TYPE);
  if (outer !== TPID_8021Q) return ok({ l3: ETH_HEADER_LEN, type: outer });
  if (frame.length < VLAN_HEADER_LEN) return fail("truncated", "truncated 802.1Q tag");
  return ok({ l3: VLAN_HEADER_LEN, type: readU16BE(frame, VLAN_INNER_TYPE) });
}

/** Parses the IP header at `l3`: L4 offset, protocol and end of the packet. */
function ipOf(frame: Uint8Array, l3: number, type: number): Result<Omit<Layout, "headers">, OffloadError> {
  if (type === ETHERTYPE_IPV4) {
    if (frame.length < l3 + 20 || ((frame[l3] as number) >>> 4) !== 4) return fail("bad-ip-header", "truncated or not IPv4");
    const ihl = ((frame[l3] as number) & 0x0f) * 4;
    const total = readU16BE(frame, l3 + 2);
    if (ihl < 20 || total < ihl || l3 + total > frame.length) return fail("bad-ip-header", `IPv4 ihl ${ihl}, total length ${total}`);
    return ok({ l3, ipv4: true, l4: l3 + ihl, protocol: frame[l3 + 9] as number, end: l3 + total });
  }
  if (type === ETHERTYPE_IPV6) {
    if (frame.length < l3 + 40 || ((frame[l3] as number) >>> 4) !== 6) return fail("bad-ip-header", "truncated or not IPv6");
    const end = l3 + 40 + readU16BE(frame, l3 + 4);
    if (end > frame.length) return fail("bad-ip-header", "IPv6 payload length past the frame");
    const next = frame[l3 + 6] as number;
    if (next !== IP_PROTO_TCP && next !== IP_PROTO_UDP) return fail("unsupported-ip-extension", `IPv6 next header ${next}`);
    return ok({ l3, ipv4: false, l4: l3 + 40, protocol: next, end });
  }
  return fail("not-ip", `EtherType 0x${type.toString(16)}`);
}

/** Parses the whole header stack of a frame. */
function layoutOf(frame: Uint8Array): Result<Layout, OffloadError> {
  const eth = l3Of(frame);
  if (!eth.ok) return eth;
  const ip = ipOf(frame, eth.value.l3, eth.value.type);
  if (!ip.ok) return ip;
  const { l4, protocol, end } = ip.value;
  if (protocol === IP_PROTO_TCP) {
    if (end < l4 + 20) return fail("bad-l4-header", "truncated TCP header");
    const tcpLen = ((frame[l4 + 12] as number) >>> 4) * 4;
    if (tcpLen < 20 || l4 + tcpLen > end) return fail("bad-l4-header", `TCP data offset ${tcpLen}`);
    return ok({ ...ip.value, headers: l4 + tcpLen });
  }
  if (protocol === IP_PROTO_UDP) {
    if (end < l4 + 8) return fail("bad-l4-header", "truncated UDP header");
    return ok({ ...ip.value, headers: l4 + 8 });
  }
  return fail("bad-l4-header", `IP protocol ${protocol} has no offload`);
}

/** The one's-complement sum of the pseudo-header for an L4 segment of `l4Length` bytes. */
function pseudoSum(frame: Uint8Array, layout: Layout, l4Length: number): number {
  const { l3, ipv4, protocol } = layout;
  const addresses = ipv4 ? frame.subarray(l3 + 12, l3 + 20) : frame.subarray(l3 + 8, l3 + 40);
  return onesComplementSum(addresses, protocol + (l4Length >>> 16) + (l4Length & 0xffff));
}

/** Recomputes the L4 checksum of `frame` (headers and data through `end`) from scratch, pseudo-header included. */
function fillL4Checksum(frame: Uint8Array, layout: Layout, end: number): void {
  const field = layout.l4 + (layout.protocol === IP_PROTO_TCP ? 16 : 6);
  writeU16BE(frame, field, 0);
  const sum = onesComplementSum(frame.subarray(layout.l4, end), pseudoSum(frame, layout, end - layout.l4));
  let checksum = ~sum & 0xffff;
  if (checksum === 0 && layout.protocol === IP_PROTO_UDP) checksum = 0xffff;
  writeU16BE(frame, field, checksum);
}

/** Sets an IPv4 header's checksum. */
function fillIpv4Checksum(frame: Uint8Array, l3: number, l4: number): void {
  writeU16BE(frame, l3 + 10, 0);
  writeU16BE(frame, l3 + 10, ~onesComplementSum(frame.subarray(l3, l4)) & 0xffff);
}

/**
 * Completes a partial checksum (NEEDS_CSUM without GSO) on a copy of `frame`:
 * the generic virtio rule: fold the bytes from csum_start to the end of the IP
 * packet (the field holds the pseudo-header sum) and store the complement.
 */
export function completeChecksum(header: VnetHeader, frame: Uint8Array): Result<Uint8Array, OffloadError> {
  const out = frame.slice();
  if ((header.flags & VnetFlag.NeedsCsum) === 0) return ok(out);
  const checked = checkOffload(header, frame);
  if (!checked.ok) return checked;
  const layout = layoutOf(frame);
  const end = layout.ok ? layout.value.end : frame.length;
  let checksum = ~onesComplementSum(out.subarray(header.csumStart, end)) & 0xffff;
  if (checksum === 0 && layout.ok && layout.value.protocol === IP_PROTO_UDP) checksum = 0xffff;
  writeU16BE(out, header.csumStart + header.csumOffset, checksum);
  return ok(out);
}

/** Builds segment `index` (payload bytes [from, to) of the super-frame) with every header field fixed. */
function buildSegment(frame: Uint8Array, layout: Layout, from: number, to: number, index: number, last: boolean): Uint8Array {
  const { l3, l4, headers, ipv4, protocol } = layout;
  const out = new Uint8Array(headers + to - from);
  out.set(frame.subarray(0, headers));
  out.set(frame.subarray(from, to), headers);
  if (ipv4) {
    writeU16BE(out, l3 + 2, out.length - l3);
    writeU16BE(out, l3 + 4, (readU16BE(frame, l3 + 4) + index) & 0xffff);
    fillIpv4Checksum(out, l3, l4);
  } else {
    writeU16BE(out, l3 + 4, out.length - l3 - 40);
  }
  if (protocol === IP_PROTO_TCP) {
    const seq = ((frame[l4 + 4] as number) * 0x1000000 + (frame[l4 + 5] as number) * 0x10000 + readU16BE(frame, l4 + 6) + (from - headers)) >>> 0;
    writeU16BE(out, l4 + 4, seq >>> 16);
    writeU16BE(out, l4 + 6, seq & 0xffff);
    let flags = frame[l4 + 13] as number;
    if (!last) flags &= ~(TCP_FIN | TCP_PSH);
    if (index > 0) flags &= ~TCP_CWR;
    out[l4 + 13] = flags;
  } else {
    writeU16BE(out, l4 + 4, out.length - l4);
  }
  fillL4Checksum(out, layout, out.length);
  return out;
}

/** Checks that the GSO type matches the parsed headers. */
function checkGsoType(header: VnetHeader, layout: Layout): Result<true, OffloadError> {
  const base = header.gsoType & ~VnetGso.Ecn;
  const expected = base === VnetGso.TcpV4 ? [true, IP_PROTO_TCP] : base === VnetGso.TcpV6 ? [false, IP_PROTO_TCP] : [layout.ipv4, IP_PROTO_UDP];
  if (layout.ipv4 !== expected[0] || layout.protocol !== expected[1]) {
    return fail("unsupported-gso", `gso_type 0x${header.gsoType.toString(16)} does not match the packet's headers`);
  }
  return ok(true);
}

/**
 * Turns a header and frame into standard frames: GSO → segments of at most
 * (headers + gso_size) bytes with IP lengths, IPv4 ids and checksums, TCP
 * sequence numbers and flags (FIN/PSH last only, CWR first only) and L4
 * checksums fixed; NEEDS_CSUM alone → the frame with its checksum completed;
 * neither → the frame as is (a copy).
 */
export function segmentFrame(header: VnetHeader, frame: Uint8Array): Result<Uint8Array[], OffloadError> {
  if (frame.length > MAX_FRAME_BYTES) return fail("oversize", `super-frame of ${frame.length} bytes`);
  if ((header.gsoType & ~VnetGso.Ecn) === VnetGso.None) {
    const done = completeChecksum(header, frame);
    return done.ok ? ok([done.value]) : done;
  }
  if (header.gsoSize === 0) return fail("bad-gso-size", "gso_size is 0");
  const layout = layoutOf(frame);
  if (!layout.ok) return layout;
  const typed = checkGsoType(header, layout.value);
  if (!typed.ok) return typed;
  const { headers, end } = layout.value;
  const segments: Uint8Array[] = [];
  for (let from = headers, index = 0; from < end || index === 0; from += header.gsoSize, index++) {
    const to = Math.min(end, from + header.gsoSize);
    segments.push(buildSegment(frame, layout.value, from, to, index, to >= end));
  }
  return ok(segments);
}

/** Splits a header+frame buffer (as read from a TAP with IFF_VNET_HDR) and segments it. */
export function segmentWithHeader(bytes: Uint8Array): Result<Uint8Array[], OffloadError> {
  const header = parseVnetHeader(bytes);
  if (!header.ok) return header;
  return segmentFrame(header.value, bytes.subarray(VNET_HDR_LEN));
}

/**
 * Checks, without copying, that `segmentFrame(header, frame)` will succeed, so
 * a relay can accept a super-frame at ingress and segment it later per receiver.
 * Stricter than segmentFrame: the super-frame may become at most MAX_GSO_SEGMENTS
 * segments, which bounds the memory and time one super-frame can cost the relay.
 */
export function checkOffload(header: VnetHeader, frame: Uint8Array): Result<true, OffloadError> {
  if (frame.length > MAX_FRAME_BYTES) return fail("oversize", `super-frame of ${frame.length} bytes`);
  const gso = (header.gsoType & ~VnetGso.Ecn) !== VnetGso.None;
  if (!gso) {
    const field = header.csumStart + header.csumOffset;
    if ((header.flags & VnetFlag.NeedsCsum) === 0) return ok(true);
    const layout = layoutOf(frame);
    const end = layout.ok ? layout.value.end : frame.length;
    return field + 2 > end ? fail("bad-checksum-offsets", `checksum field at ${field} past the packet`) : ok(true);
  }
  if (header.gsoSize === 0) return fail("bad-gso-size", "gso_size is 0");
  const layout = layoutOf(frame);
  if (!layout.ok) return layout;
  const segments = Math.ceil((layout.value.end - layout.value.headers) / header.gsoSize);
  if (segments > MAX_GSO_SEGMENTS) {
    return fail("bad-gso-size", `gso_size ${header.gsoSize} would cut this super-frame into ${segments} segments; the relay allows ${MAX_GSO_SEGMENTS}`);
  }
  return checkGsoType(header, layout.value);
}
