import { readU16BE, writeU16BE, writeU32BE } from "./bytes.ts";
import { writeIpv4, type Ipv4Address } from "./inet.ts";
import { fail, ok, type Result } from "./result.ts";

/*
 * The DNS messages (RFC 1035) a small authoritative server needs: one question in, a response
 * with A or PTR answers (or none) out. Offsets named once; `parseDnsQuery` validates and returns
 * a typed error; `emitDnsResponse` writes the answer. No recursion (RA is always 0), no EDNS
 * (an OPT record in the query is ignored and none is sent back: replies stay under 512 bytes),
 * no TCP, no compression in questions (no client compresses the only name of a query).
 *
 *   0    2       4         6         8         10        12
 *   | id | flags | qdcount | ancount | nscount | arcount | question: name type class | answers ...
 */

export const DNS_ID = 0;
export const DNS_FLAGS = 2;
export const DNS_QDCOUNT = 4;
export const DNS_ANCOUNT = 6;
export const DNS_NSCOUNT = 8;
export const DNS_ARCOUNT = 10;
export const DNS_HEADER_LEN = 12;
export const DNS_PORT = 53;

const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_RD = 0x0100;
const OPCODE_SHIFT = 11;
const MAX_LABEL_LEN = 63;
/** Longest name on the wire, length bytes included (RFC 1035 §2.3.4). */
const MAX_NAME_WIRE_LEN = 255;
/** The answer's owner name points back at the question's name, right after the header. */
const POINTER_TO_QUESTION = 0xc000 | DNS_HEADER_LEN;

export const DnsType = { A: 1, PTR: 12, AAAA: 28 } as const;
export const DNS_CLASS_IN = 1;
export const DnsOpcode = { Query: 0 } as const;
export const DnsRcode = { NoError: 0, FormErr: 1, ServFail: 2, NxDomain: 3, NotImp: 4, Refused: 5 } as const;
export type DnsRcode = (typeof DnsRcode)[keyof typeof DnsRcode];

export type DnsError = "truncated" | "not-query" | "bad-question-count" | "bad-name";

/** One question of a query, with what the response must echo. */
export interface DnsQuery {
  id: number;
  opcode: number;
  recursionDesired: boolean;
  /** The name in lower case, labels joined by dots, no trailing dot ("" is the root). */
  name: string;
  type: number;
  class: number;
  /** The question as received (name, type, class), echoed byte for byte in the response. */
  question: Uint8Array;
}

/** One answer record; its owner is the question's name. */
export type DnsAnswer =
  | { type: typeof DnsType.A; ttl: number; address: Ipv4Address }
  | { type: typeof DnsType.PTR; ttl: number; name: string };

/** What a response says besides the echoed question. */
export interface DnsResponseRepr {
  rcode: DnsRcode;
  authoritative: boolean;
  answers: DnsAnswer[];
}

/**
 * Validates a query and reads its question: at least the 12-byte header, QR clear, exactly one
 * question whose name is uncompressed labels of 1..63 bytes, ≤ 255 bytes in all, followed by
 * type and class. Records after the question (an EDNS OPT, say) are not read.
 */
export function parseDnsQuery(bytes: Uint8Array): Result<DnsQuery, DnsError> {
  if (bytes.length < DNS_HEADER_LEN) {
    return fail("truncated", `DNS message of ${bytes.length} bytes is shorter than the ${DNS_HEADER_LEN}-byte header`);
  }
  const flags = readU16BE(bytes, DNS_FLAGS);
  if ((flags & FLAG_QR) !== 0) return fail("not-query", "DNS message is a response (QR set), not a query");
  const count = readU16BE(bytes, DNS_QDCOUNT);
  if (count !== 1) return fail("bad-question-count", `DNS query has ${count} questions; exactly 1 is served`);
  const labels: string[] = [];
  let at = DNS_HEADER_LEN;
  for (;;) {
    if (at >= bytes.length) return fail("truncated", "DNS question name runs past the end of the message");
    const length = bytes[at] as number;
    if (length === 0) break;
    if (length > MAX_LABEL_LEN) return fail("bad-name", `DNS label length byte 0x${length.toString(16)} is a pointer or above ${MAX_LABEL_LEN}`);
    if (at + 1 + length > bytes.length) return fail("truncated", "DNS question label runs past the end of the message");
    labels.push(String.fromCharCode(...bytes.subarray(at + 1, at + 1 + length)).toLowerCase());
    at += 1 + length;
    if (at - DNS_HEADER_LEN + 1 > MAX_NAME_WIRE_LEN) return fail("bad-name", `DNS name is longer than ${MAX_NAME_WIRE_LEN} bytes`);
  }
  const end = at + 1 + 4;
  if (end > bytes.length) return fail("truncated", "DNS question has no room for its type and class");
  return ok({
    id: readU16BE(bytes, DNS_ID),
    opcode: (flags >> OPCODE_SHIFT) & 0x0f,
    recursionDesired: (flags & FLAG_RD) !== 0,
    name: labels.join("."),
    type: readU16BE(bytes, at + 1),
    class: readU16BE(bytes, at + 3),
    question: bytes.slice(DNS_HEADER_LEN, end),
  });
}

/** A name as uncompressed wire labels ("a.b" → 01 61 01 62 00). The caller passes valid labels. */
export function encodeDnsName(name: string): Uint8Array {
  const labels = name === "" ? [] : name.split(".");
  const bytes = new Uint8Array(labels.reduce((sum, label) => sum + 1 + label.length, 1));
  let at = 0;
  for (const label of labels) {
    bytes[at++] = label.length;
    for (let i = 0; i < label.length; i++) bytes[at++] = label.charCodeAt(i) & 0xff;
  }
  return bytes;
}

/**
 * Writes the response to `query`: its id, opcode and RD echoed, QR set, AA as given, RA clear
 * (no recursion), the question echoed, then each answer with its owner compressed to a pointer
 * at the question's name.
 */
export function emitDnsResponse(query: DnsQuery, response: DnsResponseRepr): Uint8Array {
  const rdatas = response.answers.map((answer) => {
    if (answer.type === DnsType.PTR) return encodeDnsName(answer.name);
    const rdata = new Uint8Array(4);
    writeIpv4(answer.address, rdata, 0);
    return rdata;
  });
  const length = DNS_HEADER_LEN + query.question.length + rdatas.reduce((sum, rdata) => sum + 12 + rdata.length, 0);
  const bytes = new Uint8Array(length);
  writeU16BE(bytes, DNS_ID, query.id);
  let flags = FLAG_QR | ((query.opcode & 0x0f) << OPCODE_SHIFT) | response.rcode;
  if (response.authoritative) flags |= FLAG_AA;
  if (query.recursionDesired) flags |= FLAG_RD;
  writeU16BE(bytes, DNS_FLAGS, flags);
  writeU16BE(bytes, DNS_QDCOUNT, 1);
  writeU16BE(bytes, DNS_ANCOUNT, rdatas.length);
  bytes.set(query.question, DNS_HEADER_LEN);
  let at = DNS_HEADER_LEN + query.question.length;
  response.answers.forEach((answer, i) => {
    const rdata = rdatas[i] as Uint8Array;
    writeU16BE(bytes, at, POINTER_TO_QUESTION);
    writeU16BE(bytes, at + 2, answer.type);
    writeU16BE(bytes, at + 4, DNS_CLASS_IN);
    writeU32BE(bytes, at + 6, answer.ttl);
    writeU16BE(bytes, at + 10, rdata.length);
    bytes.set(rdata, at + 12);
    at += 12 + rdata.length;
  });
  return bytes;
}

/** The in-addr.arpa name of an address: 10.44.0.7 → "7.0.44.10.in-addr.arpa". */
export function reverseName(address: Ipv4Address): string {
  return `${address & 0xff}.${(address >>> 8) & 0xff}.${(address >>> 16) & 0xff}.${(address >>> 24) & 0xff}.in-addr.arpa`;
}

/** The address an in-addr.arpa name stands for, or undefined if it is not a full four-octet reverse name. */
export function addressOfReverseName(name: string): Ipv4Address | undefined {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.in-addr\.arpa$/.exec(name);
  if (match === null) return undefined;
  const octets = match.slice(1).map(Number);
  if (octets.some((octet) => octet > 255)) return undefined;
  const [d, c, b, a] = octets as [number, number, number, number];
  return ((a << 24) >>> 0) + (b << 16) + (c << 8) + d;
}
