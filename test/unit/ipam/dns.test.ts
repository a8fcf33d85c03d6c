import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  addressOfReverseName, DnsRcode, DnsType, emitDnsResponse, encodeDnsName, parseDnsQuery, reverseName,
} from "../../../datapath/dns.ts";
import { hex, toHex } from "../tunnel/hex.ts";

// DNS (RFC 1035): a query as dig sends it (with an EDNS OPT record), and the responses.

//                id    flags  qd    an    ns    ar
const A_QUERY = hex(`
  ab cd 01 20 00 01 00 00 00 00 00 01     # RD and AD set, one question, one additional
  02 44 62 03 6c 61 62 03 6c 61 6e 00     # "Db.lab.lan" (mixed case is echoed, matched case-insensitively)
  00 01 00 01                             # type A, class IN
  00 00 29 04 d0 00 00 00 00 00 00        # OPT (EDNS), ignored
`);

describe("DNS queries", () => {
  it("parses the question, lower-cases the name and keeps the raw question to echo", () => {
    const parsed = parseDnsQuery(A_QUERY);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value).toMatchObject({ id: 0xabcd, opcode: 0, recursionDesired: true, name: "db.lab.lan", type: DnsType.A, class: 1 });
    expect(toHex(parsed.value.question)).toBe("02 44 62 03 6c 61 62 03 6c 61 6e 00 00 01 00 01");
  });

  it.each([
    ["truncated", hex("ab cd 01 00 00 01 00 00 00 00 00")],
    ["not-query", hex("ab cd 81 00 00 01 00 00 00 00 00 00 00 00 01 00 01")],
    ["bad-question-count", hex("ab cd 01 00 00 02 00 00 00 00 00 00 00 00 01 00 01")],
    ["bad-question-count", hex("ab cd 01 00 00 00 00 00 00 00 00 00")],
    ["bad-name", hex("ab cd 01 00 00 01 00 00 00 00 00 00 c0 0c 00 01 00 01")], // a compression pointer
    ["truncated", hex("ab cd 01 00 00 01 00 00 00 00 00 00 05 61 62")], // label past the end
    ["truncated", hex("ab cd 01 00 00 01 00 00 00 00 00 00 01 61 00 00 01")], // no class
    ["bad-name", hex(`ab cd 01 00 00 01 00 00 00 00 00 00 ${"3f ".concat("61 ".repeat(63)).repeat(5)} 00 00 01 00 01`)], // > 255 bytes
  ])("refuses %s", (code, bytes) => {
    expect(parseDnsQuery(bytes)).toMatchObject({ ok: false, error: { code } });
  });

  it("never throws on arbitrary bytes", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const parsed = parseDnsQuery(bytes);
      return parsed.ok || parsed.error.message.length > 0;
    }), { numRuns: 2000 });
  });
});

describe("DNS responses", () => {
  const query = (): ReturnType<typeof parseDnsQuery> & { ok: true } => parseDnsQuery(A_QUERY) as ReturnType<typeof parseDnsQuery> & { ok: true };

  it("answers A with the question echoed, AA set, RA clear, and the owner compressed to the question", () => {
    const bytes = emitDnsResponse(query().value, { rcode: DnsRcode.NoError, authoritative: true, answers: [{ type: DnsType.A, ttl: 30, address: 0x0a2c000a }] });
    expect(toHex(bytes)).toBe(toHex(hex(`
      ab cd 85 00 00 01 00 01 00 00 00 00     # QR AA RD, NOERROR, 1 question, 1 answer
      02 44 62 03 6c 61 62 03 6c 61 6e 00 00 01 00 01
      c0 0c 00 01 00 01 00 00 00 1e 00 04 0a 2c 00 0a   # pointer to offset 12, A, IN, TTL 30, 10.44.0.10
    `)));
  });

  it("answers NXDOMAIN and REFUSED without records", () => {
    const nx = emitDnsResponse(query().value, { rcode: DnsRcode.NxDomain, authoritative: true, answers: [] });
    expect(toHex(nx.subarray(0, 12))).toBe("ab cd 85 03 00 01 00 00 00 00 00 00");
    const refused = emitDnsResponse(query().value, { rcode: DnsRcode.Refused, authoritative: false, answers: [] });
    expect(toHex(refused.subarray(0, 12))).toBe("ab cd 81 05 00 01 00 00 00 00 00 00");
  });

  it("answers PTR with the name as uncompressed labels", () => {
    const ptrQuery = parseDnsQuery(hex(`
      00 07 01 00 00 01 00 00 00 00 00 00
      02 31 30 01 30 02 34 34 02 31 30 07 69 6e 2d 61 64 64 72 04 61 72 70 61 00   # 10.0.44.10.in-addr.arpa
      00 0c 00 01`));
    expect(ptrQuery).toMatchObject({ ok: true, value: { name: "10.0.44.10.in-addr.arpa", type: DnsType.PTR } });
    if (!ptrQuery.ok) return;
    const bytes = emitDnsResponse(ptrQuery.value, { rcode: DnsRcode.NoError, authoritative: true, answers: [{ type: DnsType.PTR, ttl: 30, name: "db.lab.lan" }] });
    expect(toHex(bytes.subarray(12 + ptrQuery.value.question.length))).toBe(toHex(hex(`
      c0 0c 00 0c 00 01 00 00 00 1e 00 0c  02 64 62 03 6c 61 62 03 6c 61 6e 00`)));
  });

  it("maps addresses to in-addr.arpa names and back, and refuses what is not a full reverse name", () => {
    expect(reverseName(0x0a2c000a)).toBe("10.0.44.10.in-addr.arpa");
    expect(addressOfReverseName("10.0.44.10.in-addr.arpa")).toBe(0x0a2c000a);
    expect(addressOfReverseName("255.255.255.255.in-addr.arpa")).toBe(0xffffffff);
    for (const name of ["0.44.10.in-addr.arpa", "256.0.44.10.in-addr.arpa", "10.0.44.10.in-addr.arpa.com", "db.lab.lan"]) {
      expect(addressOfReverseName(name), name).toBeUndefined();
    }
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (address) => addressOfReverseName(reverseName(address)) === address));
    expect(toHex(encodeDnsName(""))).toBe("00");
  });
});
