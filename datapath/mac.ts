import { fail, ok, type Result } from "./result.ts";

/**
 * A MAC address as a 48-bit integer (first octet most significant). It fits a
 * double exactly, so it is a cheap Map key in the hot path and needs no allocation.
 */
export type MacKey = number;

export const BROADCAST_MAC: MacKey = 0xffff_ffff_ffff;
const MAC_TEXT = /^([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})$/;
const TWO_POW_40 = 2 ** 40;
const TWO_POW_32 = 2 ** 32;

/** Parses exactly `aa:bb:cc:dd:ee:ff` (hex, either case); anything else is an `invalid-mac` failure. */
export function parseMac(text: string): Result<MacKey, "invalid-mac"> {
  const match = MAC_TEXT.exec(text);
  if (match === null) {
    return fail("invalid-mac", `invalid MAC address ${JSON.stringify(text)}: expected six hex octets like aa:bb:cc:dd:ee:ff`);
  }
  let key = 0;
  for (let i = 1; i <= 6; i++) key = key * 256 + parseInt(match[i] as string, 16);
  return ok(key);
}

/** Formats a MAC key as lower-case `aa:bb:cc:dd:ee:ff`. */
export function formatMac(key: MacKey): string {
  const octets: string[] = [];
  for (let shift = 5; shift >= 0; shift--) {
    octets.push(octetOf(key, shift).toString(16).padStart(2, "0"));
  }
  return octets.join(":");
}

/** Reads the 6 bytes at `offset` as a MAC key; the caller has checked the bounds. */
export function macKeyAt(bytes: Uint8Array, offset: number): MacKey {
  const high = ((bytes[offset] as number) << 8) | (bytes[offset + 1] as number);
  const low =
    (((bytes[offset + 2] as number) << 24) >>> 0) +
    (((bytes[offset + 3] as number) << 16) | ((bytes[offset + 4] as number) << 8) | (bytes[offset + 5] as number));
  return high * TWO_POW_32 + low;
}

/** Writes a MAC key as 6 bytes at `offset`. */
export function writeMac(key: MacKey, bytes: Uint8Array, offset: number): void {
  for (let i = 0; i < 6; i++) bytes[offset + i] = octetOf(key, 5 - i);
}

/** The octet `shift` places from the right (0 = last octet). */
function octetOf(key: MacKey, shift: number): number {
  return Math.floor(key / 2 ** (8 * shift)) % 256;
}

/** The group bit (I/G, lowest bit of the first octet): multicast, broadcast included. */
export function isMulticastMac(key: MacKey): boolean {
  return Math.floor(key / TWO_POW_40) % 2 === 1;
}

export function isBroadcastMac(key: MacKey): boolean {
  return key === BROADCAST_MAC;
}

/** A unicast address that is not all zeros: the only kind a port may register or send from. */
export function isUsableUnicastMac(key: MacKey): boolean {
  return key !== 0 && !isMulticastMac(key);
}

/** The U/L bit (second-lowest bit of the first octet). */
export function isLocallyAdministeredMac(key: MacKey): boolean {
  return Math.floor(key / TWO_POW_40) % 4 >= 2;
}

/** A random locally administered unicast MAC (02:xx:… style), for a member that asked for none. */
export function randomLocalMac(): MacKey {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  bytes[0] = ((bytes[0] as number) & 0xfc) | 0x02;
  return bytes.reduce((key, byte) => key * 256 + byte, 0);
}
