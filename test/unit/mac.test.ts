import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  BROADCAST_MAC, formatMac, isBroadcastMac, isLocallyAdministeredMac, isMulticastMac, isUsableUnicastMac,
  macKeyAt, parseMac, writeMac,
} from "../../datapath/mac.ts";

function mustParse(text: string): number {
  const result = parseMac(text);
  if (!result.ok) throw new Error(result.error.message);
  return result.value;
}

describe("MAC addresses", () => {
  it("parses and formats the canonical form", () => {
    expect(mustParse("02:00:5E:10:00:01")).toBe(0x02005e100001);
    expect(formatMac(0x02005e100001)).toBe("02:00:5e:10:00:01");
  });

  it.each(["", "02:00:5e:10:00", "02-00-5e-10-00-01", "02:00:5e:10:00:01:ff", "g2:00:5e:10:00:01", " 02:00:5e:10:00:01"])(
    "rejects %j with invalid-mac",
    (text) => {
      const result = parseMac(text);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.error.code).toBe("invalid-mac");
    },
  );

  it("classifies broadcast, multicast, locally administered and unicast", () => {
    expect(isBroadcastMac(BROADCAST_MAC)).toBe(true);
    expect(isMulticastMac(BROADCAST_MAC)).toBe(true);
    expect(isMulticastMac(mustParse("01:00:5e:00:00:fb"))).toBe(true);
    expect(isMulticastMac(mustParse("33:33:00:00:00:01"))).toBe(true);
    expect(isMulticastMac(mustParse("02:00:00:00:00:01"))).toBe(false);
    expect(isLocallyAdministeredMac(mustParse("02:00:00:00:00:01"))).toBe(true);
    expect(isLocallyAdministeredMac(mustParse("00:16:3e:00:00:01"))).toBe(false);
    expect(isUsableUnicastMac(0)).toBe(false);
    expect(isUsableUnicastMac(mustParse("00:16:3e:00:00:01"))).toBe(true);
  });

  it("reads and writes keys in place, round-tripping every 48-bit value", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), fc.nat(8), (octets, pad) => {
        const buffer = new Uint8Array(pad + 6);
        buffer.set(octets, pad);
        const key = macKeyAt(buffer, pad);
        const copy = new Uint8Array(pad + 6);
        writeMac(key, copy, pad);
        expect(copy.subarray(pad)).toEqual(octets);
        expect(mustParse(formatMac(key))).toBe(key);
      }),
    );
  });
});
