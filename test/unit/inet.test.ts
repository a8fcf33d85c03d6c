import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkEthernetFrame, ETH_HEADER_LEN } from "../../datapath/ethernet.ts";
import {
  ArpOperation, buildArpFrame, buildIcmpEchoFrame, checkArpPacket, checkIcmpEcho, checkIpv4Packet, emitArp, emitIcmpEcho,
  emitIpv4Header, formatIpv4, IcmpEchoType, internetChecksum, IPV4_PROTOCOL_ICMP, onesComplementSum, parseIpv4, type ArpRepr,
  type IcmpEchoRepr, type Ipv4Repr,
} from "../../datapath/inet.ts";
import type { Result } from "../../datapath/result.ts";
import { frame, hex, mac } from "./datapath-frames.ts";

// Addresses used throughout: A = 02:00:00:00:00:0a at 10.77.0.1, B = 02:00:00:00:00:0b at 10.77.0.250.

//           htype  ptype  hl pl  oper | sender MAC        | sender IP   | target MAC        | target IP
const ARP_REQUEST = "00 01 08 00 06 04 00 01 | 02 00 00 00 00 0a | 0a 4d 00 01 | 00 00 00 00 00 00 | 0a 4d 00 fa";
const ARP_REPLY = "00 01 08 00 06 04 00 02 | 02 00 00 00 00 0b | 0a 4d 00 fa | 02 00 00 00 00 0a | 0a 4d 00 01";

//        ver/ihl tos total  ident  flags  ttl prot csum  | source      | destination
const IPV4_ECHO_REQUEST = "45 00 00 24 00 01 40 00 40 01 25 44 | 0a 4d 00 01 | 0a 4d 00 fa";
const IPV4_ECHO_REPLY = "45 00 00 24 00 00 00 00 40 01 65 45 | 0a 4d 00 fa | 0a 4d 00 01";
//                type code csum  ident seq   | data "abcdefgh"
const ICMP_ECHO_REQUEST = "08 00 54 35 12 34 00 01 | 61 62 63 64 65 66 67 68";
const ICMP_ECHO_REPLY = "00 00 5c 35 12 34 00 01 | 61 62 63 64 65 66 67 68";

const ETH_B_FROM_A_IPV4 = "02 00 00 00 00 0b | 02 00 00 00 00 0a | 08 00";
const ETH_BROADCAST_FROM_A_ARP = "ff ff ff ff ff ff | 02 00 00 00 00 0a | 08 06";

const A_MAC = mac("02:00:00:00:00:0a");
const B_MAC = mac("02:00:00:00:00:0b");
const A_IP = 0x0a4d0001;
const B_IP = 0x0a4d00fa;

function must<T>(result: Result<T>): T {
  if (!result.ok) throw new Error(`${result.error.code}: ${result.error.message}`);
  return result.value;
}

function codeOf<T>(result: Result<T>): string {
  return result.ok ? "ok" : result.error.code;
}

function toHex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");
}

describe("IPv4 addresses", () => {
  it("parses dotted quads to unsigned 32-bit numbers and formats them back", () => {
    expect(must(parseIpv4("10.77.0.250"))).toBe(0x0a4d00fa);
    expect(must(parseIpv4("255.255.255.255"))).toBe(0xffffffff);
    expect(must(parseIpv4("0.0.0.0"))).toBe(0);
    expect(formatIpv4(0xc0a800c7)).toBe("192.168.0.199");
    expect(formatIpv4(0xffffffff)).toBe("255.255.255.255");
  });

  it("rejects out-of-range octets, leading zeros, short and decorated forms as invalid-ipv4", () => {
    for (const text of ["256.0.0.1", "10.0.0", "10.0.0.1.2", "010.0.0.1", " 10.0.0.1", "10.0.0.1/24", "a.b.c.d", ""]) {
      const result = parseIpv4(text);
      expect(codeOf(result), text).toBe("invalid-ipv4");
      if (!result.ok) expect(result.error.message).toContain(JSON.stringify(text));
    }
  });

  it("round-trips every address", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (address) => must(parseIpv4(formatIpv4(address))) === address));
  });
});

describe("internet checksum (RFC 1071)", () => {
  it("matches the RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2, checksum 220d", () => {
    const bytes = hex("00 01 f2 03 f4 f5 f6 f7");
    expect(onesComplementSum(bytes)).toBe(0xddf2);
    expect(internetChecksum(bytes)).toBe(0x220d);
  });

  it("computes the well-known header checksum b861 and verifies to zero with it in place", () => {
    const header = hex("45 00 00 73 00 00 40 00 40 11 00 00 c0 a8 00 01 c0 a8 00 c7");
    expect(internetChecksum(header)).toBe(0xb861);
    header[10] = 0xb8;
    header[11] = 0x61;
    expect(internetChecksum(header)).toBe(0);
  });

  it("pads an odd trailing byte with zero and folds carries", () => {
    expect(onesComplementSum(hex("ab"))).toBe(0xab00);
    expect(onesComplementSum(hex("ff ff ff ff"))).toBe(0xffff);
    expect(onesComplementSum(hex("80 00 80 00"))).toBe(0x0001);
    expect(internetChecksum(new Uint8Array(0))).toBe(0xffff);
  });
});

describe("ARP (Ethernet/IPv4)", () => {
  it("reads a request from A asking who has 10.77.0.250", () => {
    const arp = must(checkArpPacket(hex(ARP_REQUEST)));
    expect(arp.repr()).toEqual({ operation: ArpOperation.Request, senderMac: A_MAC, senderIp: A_IP, targetMac: 0, targetIp: B_IP });
  });

  it("reads B's reply", () => {
    const arp = must(checkArpPacket(hex(ARP_REPLY)));
    expect(arp.operation()).toBe(ArpOperation.Reply);
    expect(arp.senderMac()).toBe(B_MAC);
    expect(formatIpv4(arp.senderIp())).toBe("10.77.0.250");
    expect(arp.targetMac()).toBe(A_MAC);
    expect(formatIpv4(arp.targetIp())).toBe("10.77.0.1");
  });

  it("emits exactly the literal bytes", () => {
    const bytes = new Uint8Array(28);
    emitArp({ operation: ArpOperation.Reply, senderMac: B_MAC, senderIp: B_IP, targetMac: A_MAC, targetIp: A_IP }, bytes);
    expect(toHex(bytes)).toBe(toHex(hex(ARP_REPLY)));
  });

  it("builds a broadcast request frame padded to 60 bytes", () => {
    const built = buildArpFrame(
      { destination: 0xffffffffffff, source: A_MAC },
      { operation: ArpOperation.Request, senderMac: A_MAC, senderIp: A_IP, targetMac: 0, targetIp: B_IP },
    );
    expect(built.length).toBe(60);
    expect(toHex(built)).toBe(toHex(frame(`${ETH_BROADCAST_FROM_A_ARP} | ${ARP_REQUEST}`)));
  });

  it("accepts Ethernet padding after the 28 bytes", () => {
    const padded = frame(ARP_REQUEST, 46);
    expect(must(checkArpPacket(padded)).targetIp()).toBe(B_IP);
  });

  it("rejects a truncated packet, other hardware, other protocols and other operations", () => {
    expect(codeOf(checkArpPacket(hex(ARP_REQUEST).subarray(0, 27)))).toBe("truncated");
    expect(codeOf(checkArpPacket(hex(ARP_REQUEST.replace("00 01 08 00 06 04", "00 06 08 00 06 04"))))).toBe("unsupported-hardware");
    expect(codeOf(checkArpPacket(hex(ARP_REQUEST.replace("00 01 08 00 06 04", "00 01 08 00 08 04"))))).toBe("unsupported-hardware");
    expect(codeOf(checkArpPacket(hex(ARP_REQUEST.replace("00 01 08 00 06 04", "00 01 86 dd 06 10"))))).toBe("unsupported-protocol");
    // RARP request (operation 3) is not ARP.
    expect(codeOf(checkArpPacket(hex(ARP_REQUEST.replace("06 04 00 01", "06 04 00 03"))))).toBe("unsupported-operation");
  });
});

describe("IPv4 header", () => {
  it("reads an echo request's header and stops the payload at the total length", () => {
    const bytes = frame(`${IPV4_ECHO_REQUEST} | ${ICMP_ECHO_REQUEST}`, 46); // 36 bytes plus 10 of Ethernet padding
    const ip = must(checkIpv4Packet(bytes));
    expect(ip.version()).toBe(4);
    expect(ip.headerLength()).toBe(20);
    expect(ip.totalLength()).toBe(36);
    expect(ip.identification()).toBe(1);
    expect(ip.dontFragment()).toBe(true);
    expect(ip.isFragment()).toBe(false);
    expect(ip.ttl()).toBe(64);
    expect(ip.protocol()).toBe(IPV4_PROTOCOL_ICMP);
    expect(ip.checksum()).toBe(0x2544);
    expect(formatIpv4(ip.source())).toBe("10.77.0.1");
    expect(formatIpv4(ip.destination())).toBe("10.77.0.250");
    expect(toHex(ip.payload())).toBe(toHex(hex(ICMP_ECHO_REQUEST)));
  });

  it("emits exactly the literal header, checksum included", () => {
    const bytes = new Uint8Array(20);
    emitIpv4Header({ source: B_IP, destination: A_IP, protocol: IPV4_PROTOCOL_ICMP, payloadLength: 16, identification: 0 }, bytes);
    expect(toHex(bytes)).toBe(toHex(hex(IPV4_ECHO_REPLY)));
  });

  it("skips options: IHL 6 puts the payload after 24 bytes", () => {
    // 24-byte header with one 4-byte option (NOP NOP NOP EOL) and a 4-byte payload; checksum computed by hand: 61 50.
    const bytes = hex("46 00 00 1c 00 00 00 00 40 fd 61 50 0a 4d 00 01 0a 4d 00 fa | 01 01 01 00 | de ad be ef");
    expect(internetChecksum(bytes.subarray(0, 24))).toBe(0);
    const ip = must(checkIpv4Packet(bytes));
    expect(ip.headerLength()).toBe(24);
    expect(toHex(ip.payload())).toBe("de ad be ef");
  });

  it("reports fragments", () => {
    const header = hex("45 00 00 24 00 01 20 00 40 01 00 00 0a 4d 00 01 0a 4d 00 fa");
    const bytes = frame(toHex(header), 36);
    bytes[10] = internetChecksum(bytes.subarray(0, 20)) >> 8;
    bytes[11] = internetChecksum(bytes.subarray(0, 20)) & 0xff;
    const ip = must(checkIpv4Packet(bytes));
    expect(ip.moreFragments()).toBe(true);
    expect(ip.isFragment()).toBe(true);
  });

  it("rejects truncated, bad version, bad IHL, bad total length and bad checksum with their codes", () => {
    const good = hex(`${IPV4_ECHO_REQUEST} | ${ICMP_ECHO_REQUEST}`);
    expect(codeOf(checkIpv4Packet(good))).toBe("ok");
    expect(codeOf(checkIpv4Packet(good.subarray(0, 19)))).toBe("truncated");

    const v6 = good.slice();
    v6[0] = 0x65;
    const version = checkIpv4Packet(v6);
    expect(codeOf(version)).toBe("bad-version");
    if (!version.ok) expect(version.error.message).toContain("version 6");

    const ihl4 = good.slice();
    ihl4[0] = 0x44;
    expect(codeOf(checkIpv4Packet(ihl4))).toBe("bad-ihl");

    const ihlTooLong = good.slice(0, 24);
    ihlTooLong[0] = 0x4f; // 60-byte header in 24 bytes
    expect(codeOf(checkIpv4Packet(ihlTooLong))).toBe("truncated");

    expect(codeOf(checkIpv4Packet(good.subarray(0, 35)))).toBe("bad-total-length");
    const shortTotal = good.slice();
    shortTotal[3] = 0x10; // total length 16 < header 20
    expect(codeOf(checkIpv4Packet(shortTotal))).toBe("bad-total-length");

    const flipped = good.slice();
    flipped[8] = 0x3f; // TTL changed, checksum not updated
    const checksum = checkIpv4Packet(flipped);
    expect(codeOf(checksum)).toBe("bad-checksum");
    if (!checksum.ok) expect(checksum.error.message).toContain("0x2544");
  });
});

describe("ICMP echo", () => {
  it("reads the request and the reply", () => {
    const request = must(checkIcmpEcho(hex(ICMP_ECHO_REQUEST)));
    expect(request.type()).toBe(IcmpEchoType.Request);
    expect(request.identifier()).toBe(0x1234);
    expect(request.sequence()).toBe(1);
    expect(request.checksum()).toBe(0x5435);
    expect(new TextDecoder().decode(request.data())).toBe("abcdefgh");
    const reply = must(checkIcmpEcho(hex(ICMP_ECHO_REPLY)));
    expect(reply.type()).toBe(IcmpEchoType.Reply);
    expect(reply.checksum()).toBe(0x5c35);
  });

  it("emits exactly the literal bytes", () => {
    const bytes = new Uint8Array(16);
    emitIcmpEcho({ type: IcmpEchoType.Reply, identifier: 0x1234, sequence: 1, data: new TextEncoder().encode("abcdefgh") }, bytes);
    expect(toHex(bytes)).toBe(toHex(hex(ICMP_ECHO_REPLY)));
  });

  it("builds the whole request frame: Ethernet, IPv4, ICMP, padded to 60", () => {
    const built = buildIcmpEchoFrame(
      { destination: B_MAC, source: A_MAC },
      { source: A_IP, destination: B_IP, identification: 1, dontFragment: true },
      { type: IcmpEchoType.Request, identifier: 0x1234, sequence: 1, data: new TextEncoder().encode("abcdefgh") },
    );
    expect(built.length).toBe(60);
    expect(toHex(built)).toBe(toHex(frame(`${ETH_B_FROM_A_IPV4} | ${IPV4_ECHO_REQUEST} | ${ICMP_ECHO_REQUEST}`)));
  });

  it("does not pad a frame that is already long enough", () => {
    const built = buildIcmpEchoFrame(
      { destination: B_MAC, source: A_MAC },
      { source: A_IP, destination: B_IP },
      { type: IcmpEchoType.Request, identifier: 1, sequence: 1, data: new Uint8Array(56) },
    );
    expect(built.length).toBe(14 + 20 + 8 + 56);
  });

  it("rejects truncated messages, bad checksums and other ICMP types", () => {
    expect(codeOf(checkIcmpEcho(hex("08 00 f7 ff 00 00 00")))).toBe("truncated");
    const corrupted = hex(ICMP_ECHO_REQUEST);
    corrupted[15] = 0x69; // data changed, checksum not updated
    expect(codeOf(checkIcmpEcho(corrupted))).toBe("bad-checksum");
    // Destination unreachable (3/1) with a valid checksum.
    const unreachable = hex("03 01 00 00 00 00 00 00");
    unreachable[2] = internetChecksum(unreachable) >> 8;
    unreachable[3] = internetChecksum(unreachable) & 0xff;
    expect(toHex(unreachable)).toBe("03 01 fc fe 00 00 00 00");
    expect(codeOf(checkIcmpEcho(unreachable))).toBe("not-echo");
    // Echo request with a non-zero code.
    const coded = hex("08 01 f7 fe 00 00 00 00");
    expect(internetChecksum(coded)).toBe(0);
    expect(codeOf(checkIcmpEcho(coded))).toBe("not-echo");
  });
});

describe("build → parse round trips (property)", () => {
  const macArb = fc.integer({ min: 0, max: 0xffff_ffff_ffff });
  const ipArb = fc.integer({ min: 0, max: 0xffffffff });
  const u16 = fc.integer({ min: 0, max: 0xffff });

  it("ARP frames", () => {
    const reprArb = fc.record({
      operation: fc.constantFrom(ArpOperation.Request, ArpOperation.Reply),
      senderMac: macArb,
      senderIp: ipArb,
      targetMac: macArb,
      targetIp: ipArb,
    });
    fc.assert(
      fc.property(macArb, macArb, reprArb, (destination, source, repr: ArpRepr) => {
        const built = buildArpFrame({ destination, source }, repr);
        const eth = must(checkEthernetFrame(built));
        expect(built.length).toBe(60);
        expect(eth.destination()).toBe(destination);
        expect(eth.source()).toBe(source);
        expect(eth.etherType()).toBe(0x0806);
        expect(must(checkArpPacket(eth.payload())).repr()).toEqual(repr);
      }),
    );
  });

  it("ICMP echo in IPv4: checksums verify and every field survives", () => {
    const echoArb = fc.record({
      type: fc.constantFrom(IcmpEchoType.Request, IcmpEchoType.Reply),
      identifier: u16,
      sequence: u16,
      data: fc.uint8Array({ maxLength: 1472 }),
    });
    const ipArb2 = fc.record({ source: ipArb, destination: ipArb, ttl: fc.integer({ min: 1, max: 255 }), identification: u16, dontFragment: fc.boolean() });
    fc.assert(
      fc.property(macArb, macArb, ipArb2, echoArb, (destination, source, ipRepr: Omit<Ipv4Repr, "protocol" | "payloadLength">, echo: IcmpEchoRepr) => {
        const built = buildIcmpEchoFrame({ destination, source }, ipRepr, echo);
        expect(built.length).toBe(Math.max(60, ETH_HEADER_LEN + 20 + 8 + echo.data.length));
        const eth = must(checkEthernetFrame(built));
        expect(eth.etherType()).toBe(0x0800);
        const ip = must(checkIpv4Packet(eth.payload()));
        expect(internetChecksum(eth.payload().subarray(0, 20))).toBe(0);
        expect([ip.source(), ip.destination(), ip.ttl(), ip.identification(), ip.dontFragment(), ip.protocol()]).toEqual([
          ipRepr.source, ipRepr.destination, ipRepr.ttl, ipRepr.identification, ipRepr.dontFragment, IPV4_PROTOCOL_ICMP,
        ]);
        expect(internetChecksum(ip.payload())).toBe(0);
        const parsed = must(checkIcmpEcho(ip.payload()));
        expect([parsed.type(), parsed.identifier(), parsed.sequence()]).toEqual([echo.type, echo.identifier, echo.sequence]);
        expect(toHex(parsed.data())).toBe(toHex(echo.data));
      }),
      { numRuns: 200 },
    );
  });

  it("a single flipped bit anywhere in an ICMP echo is rejected", () => {
    fc.assert(
      fc.property(u16, u16, fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.nat(), (identifier, sequence, data, bitSeed) => {
        const bytes = new Uint8Array(8 + data.length);
        emitIcmpEcho({ type: IcmpEchoType.Request, identifier, sequence, data }, bytes);
        const bit = bitSeed % (bytes.length * 8);
        bytes[bit >> 3] = (bytes[bit >> 3] as number) ^ (1 << (bit & 7));
        expect(checkIcmpEcho(bytes).ok).toBe(false);
      }),
    );
  });
});
