import { describe, expect, it } from "vitest";
import { buildUdpFrame, checkUdpDatagram, emitUdp } from "../../../datapath/inet.ts";
import { hex, toHex } from "../tunnel/hex.ts";

// UDP over IPv4 (RFC 768): the pseudo-header checksum, written out by hand.
// Server 10.44.0.254 port 53 -> client 10.44.0.100 port 5353, payload "hi!".

const SERVER = 0x0a2c00fe;
const CLIENT = 0x0a2c0064;
//                       sport dport len   csum  | payload
const DATAGRAM = hex("00 35 14 e9 00 0b 4b 97   68 69 21");

describe("UDP", () => {
  it("emits the header with the pseudo-header checksum", () => {
    const bytes = new Uint8Array(11);
    emitUdp({ sourcePort: 53, destinationPort: 5353, payload: hex("68 69 21") }, SERVER, CLIENT, bytes);
    expect(toHex(bytes)).toBe(toHex(DATAGRAM));
  });

  it("checks a datagram and reads its ports and payload, ignoring bytes past its length", () => {
    const padded = new Uint8Array(20);
    padded.set(DATAGRAM);
    const checked = checkUdpDatagram(padded, SERVER, CLIENT);
    expect(checked.ok).toBe(true);
    if (!checked.ok) return;
    expect(checked.value.sourcePort()).toBe(53);
    expect(checked.value.destinationPort()).toBe(5353);
    expect(toHex(checked.value.payload())).toBe("68 69 21");
  });

  it("accepts checksum 0 (none computed) and refuses a wrong one, a short one and a lying length", () => {
    const none = DATAGRAM.slice();
    none[6] = 0;
    none[7] = 0;
    expect(checkUdpDatagram(none, SERVER, CLIENT).ok).toBe(true);
    // The same bytes between other addresses do not verify: the pseudo-header counts.
    expect(checkUdpDatagram(DATAGRAM, SERVER, CLIENT + 1)).toMatchObject({ ok: false, error: { code: "bad-checksum" } });
    expect(checkUdpDatagram(DATAGRAM.subarray(0, 7), SERVER, CLIENT)).toMatchObject({ ok: false, error: { code: "truncated" } });
    const long = DATAGRAM.slice();
    long[5] = 12;
    expect(checkUdpDatagram(long, SERVER, CLIENT)).toMatchObject({ ok: false, error: { code: "bad-length" } });
    const short = DATAGRAM.slice();
    short[5] = 7;
    expect(checkUdpDatagram(short, SERVER, CLIENT)).toMatchObject({ ok: false, error: { code: "bad-length" } });
  });

  it("builds a whole frame: Ethernet, IPv4 with its checksum, UDP", () => {
    const frame = buildUdpFrame(
      { destination: 0x020000000064, source: 0x02ed1a2c00fe },
      { source: SERVER, destination: CLIENT },
      { sourcePort: 53, destinationPort: 5353, payload: hex("68 69 21") },
    );
    expect(toHex(frame)).toBe(toHex(hex(`
      02 00 00 00 00 64  02 ed 1a 2c 00 fe  08 00
      45 00 00 1f 00 00 00 00 40 11 65 15  0a 2c 00 fe  0a 2c 00 64
      00 35 14 e9 00 0b 4b 97  68 69 21
      00 00 00 00 00 00 00 00 00 00 00 00 00 00 00   # padding to 60 bytes
    `)));
  });
});
