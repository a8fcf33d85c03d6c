// Frames for datapath tests, written as hex so the wire format is visible in the test itself.
import { parseMac } from "../../datapath/mac.ts";

/** Bytes from a hex string; spaces, newlines and `|` separators are ignored. */
export function hex(text: string): Uint8Array {
  const digits = text.replace(/[\s|]/g, "");
  if (digits.length % 2 !== 0 || /[^0-9a-fA-F]/.test(digits)) throw new Error(`bad hex: ${text}`);
  const bytes = new Uint8Array(digits.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/** A frame from a hex header, zero-padded to `length` bytes (60 = minimum Ethernet frame without FCS). */
export function frame(header: string, length = 60): Uint8Array {
  const head = hex(header);
  const bytes = new Uint8Array(Math.max(length, head.length));
  bytes.set(head);
  return bytes;
}

/** A MAC key from `aa:bb:cc:dd:ee:ff`, throwing on bad input (tests only). */
export function mac(text: string): number {
  const result = parseMac(text);
  if (!result.ok) throw new Error(result.error.message);
  return result.value;
}
