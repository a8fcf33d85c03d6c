import { readU16BE } from "./bytes.ts";
import { macKeyAt, type MacKey } from "./mac.ts";
import { fail, ok, type Result } from "./result.ts";

/*
 * Ethernet II and 802.1Q wire layout. Offsets are named once here; everything
 * else reads fields through them, so the wire format lives in one block.
 *
 *   0      6      12        14        16            18
 *   | dst  | src  | type    | payload ...
 *   | dst  | src  | 0x8100  | TCI     | inner type  | payload ...
 */
export const ETH_DESTINATION = 0;
export const ETH_SOURCE = 6;
export const ETH_TYPE = 12;
export const ETH_HEADER_LEN = 14;
/** Tag Control Information: PCP (3 bits) | DEI (1 bit) | VID (12 bits). */
export const VLAN_TCI = 14;
export const VLAN_INNER_TYPE = 16;
export const VLAN_HEADER_LEN = 18;
export const VLAN_TAG_LEN = 4;
export const TPID_8021Q = 0x8100;

/** The usual maximum without FCS: 1500 bytes of payload plus the 14-byte header. */
export const DEFAULT_MAX_FRAME_SIZE = 1514;
/** Jumbo and GSO frames may be configured up to the largest size a 16-bit length can describe. */
export const MAX_CONFIGURABLE_FRAME_SIZE = 65535;
/** The smallest maximum a segment may configure: a minimum-size Ethernet frame without FCS. */
export const MIN_CONFIGURABLE_FRAME_SIZE = 60;

export type EthernetError = "runt" | "truncated-tag";

/**
 * A read-only view over one Ethernet frame (smoltcp's `Frame<T>`): nothing is
 * parsed into objects, accessors read bytes in place. Build it with
 * `checkEthernetFrame` (validates once) or `EthernetFrame.unchecked` when the
 * caller already validated the length.
 */
export class EthernetFrame {
  private constructor(readonly bytes: Uint8Array) {}

  /** Wraps bytes without checks; the caller guarantees ≥ 14 bytes (≥ 18 if tagged). */
  static unchecked(bytes: Uint8Array): EthernetFrame {
    return new EthernetFrame(bytes);
  }

  /** Destination MAC as a 48-bit key. */
  destination(): MacKey {
    return macKeyAt(this.bytes, ETH_DESTINATION);
  }

  /** Source MAC as a 48-bit key. */
  source(): MacKey {
    return macKeyAt(this.bytes, ETH_SOURCE);
  }

  /** The outer EtherType (0x8100 for a tagged frame). */
  etherType(): number {
    return frameEtherType(this.bytes);
  }

  /** True if the frame carries an 802.1Q tag. */
  isTagged(): boolean {
    return frameIsTagged(this.bytes);
  }

  /** Priority code point (0..7); 0 for untagged frames. */
  pcp(): number {
    return this.isTagged() ? (this.bytes[VLAN_TCI] as number) >> 5 : 0;
  }

  /** Drop-eligible indicator; false for untagged frames. */
  dei(): boolean {
    return this.isTagged() && ((this.bytes[VLAN_TCI] as number) & 0x10) !== 0;
  }

  /** VLAN id (0..4095); 0 for untagged frames (same as a priority-only tag). */
  vid(): number {
    return frameVlanId(this.bytes);
  }

  /** The EtherType of the payload: the inner type of a tagged frame, else the outer type. */
  payloadEtherType(): number {
    return this.isTagged() ? readU16BE(this.bytes, VLAN_INNER_TYPE) : this.etherType();
  }

  /** Bytes after the header (and tag, if any). A view, not a copy. */
  payload(): Uint8Array {
    return this.bytes.subarray(frameHeaderLength(this.bytes));
  }
}

/** Validates a frame's length for its header: `runt` below 14 bytes, `truncated-tag` for a tagged frame below 18. */
export function checkEthernetFrame(bytes: Uint8Array): Result<EthernetFrame, EthernetError> {
  if (bytes.length < ETH_HEADER_LEN) {
    return fail("runt", `frame of ${bytes.length} bytes is shorter than the ${ETH_HEADER_LEN}-byte Ethernet header`);
  }
  if (frameIsTagged(bytes) && bytes.length < VLAN_HEADER_LEN) {
    return fail("truncated-tag", `802.1Q-tagged frame of ${bytes.length} bytes is shorter than the ${VLAN_HEADER_LEN}-byte tagged header`);
  }
  return ok(EthernetFrame.unchecked(bytes));
}

/** Largest frame allowed for a segment maximum `untaggedMax` (default 1514); a tagged frame may be 4 bytes longer. */
export function maxFrameSizeFor(untaggedMax: number = DEFAULT_MAX_FRAME_SIZE, tagged = false): number {
  return tagged ? untaggedMax + VLAN_TAG_LEN : untaggedMax;
}

// Plain functions for the hot path: no view object per frame. Each assumes the
// length was checked (≥ 14, and ≥ 18 before reading tag fields).

/** Destination MAC key of a checked frame. */
export function frameDestination(bytes: Uint8Array): MacKey {
  return macKeyAt(bytes, ETH_DESTINATION);
}

/** Source MAC key of a checked frame. */
export function frameSource(bytes: Uint8Array): MacKey {
  return macKeyAt(bytes, ETH_SOURCE);
}

/** Outer EtherType of a checked frame. */
export function frameEtherType(bytes: Uint8Array): number {
  return readU16BE(bytes, ETH_TYPE);
}

/** True if the outer EtherType is the 802.1Q TPID. */
export function frameIsTagged(bytes: Uint8Array): boolean {
  return bytes[ETH_TYPE] === TPID_8021Q >> 8 && bytes[ETH_TYPE + 1] === (TPID_8021Q & 0xff);
}

/** VLAN id of a checked frame, 0 when untagged. */
export function frameVlanId(bytes: Uint8Array): number {
  if (!frameIsTagged(bytes)) return 0;
  return (((bytes[VLAN_TCI] as number) & 0x0f) << 8) | (bytes[VLAN_TCI + 1] as number);
}

/** Header length: 18 for a tagged frame, else 14. */
export function frameHeaderLength(bytes: Uint8Array): number {
  return frameIsTagged(bytes) ? VLAN_HEADER_LEN : ETH_HEADER_LEN;
}

