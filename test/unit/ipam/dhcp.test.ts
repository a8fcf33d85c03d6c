import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DhcpMessageType, DhcpOp, emitDhcp, parseDhcp, type DhcpRepr } from "../../../datapath/dhcp.ts";
import { hex, toHex } from "../tunnel/hex.ts";

// DHCPv4 messages (RFC 2131) written out byte by byte: the fixed BOOTP part, the magic cookie,
// then options as code, length, data (RFC 2132).

const zeros = (n: number): string => "00 ".repeat(n);

/** The 240 bytes up to the options: op htype hlen hops | xid | secs flags | ciaddr yiaddr siaddr giaddr | chaddr | sname | file | cookie. */
function fixed(op: string, xid: string, flags: string, addresses: string, chaddr: string): string {
  return `${op} 01 06 00  ${xid}  00 00 ${flags}  ${addresses}  ${chaddr} ${zeros(10)}  ${zeros(64)} ${zeros(128)}  63 82 53 63`;
}

const DISCOVER = hex(`
  ${fixed("01", "39 03 f3 26", "80 00", zeros(16), "02 00 00 00 00 64")}
  35 01 01                          # 53 message type: DISCOVER
  3d 07 01 02 00 00 00 00 64        # 61 client identifier: type 1 + MAC
  0c 04 76 6d 31 00                 # 12 host name "vm1" (with a trailing NUL some clients count)
  32 04 0a 2c 00 78                 # 50 requested address 10.44.0.120
  37 07 01 03 06 0f 33 3a 3b        # 55 parameter request list
  39 02 05 dc                       # 57 maximum message size 1500
  ff 00 00 00                       # End, then padding
`);

const OFFER_REPR: DhcpRepr = {
  op: DhcpOp.Reply, messageType: DhcpMessageType.Offer, xid: 0x3903f326, broadcast: true,
  ciaddr: 0, yiaddr: 0x0a2c0078, siaddr: 0, giaddr: 0, clientMac: 0x020000000064,
  serverId: 0x0a2c00fe, leaseSeconds: 3600, renewalSeconds: 1800, rebindingSeconds: 3150,
  subnetMask: 0xffffff00, routers: [0x0a2c0001], dnsServers: [0x0a2c00fe], domainName: "lab.lan",
  clientId: hex("01 02 00 00 00 00 64"),
};

const OFFER_OPTIONS = `
  35 01 02                 # OFFER
  36 04 0a 2c 00 fe        # 54 server identifier
  33 04 00 00 0e 10        # 51 lease 3600 s
  3a 04 00 00 07 08        # 58 renewal 1800 s
  3b 04 00 00 0c 4e        # 59 rebinding 3150 s
  01 04 ff ff ff 00        # 1 subnet mask
  03 04 0a 2c 00 01        # 3 router
  06 04 0a 2c 00 fe        # 6 DNS server
  0f 07 6c 61 62 2e 6c 61 6e   # 15 domain "lab.lan"
  3d 07 01 02 00 00 00 00 64   # 61 client identifier, echoed (RFC 6842)
  ff`;

describe("DHCP messages", () => {
  it("parses a DISCOVER: fixed fields, broadcast flag and every option it carries", () => {
    const parsed = parseDhcp(DISCOVER);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value).toEqual({
      op: DhcpOp.Request, messageType: DhcpMessageType.Discover, xid: 0x3903f326, secs: 0, broadcast: true,
      ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, clientMac: 0x020000000064,
      clientId: hex("01 02 00 00 00 00 64"), hostName: "vm1", requestedIp: 0x0a2c0078,
      parameterList: [1, 3, 6, 15, 51, 58, 59], maxMessageSize: 1500,
    });
  });

  it("emits an OFFER byte for byte, message type first", () => {
    const expected = hex(`${fixed("02", "39 03 f3 26", "80 00", `${zeros(4)} 0a 2c 00 78 ${zeros(8)}`, "02 00 00 00 00 64")} ${OFFER_OPTIONS}`);
    expect(toHex(emitDhcp(OFFER_REPR))).toBe(toHex(expected));
  });

  it("zero-pads a short message (a NAK) to BOOTP's 300 bytes", () => {
    const nak: DhcpRepr = { ...OFFER_REPR, messageType: DhcpMessageType.Nak, yiaddr: 0, broadcast: false };
    for (const key of ["leaseSeconds", "renewalSeconds", "rebindingSeconds", "subnetMask", "routers", "dnsServers", "domainName", "clientId"] as const) delete nak[key];
    const expected = hex(`${fixed("02", "39 03 f3 26", "00 00", zeros(16), "02 00 00 00 00 64")} 35 01 06  36 04 0a 2c 00 fe  ff`);
    const bytes = emitDhcp(nak);
    expect(bytes.length).toBe(300);
    expect(toHex(bytes.subarray(0, expected.length))).toBe(toHex(expected));
    expect(bytes.subarray(expected.length).every((b) => b === 0)).toBe(true);
  });

  it("reads back what it writes", () => {
    expect(parseDhcp(emitDhcp(OFFER_REPR))).toEqual({ ok: true, value: { ...OFFER_REPR, secs: 0 } });
  });

  it.each([
    ["truncated", DISCOVER.subarray(0, 239)],
    ["bad-op", patch(DISCOVER, 0, 3)],
    ["bad-hardware", patch(DISCOVER, 1, 6)],
    ["bad-hardware", patch(DISCOVER, 2, 16)],
    ["bad-magic", patch(DISCOVER, 236, 0)],
    // An option whose length runs past the end of the message.
    ["bad-option", hex(`${fixed("01", "00 00 00 01", "00 00", zeros(16), "02 00 00 00 00 64")} 35 01 01 0c 09 61 62`)],
    // A subnet mask of 3 bytes, a client identifier of 1 byte: known options with impossible lengths.
    ["bad-option", hex(`${fixed("01", "00 00 00 01", "00 00", zeros(16), "02 00 00 00 00 64")} 35 01 01 01 03 ff ff ff ff`)],
    ["bad-option", hex(`${fixed("01", "00 00 00 01", "00 00", zeros(16), "02 00 00 00 00 64")} 35 01 01 3d 01 01 ff`)],
    ["no-message-type", hex(`${fixed("01", "00 00 00 01", "00 00", zeros(16), "02 00 00 00 00 64")} 0c 01 61 ff`)],
    ["no-message-type", hex(`${fixed("01", "00 00 00 01", "00 00", zeros(16), "02 00 00 00 00 64")} 35 01 09 ff`)],
  ])("refuses a malformed message as %s", (code, bytes) => {
    const parsed = parseDhcp(bytes);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) {
      expect(parsed.error.code).toBe(code);
      expect(parsed.error.message.length).toBeGreaterThan(10);
    }
  });

  it("never throws on arbitrary bytes, with or without a valid fixed part", () => {
    const head = DISCOVER.subarray(0, 240);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), fc.boolean(), (tail, prefixed) => {
      const bytes = prefixed ? Uint8Array.from([...head, ...tail]) : tail;
      const parsed = parseDhcp(bytes);
      return parsed.ok || typeof parsed.error.message === "string";
    }), { numRuns: 2000 });
  });

  it("round-trips arbitrary reprs", () => {
    const address = fc.integer({ min: 0, max: 0xffffffff });
    const text = fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes("\0") && [...s].every((c) => c.charCodeAt(0) < 256));
    const repr = fc.record({
      op: fc.constantFrom(DhcpOp.Request, DhcpOp.Reply),
      messageType: fc.integer({ min: 1, max: 8 }) as fc.Arbitrary<DhcpMessageType>,
      xid: address, secs: fc.integer({ min: 0, max: 0xffff }), broadcast: fc.boolean(),
      ciaddr: address, yiaddr: address, siaddr: address, giaddr: address,
      clientMac: fc.integer({ min: 0, max: 0xffff_ffff_ffff }),
    }).chain((base) => fc.record({
      subnetMask: address, routers: fc.array(address, { minLength: 1, maxLength: 4 }), hostName: text, requestedIp: address,
      leaseSeconds: address, clientId: fc.uint8Array({ minLength: 2, maxLength: 64 }),
    }, { requiredKeys: [] }).map((options) => ({ ...base, ...options })));
    fc.assert(fc.property(repr, (value) => {
      expect(parseDhcp(emitDhcp(value))).toEqual({ ok: true, value });
    }), { numRuns: 500 });
  });
});

function patch(bytes: Uint8Array, offset: number, value: number): Uint8Array {
  const copy = bytes.slice();
  copy[offset] = value;
  return copy;
}
