import { readU16BE, readU32BE, writeU16BE, writeU32BE } from "./bytes.ts";
import { ipv4At, writeIpv4, type Ipv4Address } from "./inet.ts";
import { macKeyAt, writeMac, type MacKey } from "./mac.ts";
import { fail, ok, type Result } from "./result.ts";

/*
 * DHCPv4 messages (RFC 2131) and the options a small server and client use (RFC 2132).
 * Same shape as inet.ts: offsets named once, `checkDhcpMessage` validates once and returns a
 * typed error, `parseDhcp` reads the fields and options into a repr, `emitDhcp` writes one.
 *
 *   0    1     2    3    4     8     10     12      16      20      24      28       44      108     236     240
 *   | op | htype| hlen| hops| xid | secs | flags | ciaddr| yiaddr| siaddr| giaddr| chaddr | sname | file | magic | options
 *
 * Not implemented: option overload (52: options inside `sname`/`file`, ignored), relay agents
 * (`giaddr` is carried but a server here answers only clients on its own link), and options
 * this module does not name (skipped on parse, never emitted).
 */

export const DHCP_OP = 0;
export const DHCP_HTYPE = 1;
export const DHCP_HLEN = 2;
export const DHCP_HOPS = 3;
export const DHCP_XID = 4;
export const DHCP_SECS = 8;
export const DHCP_FLAGS = 10;
export const DHCP_CIADDR = 12;
export const DHCP_YIADDR = 16;
export const DHCP_SIADDR = 20;
export const DHCP_GIADDR = 24;
export const DHCP_CHADDR = 28;
export const DHCP_MAGIC = 236;
export const DHCP_OPTIONS = 240;
/** The magic cookie 99.130.83.99 that starts the options (RFC 2131 §3). */
export const DHCP_MAGIC_COOKIE = 0x63825363;
/** BOOTP's minimum message (RFC 1542 §2.1): replies are zero-padded to it for old clients. */
export const DHCP_MIN_MESSAGE_LEN = 300;
const DHCP_FLAG_BROADCAST = 0x8000;

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;

export const DhcpOp = { Request: 1, Reply: 2 } as const;
export type DhcpOp = (typeof DhcpOp)[keyof typeof DhcpOp];

/** Option 53 values. */
export const DhcpMessageType = {
  Discover: 1, Offer: 2, Request: 3, Decline: 4, Ack: 5, Nak: 6, Release: 7, Inform: 8,
} as const;
export type DhcpMessageType = (typeof DhcpMessageType)[keyof typeof DhcpMessageType];

/** The option codes this module reads and writes. */
export const DhcpOption = {
  Pad: 0,
  SubnetMask: 1,
  Router: 3,
  DnsServer: 6,
  HostName: 12,
  DomainName: 15,
  RequestedIp: 50,
  LeaseTime: 51,
  MessageType: 53,
  ServerId: 54,
  ParameterList: 55,
  Message: 56,
  MaxMessageSize: 57,
  RenewalTime: 58,
  RebindingTime: 59,
  ClientId: 61,
  End: 255,
} as const;

/** Longest client identifier kept (RFC 2132 allows 255; real clients send 7 to 19 bytes). */
export const MAX_CLIENT_ID_LEN = 64;

export type DhcpError = "truncated" | "bad-op" | "bad-hardware" | "bad-magic" | "bad-option" | "no-message-type";

/** The fields of a DHCP message that a client or server acts on; every option optional. */
export interface DhcpRepr {
  op: DhcpOp;
  messageType: DhcpMessageType;
  xid: number;
  secs?: number;
  /** The client asks for broadcast replies (flags bit 15). */
  broadcast: boolean;
  ciaddr: Ipv4Address;
  yiaddr: Ipv4Address;
  siaddr: Ipv4Address;
  giaddr: Ipv4Address;
  clientMac: MacKey;
  subnetMask?: Ipv4Address;
  routers?: Ipv4Address[];
  dnsServers?: Ipv4Address[];
  hostName?: string;
  domainName?: string;
  requestedIp?: Ipv4Address;
  leaseSeconds?: number;
  serverId?: Ipv4Address;
  parameterList?: number[];
  message?: string;
  maxMessageSize?: number;
  renewalSeconds?: number;
  rebindingSeconds?: number;
  /** Option 61 as sent: type byte then identifier. */
  clientId?: Uint8Array;
}

/**
 * Validates a DHCP message (a UDP payload): the 240 bytes up to and including the magic cookie,
 * op request or reply, Ethernet hardware with 6-byte addresses, and options that stay inside
 * the message (each has its length byte and its data before the end). Returns the message.
 */
export function checkDhcpMessage(bytes: Uint8Array): Result<Uint8Array, DhcpError> {
  if (bytes.length < DHCP_OPTIONS) {
    return fail("truncated", `DHCP message of ${bytes.length} bytes is shorter than the ${DHCP_OPTIONS} bytes up to the magic cookie`);
  }
  const op = bytes[DHCP_OP] as number;
  if (op !== DhcpOp.Request && op !== DhcpOp.Reply) return fail("bad-op", `DHCP op ${op} is neither BOOTREQUEST (1) nor BOOTREPLY (2)`);
  if (bytes[DHCP_HTYPE] !== 1 || bytes[DHCP_HLEN] !== 6) {
    return fail("bad-hardware", `DHCP hardware type ${bytes[DHCP_HTYPE]} with ${bytes[DHCP_HLEN]}-byte addresses is not Ethernet (1, 6 bytes)`);
  }
  if (readU32BE(bytes, DHCP_MAGIC) !== DHCP_MAGIC_COOKIE) {
    return fail("bad-magic", `DHCP magic cookie 0x${readU32BE(bytes, DHCP_MAGIC).toString(16)} is not 0x63825363 (a plain BOOTP message?)`);
  }
  const overrun = walkDhcpOptions(bytes, () => undefined);
  if (overrun !== undefined) return fail("bad-option", overrun);
  return ok(bytes);
}

/**
 * Calls `visit(code, data)` for each option up to End (`data` is a view). Returns why the options
 * run past the end of the message, or undefined; a checked message never does.
 */
export function walkDhcpOptions(bytes: Uint8Array, visit: (code: number, data: Uint8Array) => void): string | undefined {
  for (let at = DHCP_OPTIONS; at < bytes.length; ) {
    const code = bytes[at] as number;
    if (code === DhcpOption.End) return undefined;
    if (code === DhcpOption.Pad) {
      at += 1;
      continue;
    }
    if (at + 2 > bytes.length || at + 2 + (bytes[at + 1] as number) > bytes.length) {
      return `DHCP option ${code} at offset ${at} runs past the end of the ${bytes.length}-byte message`;
    }
    const length = bytes[at + 1] as number;
    visit(code, bytes.subarray(at + 2, at + 2 + length));
    at += 2 + length;
  }
  return undefined;
}

/**
 * Parses a DHCP message into its repr: `checkDhcpMessage`, then the options. An option of a
 * known code with the wrong length is `bad-option` (a lying client, not a format to guess at);
 * a message without option 53 is `no-message-type` (plain BOOTP, not served).
 */
export function parseDhcp(bytes: Uint8Array): Result<DhcpRepr, DhcpError> {
  const checked = checkDhcpMessage(bytes);
  if (!checked.ok) return checked;
  const repr: DhcpRepr = {
    op: bytes[DHCP_OP] as DhcpOp,
    messageType: 0 as DhcpMessageType,
    xid: readU32BE(bytes, DHCP_XID),
    secs: readU16BE(bytes, DHCP_SECS),
    broadcast: (readU16BE(bytes, DHCP_FLAGS) & DHCP_FLAG_BROADCAST) !== 0,
    ciaddr: ipv4At(bytes, DHCP_CIADDR),
    yiaddr: ipv4At(bytes, DHCP_YIADDR),
    siaddr: ipv4At(bytes, DHCP_SIADDR),
    giaddr: ipv4At(bytes, DHCP_GIADDR),
    clientMac: macKeyAt(bytes, DHCP_CHADDR),
  };
  let problem: string | undefined;
  walkDhcpOptions(bytes, (code, data) => {
    problem ??= readOption(repr, code, data);
  });
  if (problem !== undefined) return fail("bad-option", problem);
  if ((repr.messageType as number) === 0 || repr.messageType > DhcpMessageType.Inform) {
    return fail("no-message-type", "DHCP message has no valid message type (option 53 with a value 1..8): plain BOOTP is not served");
  }
  return ok(repr);
}

/** Stores one option in `repr`; returns why it is malformed, or undefined. */
function readOption(repr: DhcpRepr, code: number, data: Uint8Array): string | undefined {
  switch (code) {
    case DhcpOption.MessageType:
      if (data.length !== 1) return lengthProblem(code, data, "1");
      repr.messageType = data[0] as DhcpMessageType;
      return undefined;
    case DhcpOption.SubnetMask: return readAddress(data, code, (v) => (repr.subnetMask = v));
    case DhcpOption.RequestedIp: return readAddress(data, code, (v) => (repr.requestedIp = v));
    case DhcpOption.ServerId: return readAddress(data, code, (v) => (repr.serverId = v));
    case DhcpOption.LeaseTime: return readSeconds(data, code, (v) => (repr.leaseSeconds = v));
    case DhcpOption.RenewalTime: return readSeconds(data, code, (v) => (repr.renewalSeconds = v));
    case DhcpOption.RebindingTime: return readSeconds(data, code, (v) => (repr.rebindingSeconds = v));
    case DhcpOption.Router: return readAddresses(data, code, (v) => (repr.routers = v));
    case DhcpOption.DnsServer: return readAddresses(data, code, (v) => (repr.dnsServers = v));
    case DhcpOption.HostName: return readText(data, code, (v) => (repr.hostName = v));
    case DhcpOption.DomainName: return readText(data, code, (v) => (repr.domainName = v));
    case DhcpOption.Message: return readText(data, code, (v) => (repr.message = v));
    case DhcpOption.ParameterList:
      repr.parameterList = [...data];
      return undefined;
    case DhcpOption.MaxMessageSize:
      if (data.length !== 2) return lengthProblem(code, data, "2");
      repr.maxMessageSize = readU16BE(data, 0);
      return undefined;
    case DhcpOption.ClientId:
      if (data.length < 2 || data.length > MAX_CLIENT_ID_LEN) return lengthProblem(code, data, `2..${MAX_CLIENT_ID_LEN}`);
      repr.clientId = data.slice();
      return undefined;
    default:
      return undefined;
  }
}

function lengthProblem(code: number, data: Uint8Array, expected: string): string {
  return `DHCP option ${code} has ${data.length} bytes of data; expected ${expected}`;
}

function readAddress(data: Uint8Array, code: number, store: (value: Ipv4Address) => void): string | undefined {
  if (data.length !== 4) return lengthProblem(code, data, "4");
  store(ipv4At(data, 0));
  return undefined;
}

function readSeconds(data: Uint8Array, code: number, store: (value: number) => void): string | undefined {
  if (data.length !== 4) return lengthProblem(code, data, "4");
  store(readU32BE(data, 0));
  return undefined;
}

function readAddresses(data: Uint8Array, code: number, store: (value: Ipv4Address[]) => void): string | undefined {
  if (data.length === 0 || data.length % 4 !== 0) return lengthProblem(code, data, "a non-zero multiple of 4");
  const addresses: Ipv4Address[] = [];
  for (let at = 0; at < data.length; at += 4) addresses.push(ipv4At(data, at));
  store(addresses);
  return undefined;
}

function readText(data: Uint8Array, code: number, store: (value: string) => void): string | undefined {
  if (data.length === 0) return lengthProblem(code, data, "at least 1");
  // Some clients count a trailing NUL in the length; it is not part of the name.
  let end = data.length;
  while (end > 0 && data[end - 1] === 0) end--;
  store(String.fromCharCode(...data.subarray(0, end)));
  return undefined;
}

/** Bytes `emitDhcp` writes for `repr`: the fixed part, each option present, End, padded to 300. */
export function dhcpLength(repr: DhcpRepr): number {
  let length = DHCP_OPTIONS + 3 + 1; // message type, End
  const add = (present: unknown, dataLength: number): void => {
    if (present !== undefined) length += 2 + dataLength;
  };
  add(repr.serverId, 4);
  add(repr.leaseSeconds, 4);
  add(repr.renewalSeconds, 4);
  add(repr.rebindingSeconds, 4);
  add(repr.subnetMask, 4);
  add(repr.routers, 4 * (repr.routers?.length ?? 0));
  add(repr.dnsServers, 4 * (repr.dnsServers?.length ?? 0));
  add(repr.domainName, repr.domainName?.length ?? 0);
  add(repr.hostName, repr.hostName?.length ?? 0);
  add(repr.requestedIp, 4);
  add(repr.parameterList, repr.parameterList?.length ?? 0);
  add(repr.maxMessageSize, 2);
  add(repr.message, repr.message?.length ?? 0);
  add(repr.clientId, repr.clientId?.length ?? 0);
  return Math.max(DHCP_MIN_MESSAGE_LEN, length);
}

/**
 * Writes `repr` as a new message: fixed fields, magic cookie, options in a fixed order (message
 * type first, as RFC 2131 §4.1 recommends), End, zero padding to 300 bytes. Strings are written
 * as Latin-1 and must be 1..255 characters; lists 1..63 entries (the caller's limits).
 */
export function emitDhcp(repr: DhcpRepr): Uint8Array {
  const bytes = new Uint8Array(dhcpLength(repr));
  bytes[DHCP_OP] = repr.op;
  bytes[DHCP_HTYPE] = 1;
  bytes[DHCP_HLEN] = 6;
  writeU32BE(bytes, DHCP_XID, repr.xid);
  writeU16BE(bytes, DHCP_SECS, repr.secs ?? 0);
  writeU16BE(bytes, DHCP_FLAGS, repr.broadcast ? DHCP_FLAG_BROADCAST : 0);
  writeIpv4(repr.ciaddr, bytes, DHCP_CIADDR);
  writeIpv4(repr.yiaddr, bytes, DHCP_YIADDR);
  writeIpv4(repr.siaddr, bytes, DHCP_SIADDR);
  writeIpv4(repr.giaddr, bytes, DHCP_GIADDR);
  writeMac(repr.clientMac, bytes, DHCP_CHADDR);
  writeU32BE(bytes, DHCP_MAGIC, DHCP_MAGIC_COOKIE);
  let at = DHCP_OPTIONS;
  const put = (code: number, data: Uint8Array): void => {
    bytes[at] = code;
    bytes[at + 1] = data.length;
    bytes.set(data, at + 2);
    at += 2 + data.length;
  };
  put(DhcpOption.MessageType, Uint8Array.of(repr.messageType));
  if (repr.serverId !== undefined) put(DhcpOption.ServerId, u32(repr.serverId));
  if (repr.leaseSeconds !== undefined) put(DhcpOption.LeaseTime, u32(repr.leaseSeconds));
  if (repr.renewalSeconds !== undefined) put(DhcpOption.RenewalTime, u32(repr.renewalSeconds));
  if (repr.rebindingSeconds !== undefined) put(DhcpOption.RebindingTime, u32(repr.rebindingSeconds));
  if (repr.subnetMask !== undefined) put(DhcpOption.SubnetMask, u32(repr.subnetMask));
  if (repr.routers !== undefined) put(DhcpOption.Router, u32s(repr.routers));
  if (repr.dnsServers !== undefined) put(DhcpOption.DnsServer, u32s(repr.dnsServers));
  if (repr.domainName !== undefined) put(DhcpOption.DomainName, latin1(repr.domainName));
  if (repr.hostName !== undefined) put(DhcpOption.HostName, latin1(repr.hostName));
  if (repr.requestedIp !== undefined) put(DhcpOption.RequestedIp, u32(repr.requestedIp));
  if (repr.parameterList !== undefined) put(DhcpOption.ParameterList, Uint8Array.from(repr.parameterList));
  if (repr.maxMessageSize !== undefined) put(DhcpOption.MaxMessageSize, Uint8Array.of(repr.maxMessageSize >>> 8, repr.maxMessageSize & 0xff));
  if (repr.message !== undefined) put(DhcpOption.Message, latin1(repr.message));
  if (repr.clientId !== undefined) put(DhcpOption.ClientId, repr.clientId);
  bytes[at] = DhcpOption.End;
  return bytes;
}

function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  writeU32BE(bytes, 0, value);
  return bytes;
}

function u32s(values: readonly number[]): Uint8Array {
  const bytes = new Uint8Array(4 * values.length);
  values.forEach((value, i) => writeU32BE(bytes, 4 * i, value));
  return bytes;
}

function latin1(text: string): Uint8Array {
  return Uint8Array.from(text, (char) => char.charCodeAt(0) & 0xff);
}
