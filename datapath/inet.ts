import { readU16BE, readU32BE, writeU16BE, writeU32BE } from "./bytes.ts";
import { ETH_DESTINATION, ETH_HEADER_LEN, ETH_SOURCE, ETH_TYPE, MIN_CONFIGURABLE_FRAME_SIZE } from "./ethernet.ts";
import { macKeyAt, writeMac, type MacKey } from "./mac.ts";
import { fail, ok, type Result } from "./result.ts";

/*
 * The small slice of IPv4 a diagnostic host needs: dotted-quad addresses, ARP
 * for Ethernet/IPv4 (RFC 826), the IPv4 header (RFC 791), ICMP echo (RFC 792)
 * and the internet checksum (RFC 1071). Same shape as ethernet.ts: offsets are
 * named once, views read fields in place, `check*` validates once and returns
 * a typed error, `emit*` writes a repr into a caller's buffer.
 */

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
/** Minimum Ethernet frame without FCS; shorter frames are zero-padded to it on send. */
export const MIN_ETHERNET_FRAME = MIN_CONFIGURABLE_FRAME_SIZE;

// ---------------------------------------------------------------------------
// IPv4 addresses

/** An IPv4 address as an unsigned 32-bit integer (first octet most significant). */
export type Ipv4Address = number;

const IPV4_TEXT = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses exactly dotted-quad `a.b.c.d` with each octet 0..255 (no leading zeros beyond "0"); else `invalid-ipv4`. */
export function parseIpv4(text: string): Result<Ipv4Address, "invalid-ipv4"> {
  const match = IPV4_TEXT.exec(text);
  const invalid = fail("invalid-ipv4", `invalid IPv4 address ${JSON.stringify(text)}: expected four decimal octets like 10.0.0.1`);
  if (match === null) return invalid;
  let address = 0;
  for (let i = 1; i <= 4; i++) {
    const part = match[i] as string;
    // "010" is octal in some parsers and decimal in others; refuse the ambiguity.
    if (part.length > 1 && part.startsWith("0")) return invalid;
    const octet = Number(part);
    if (octet > 255) return invalid;
    address = address * 256 + octet;
  }
  return ok(address);
}

/** Formats an address as dotted-quad text. */
export function formatIpv4(address: Ipv4Address): string {
  return `${(address >>> 24) & 0xff}.${(address >>> 16) & 0xff}.${(address >>> 8) & 0xff}.${address & 0xff}`;
}

/** Reads 4 bytes at a checked `offset` as an unsigned address. */
export function ipv4At(bytes: Uint8Array, offset: number): Ipv4Address {
  return readU32BE(bytes, offset);
}

/** Writes an address as 4 bytes at `offset`. */
export function writeIpv4(address: Ipv4Address, bytes: Uint8Array, offset: number): void {
  writeU32BE(bytes, offset, address);
}

// ---------------------------------------------------------------------------
// Internet checksum (RFC 1071)

/**
 * The 16-bit one's-complement sum of `bytes` (an odd trailing byte is padded
 * with zero), folded, added to `initial`. Exposed so callers can sum a
 * pseudo-header and a payload in pieces.
 */
export function onesComplementSum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  const even = bytes.length & ~1;
  for (let i = 0; i < even; i += 2) sum += ((bytes[i] as number) << 8) | (bytes[i + 1] as number);
  if (even < bytes.length) sum += (bytes[even] as number) << 8;
  // Each fold halves the carry; two folds suffice below 2^32, loop for safety on huge inputs.
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * The internet checksum of `bytes`: the one's complement of their
 * one's-complement sum. Over data that already contains a correct checksum
 * field, it is 0.
 */
export function internetChecksum(bytes: Uint8Array): number {
  return ~onesComplementSum(bytes) & 0xffff;
}

// ---------------------------------------------------------------------------
// ARP for Ethernet + IPv4
//
//   0       2       4    5    6       8        14       18       24       28
//   | htype | ptype | hl | pl | oper  | sha    | spa    | tha    | tpa    |

export const ARP_HTYPE = 0;
export const ARP_PTYPE = 2;
export const ARP_HLEN = 4;
export const ARP_PLEN = 5;
export const ARP_OPER = 6;
export const ARP_SHA = 8;
export const ARP_SPA = 14;
export const ARP_THA = 18;
export const ARP_TPA = 24;
export const ARP_PACKET_LEN = 28;
export const ARP_HTYPE_ETHERNET = 1;

export const ArpOperation = { Request: 1, Reply: 2 } as const;
export type ArpOperation = (typeof ArpOperation)[keyof typeof ArpOperation];

export type ArpError = "truncated" | "unsupported-hardware" | "unsupported-protocol" | "unsupported-operation";

/** Read-only view over a checked ARP packet (Ethernet/IPv4, request or reply). */
export class ArpPacket {
  private constructor(readonly bytes: Uint8Array) {}

  /** Wraps bytes without checks; the caller guarantees ≥ 28 bytes. */
  static unchecked(bytes: Uint8Array): ArpPacket {
    return new ArpPacket(bytes);
  }

  operation(): ArpOperation {
    return readU16BE(this.bytes, ARP_OPER) as ArpOperation;
  }

  senderMac(): MacKey {
    return macKeyAt(this.bytes, ARP_SHA);
  }

  senderIp(): Ipv4Address {
    return ipv4At(this.bytes, ARP_SPA);
  }

  targetMac(): MacKey {
    return macKeyAt(this.bytes, ARP_THA);
  }

  targetIp(): Ipv4Address {
    return ipv4At(this.bytes, ARP_TPA);
  }

  /** The fields as a plain value. */
  repr(): ArpRepr {
    return {
      operation: this.operation(),
      senderMac: this.senderMac(),
      senderIp: this.senderIp(),
      targetMac: this.targetMac(),
      targetIp: this.targetIp(),
    };
  }
}

/** The fields of an Ethernet/IPv4 ARP packet. */
export interface ArpRepr {
  operation: ArpOperation;
  senderMac: MacKey;
  senderIp: Ipv4Address;
  targetMac: MacKey;
  targetIp: Ipv4Address;
}

/**
 * Validates an ARP packet (the Ethernet payload): at least 28 bytes, hardware
 * Ethernet with 6-byte addresses, protocol IPv4 with 4-byte addresses, and
 * operation request or reply.
 */
export function checkArpPacket(bytes: Uint8Array): Result<ArpPacket, ArpError> {
  if (bytes.length < ARP_PACKET_LEN) {
    return fail("truncated", `ARP packet of ${bytes.length} bytes is shorter than the ${ARP_PACKET_LEN} bytes of Ethernet/IPv4 ARP`);
  }
  const htype = readU16BE(bytes, ARP_HTYPE);
  if (htype !== ARP_HTYPE_ETHERNET || bytes[ARP_HLEN] !== 6) {
    return fail("unsupported-hardware", `ARP hardware type ${htype} with ${bytes[ARP_HLEN]}-byte addresses is not Ethernet (type 1, 6 bytes)`);
  }
  const ptype = readU16BE(bytes, ARP_PTYPE);
  if (ptype !== ETHERTYPE_IPV4 || bytes[ARP_PLEN] !== 4) {
    return fail("unsupported-protocol", `ARP protocol type 0x${hex16(ptype)} with ${bytes[ARP_PLEN]}-byte addresses is not IPv4 (0x0800, 4 bytes)`);
  }
  const oper = readU16BE(bytes, ARP_OPER);
  if (oper !== ArpOperation.Request && oper !== ArpOperation.Reply) {
    return fail("unsupported-operation", `ARP operation ${oper} is neither request (1) nor reply (2)`);
  }
  return ok(ArpPacket.unchecked(bytes));
}

/** Writes `repr` as a 28-byte ARP packet at `bytes[offset..]`; the caller provides the room. */
export function emitArp(repr: ArpRepr, bytes: Uint8Array, offset = 0): void {
  writeU16BE(bytes, offset + ARP_HTYPE, ARP_HTYPE_ETHERNET);
  writeU16BE(bytes, offset + ARP_PTYPE, ETHERTYPE_IPV4);
  bytes[offset + ARP_HLEN] = 6;
  bytes[offset + ARP_PLEN] = 4;
  writeU16BE(bytes, offset + ARP_OPER, repr.operation);
  writeMac(repr.senderMac, bytes, offset + ARP_SHA);
  writeIpv4(repr.senderIp, bytes, offset + ARP_SPA);
  writeMac(repr.targetMac, bytes, offset + ARP_THA);
  writeIpv4(repr.targetIp, bytes, offset + ARP_TPA);
}

// ---------------------------------------------------------------------------
// IPv4 header (no options emitted; options accepted and skipped on parse)
//
//   0        1     2          4       6             8     9      10     12    16    20
//   | ver|ihl| tos | totalLen | ident | flags|frag  | ttl | prot | csum | src | dst |

export const IPV4_VERSION_IHL = 0;
export const IPV4_TOS = 1;
export const IPV4_TOTAL_LENGTH = 2;
export const IPV4_IDENTIFICATION = 4;
export const IPV4_FLAGS_FRAGMENT = 6;
export const IPV4_TTL = 8;
export const IPV4_PROTOCOL = 9;
export const IPV4_CHECKSUM = 10;
export const IPV4_SOURCE = 12;
export const IPV4_DESTINATION = 16;
export const IPV4_MIN_HEADER_LEN = 20;
export const IPV4_PROTOCOL_ICMP = 1;
export const IPV4_PROTOCOL_UDP = 17;
export const IPV4_DEFAULT_TTL = 64;
const IPV4_FLAG_DONT_FRAGMENT = 0x4000;
const IPV4_FLAG_MORE_FRAGMENTS = 0x2000;
const IPV4_FRAGMENT_OFFSET_MASK = 0x1fff;

/** The limited broadcast address 255.255.255.255. */
export const IPV4_BROADCAST: Ipv4Address = 0xffffffff;

export type Ipv4Error = "truncated" | "bad-version" | "bad-ihl" | "bad-total-length" | "bad-checksum";

/** Read-only view over a checked IPv4 packet. `bytes` may extend past the total length (Ethernet padding). */
export class Ipv4Packet {
  private constructor(readonly bytes: Uint8Array) {}

  /** Wraps bytes without checks; the caller guarantees a valid header and total length. */
  static unchecked(bytes: Uint8Array): Ipv4Packet {
    return new Ipv4Packet(bytes);
  }

  version(): number {
    return (this.bytes[IPV4_VERSION_IHL] as number) >> 4;
  }

  /** Header length in bytes (IHL × 4). */
  headerLength(): number {
    return ((this.bytes[IPV4_VERSION_IHL] as number) & 0x0f) * 4;
  }

  totalLength(): number {
    return readU16BE(this.bytes, IPV4_TOTAL_LENGTH);
  }

  identification(): number {
    return readU16BE(this.bytes, IPV4_IDENTIFICATION);
  }

  dontFragment(): boolean {
    return (readU16BE(this.bytes, IPV4_FLAGS_FRAGMENT) & IPV4_FLAG_DONT_FRAGMENT) !== 0;
  }

  moreFragments(): boolean {
    return (readU16BE(this.bytes, IPV4_FLAGS_FRAGMENT) & IPV4_FLAG_MORE_FRAGMENTS) !== 0;
  }

  /** Fragment offset in bytes. */
  fragmentOffset(): number {
    return (readU16BE(this.bytes, IPV4_FLAGS_FRAGMENT) & IPV4_FRAGMENT_OFFSET_MASK) * 8;
  }

  /** True for a fragment of a larger datagram (MF set or a non-zero offset). */
  isFragment(): boolean {
    return this.moreFragments() || this.fragmentOffset() !== 0;
  }

  ttl(): number {
    return this.bytes[IPV4_TTL] as number;
  }

  protocol(): number {
    return this.bytes[IPV4_PROTOCOL] as number;
  }

  checksum(): number {
    return readU16BE(this.bytes, IPV4_CHECKSUM);
  }

  source(): Ipv4Address {
    return ipv4At(this.bytes, IPV4_SOURCE);
  }

  destination(): Ipv4Address {
    return ipv4At(this.bytes, IPV4_DESTINATION);
  }

  /** The bytes between the header and the total length (padding excluded). A view, not a copy. */
  payload(): Uint8Array {
    return this.bytes.subarray(this.headerLength(), this.totalLength());
  }
}

/** The fields of an option-less IPv4 header this module emits. */
export interface Ipv4Repr {
  source: Ipv4Address;
  destination: Ipv4Address;
  protocol: number;
  /** Bytes after the 20-byte header. */
  payloadLength: number;
  ttl?: number;
  identification?: number;
  dontFragment?: boolean;
}

/**
 * Validates an IPv4 packet: version 4, IHL ≥ 5 with the header inside the
 * buffer, total length covering the header and inside the buffer (trailing
 * Ethernet padding is allowed), and a header checksum that verifies.
 */
export function checkIpv4Packet(bytes: Uint8Array): Result<Ipv4Packet, Ipv4Error> {
  if (bytes.length < IPV4_MIN_HEADER_LEN) {
    return fail("truncated", `IPv4 packet of ${bytes.length} bytes is shorter than the ${IPV4_MIN_HEADER_LEN}-byte header`);
  }
  const first = bytes[IPV4_VERSION_IHL] as number;
  const version = first >> 4;
  if (version !== 4) return fail("bad-version", `IP version ${version} is not 4`);
  const headerLength = (first & 0x0f) * 4;
  if (headerLength < IPV4_MIN_HEADER_LEN) {
    return fail("bad-ihl", `IPv4 header length ${headerLength} (IHL ${first & 0x0f}) is below the ${IPV4_MIN_HEADER_LEN}-byte minimum`);
  }
  if (headerLength > bytes.length) {
    return fail("truncated", `IPv4 header of ${headerLength} bytes does not fit in ${bytes.length} bytes`);
  }
  const totalLength = readU16BE(bytes, IPV4_TOTAL_LENGTH);
  if (totalLength < headerLength || totalLength > bytes.length) {
    return fail(
      "bad-total-length",
      `IPv4 total length ${totalLength} must cover the ${headerLength}-byte header and fit in the ${bytes.length} bytes received`,
    );
  }
  if (internetChecksum(bytes.subarray(0, headerLength)) !== 0) {
    return fail("bad-checksum", `IPv4 header checksum 0x${hex16(readU16BE(bytes, IPV4_CHECKSUM))} does not verify`);
  }
  return ok(Ipv4Packet.unchecked(bytes));
}

/** Writes `repr` as a 20-byte header at `bytes[offset..]`, checksum included. */
export function emitIpv4Header(repr: Ipv4Repr, bytes: Uint8Array, offset = 0): void {
  bytes[offset + IPV4_VERSION_IHL] = 0x45;
  bytes[offset + IPV4_TOS] = 0;
  writeU16BE(bytes, offset + IPV4_TOTAL_LENGTH, IPV4_MIN_HEADER_LEN + repr.payloadLength);
  writeU16BE(bytes, offset + IPV4_IDENTIFICATION, repr.identification ?? 0);
  writeU16BE(bytes, offset + IPV4_FLAGS_FRAGMENT, repr.dontFragment === true ? IPV4_FLAG_DONT_FRAGMENT : 0);
  bytes[offset + IPV4_TTL] = repr.ttl ?? IPV4_DEFAULT_TTL;
  bytes[offset + IPV4_PROTOCOL] = repr.protocol;
  writeU16BE(bytes, offset + IPV4_CHECKSUM, 0);
  writeIpv4(repr.source, bytes, offset + IPV4_SOURCE);
  writeIpv4(repr.destination, bytes, offset + IPV4_DESTINATION);
  const header = bytes.subarray(offset, offset + IPV4_MIN_HEADER_LEN);
  writeU16BE(bytes, offset + IPV4_CHECKSUM, internetChecksum(header));
}

// ---------------------------------------------------------------------------
// ICMP echo
//
//   0      1      2          4            6          8
//   | type | code | checksum | identifier | sequence | data ...

export const ICMP_TYPE = 0;
export const ICMP_CODE = 1;
export const ICMP_CHECKSUM = 2;
export const ICMP_ECHO_IDENTIFIER = 4;
export const ICMP_ECHO_SEQUENCE = 6;
export const ICMP_ECHO_HEADER_LEN = 8;

export const IcmpEchoType = { Reply: 0, Request: 8 } as const;
export type IcmpEchoType = (typeof IcmpEchoType)[keyof typeof IcmpEchoType];

export type IcmpError = "truncated" | "bad-checksum" | "not-echo";

/** Read-only view over a checked ICMP echo request or reply. `bytes` is exactly the ICMP message. */
export class IcmpEcho {
  private constructor(readonly bytes: Uint8Array) {}

  /** Wraps bytes without checks; the caller guarantees ≥ 8 bytes. */
  static unchecked(bytes: Uint8Array): IcmpEcho {
    return new IcmpEcho(bytes);
  }

  type(): IcmpEchoType {
    return this.bytes[ICMP_TYPE] as IcmpEchoType;
  }

  checksum(): number {
    return readU16BE(this.bytes, ICMP_CHECKSUM);
  }

  identifier(): number {
    return readU16BE(this.bytes, ICMP_ECHO_IDENTIFIER);
  }

  sequence(): number {
    return readU16BE(this.bytes, ICMP_ECHO_SEQUENCE);
  }

  /** The echo data. A view, not a copy. */
  data(): Uint8Array {
    return this.bytes.subarray(ICMP_ECHO_HEADER_LEN);
  }
}

/** The fields of an ICMP echo request or reply. */
export interface IcmpEchoRepr {
  type: IcmpEchoType;
  identifier: number;
  sequence: number;
  data: Uint8Array;
}

/**
 * Validates an ICMP message (the IPv4 payload, without padding) as an echo:
 * at least 8 bytes, a checksum over the whole message that verifies, and type
 * echo request (8) or reply (0) with code 0.
 */
export function checkIcmpEcho(bytes: Uint8Array): Result<IcmpEcho, IcmpError> {
  if (bytes.length < ICMP_ECHO_HEADER_LEN) {
    return fail("truncated", `ICMP message of ${bytes.length} bytes is shorter than the ${ICMP_ECHO_HEADER_LEN}-byte echo header`);
  }
  if (internetChecksum(bytes) !== 0) {
    return fail("bad-checksum", `ICMP checksum 0x${hex16(readU16BE(bytes, ICMP_CHECKSUM))} does not verify`);
  }
  const type = bytes[ICMP_TYPE] as number;
  const code = bytes[ICMP_CODE] as number;
  if ((type !== IcmpEchoType.Request && type !== IcmpEchoType.Reply) || code !== 0) {
    return fail("not-echo", `ICMP type ${type} code ${code} is not an echo request (8/0) or reply (0/0)`);
  }
  return ok(IcmpEcho.unchecked(bytes));
}

/** Length in bytes of the echo message for `repr`. */
export function icmpEchoLength(repr: IcmpEchoRepr): number {
  return ICMP_ECHO_HEADER_LEN + repr.data.length;
}

/** Writes `repr` at `bytes[offset..]`, checksum included; the caller provides `icmpEchoLength(repr)` bytes. */
export function emitIcmpEcho(repr: IcmpEchoRepr, bytes: Uint8Array, offset = 0): void {
  bytes[offset + ICMP_TYPE] = repr.type;
  bytes[offset + ICMP_CODE] = 0;
  writeU16BE(bytes, offset + ICMP_CHECKSUM, 0);
  writeU16BE(bytes, offset + ICMP_ECHO_IDENTIFIER, repr.identifier);
  writeU16BE(bytes, offset + ICMP_ECHO_SEQUENCE, repr.sequence);
  bytes.set(repr.data, offset + ICMP_ECHO_HEADER_LEN);
  const message = bytes.subarray(offset, offset + icmpEchoLength(repr));
  writeU16BE(bytes, offset + ICMP_CHECKSUM, internetChecksum(message));
}

// ---------------------------------------------------------------------------
// UDP (RFC 768) with the IPv4 pseudo-header checksum
//
//   0             2                  4        6          8
//   | source port | destination port | length | checksum | payload ...

export const UDP_SOURCE_PORT = 0;
export const UDP_DESTINATION_PORT = 2;
export const UDP_LENGTH = 4;
export const UDP_CHECKSUM = 6;
export const UDP_HEADER_LEN = 8;

export type UdpError = "truncated" | "bad-length" | "bad-checksum";

/** Read-only view over a checked UDP datagram; `bytes` is exactly the datagram (its length field). */
export class UdpDatagram {
  private constructor(readonly bytes: Uint8Array) {}

  /** Wraps bytes without checks; the caller guarantees ≥ 8 bytes. */
  static unchecked(bytes: Uint8Array): UdpDatagram {
    return new UdpDatagram(bytes);
  }

  sourcePort(): number {
    return readU16BE(this.bytes, UDP_SOURCE_PORT);
  }

  destinationPort(): number {
    return readU16BE(this.bytes, UDP_DESTINATION_PORT);
  }

  /** The bytes after the header. A view, not a copy. */
  payload(): Uint8Array {
    return this.bytes.subarray(UDP_HEADER_LEN);
  }
}

/** The fields of a UDP datagram this module emits. */
export interface UdpRepr {
  sourcePort: number;
  destinationPort: number;
  payload: Uint8Array;
}

/**
 * Validates a UDP datagram carried in IPv4 (`bytes` is the IPv4 payload): at least 8 bytes, a
 * length field covering the header and inside `bytes`, and a checksum over the pseudo-header
 * that verifies (0 means the sender computed none, which IPv4 allows). The view is cut to the
 * length field.
 */
export function checkUdpDatagram(bytes: Uint8Array, source: Ipv4Address, destination: Ipv4Address): Result<UdpDatagram, UdpError> {
  if (bytes.length < UDP_HEADER_LEN) {
    return fail("truncated", `UDP datagram of ${bytes.length} bytes is shorter than the ${UDP_HEADER_LEN}-byte header`);
  }
  const length = readU16BE(bytes, UDP_LENGTH);
  if (length < UDP_HEADER_LEN || length > bytes.length) {
    return fail("bad-length", `UDP length ${length} must cover the ${UDP_HEADER_LEN}-byte header and fit in the ${bytes.length} bytes of the IPv4 payload`);
  }
  const datagram = bytes.subarray(0, length);
  if (readU16BE(bytes, UDP_CHECKSUM) !== 0 && udpChecksumOver(datagram, source, destination) !== 0) {
    return fail("bad-checksum", `UDP checksum 0x${hex16(readU16BE(bytes, UDP_CHECKSUM))} does not verify`);
  }
  return ok(UdpDatagram.unchecked(datagram));
}

/** Writes `repr` at `bytes[offset..]` with its pseudo-header checksum; the caller provides 8 + payload bytes. */
export function emitUdp(repr: UdpRepr, source: Ipv4Address, destination: Ipv4Address, bytes: Uint8Array, offset = 0): void {
  const length = UDP_HEADER_LEN + repr.payload.length;
  writeU16BE(bytes, offset + UDP_SOURCE_PORT, repr.sourcePort);
  writeU16BE(bytes, offset + UDP_DESTINATION_PORT, repr.destinationPort);
  writeU16BE(bytes, offset + UDP_LENGTH, length);
  writeU16BE(bytes, offset + UDP_CHECKSUM, 0);
  bytes.set(repr.payload, offset + UDP_HEADER_LEN);
  const checksum = udpChecksumOver(bytes.subarray(offset, offset + length), source, destination);
  // A computed 0 is sent as 0xffff: 0 on the wire means "no checksum" (RFC 768).
  writeU16BE(bytes, offset + UDP_CHECKSUM, checksum === 0 ? 0xffff : checksum);
}

/** The checksum of a datagram with the IPv4 pseudo-header (source, destination, protocol 17, length). */
function udpChecksumOver(datagram: Uint8Array, source: Ipv4Address, destination: Ipv4Address): number {
  const pseudo = new Uint8Array(12);
  writeU32BE(pseudo, 0, source);
  writeU32BE(pseudo, 4, destination);
  pseudo[9] = IPV4_PROTOCOL_UDP;
  writeU16BE(pseudo, 10, datagram.length);
  return ~onesComplementSum(datagram, onesComplementSum(pseudo)) & 0xffff;
}

// ---------------------------------------------------------------------------
// Whole untagged Ethernet frames, zero-padded to the 60-byte minimum

/** Addresses of an untagged Ethernet header. */
export interface EthernetAddresses {
  destination: MacKey;
  source: MacKey;
}

/** An ARP packet in an untagged Ethernet frame, padded to 60 bytes. */
export function buildArpFrame(link: EthernetAddresses, arp: ArpRepr): Uint8Array {
  const bytes = newFrame(link, ETHERTYPE_ARP, ARP_PACKET_LEN);
  emitArp(arp, bytes, ETH_HEADER_LEN);
  return bytes;
}

/**
 * An ICMP echo in an IPv4 packet in an untagged Ethernet frame, padded to 60
 * bytes. `ip.protocol` and `ip.payloadLength` are filled in from the echo.
 */
export function buildIcmpEchoFrame(
  link: EthernetAddresses,
  ip: Omit<Ipv4Repr, "protocol" | "payloadLength">,
  echo: IcmpEchoRepr,
): Uint8Array {
  const icmpLength = icmpEchoLength(echo);
  const bytes = newFrame(link, ETHERTYPE_IPV4, IPV4_MIN_HEADER_LEN + icmpLength);
  emitIpv4Header({ ...ip, protocol: IPV4_PROTOCOL_ICMP, payloadLength: icmpLength }, bytes, ETH_HEADER_LEN);
  emitIcmpEcho(echo, bytes, ETH_HEADER_LEN + IPV4_MIN_HEADER_LEN);
  return bytes;
}

/**
 * A UDP datagram in an IPv4 packet in an untagged Ethernet frame, padded to 60 bytes.
 * `ip.protocol` and `ip.payloadLength` are filled in from the datagram.
 */
export function buildUdpFrame(
  link: EthernetAddresses,
  ip: Omit<Ipv4Repr, "protocol" | "payloadLength">,
  udp: UdpRepr,
): Uint8Array {
  const udpLength = UDP_HEADER_LEN + udp.payload.length;
  const bytes = newFrame(link, ETHERTYPE_IPV4, IPV4_MIN_HEADER_LEN + udpLength);
  emitIpv4Header({ ...ip, protocol: IPV4_PROTOCOL_UDP, payloadLength: udpLength }, bytes, ETH_HEADER_LEN);
  emitUdp(udp, ip.source, ip.destination, bytes, ETH_HEADER_LEN + IPV4_MIN_HEADER_LEN);
  return bytes;
}

/** A zeroed frame with its Ethernet header written, sized for `payloadLength` and at least 60 bytes. */
function newFrame(link: EthernetAddresses, etherType: number, payloadLength: number): Uint8Array {
  const bytes = new Uint8Array(Math.max(MIN_ETHERNET_FRAME, ETH_HEADER_LEN + payloadLength));
  writeMac(link.destination, bytes, ETH_DESTINATION);
  writeMac(link.source, bytes, ETH_SOURCE);
  writeU16BE(bytes, ETH_TYPE, etherType);
  return bytes;
}

function hex16(value: number): string {
  return value.toString(16).padStart(4, "0");
}
