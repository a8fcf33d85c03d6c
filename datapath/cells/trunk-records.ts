/**
 * What one trunk call between two cells of a segment carries (docs/cells.md
 * §4.2), as plain data. Frames are data (lost with a failed call); control
 * records are numbered per direction from `controlFrom` and acknowledged by
 * `controlAck`.
 *
 * These objects pass as they are (a structured clone over DO RPC), but the
 * frames of a call travel packed in one byte array (trunk-frames.ts); the
 * packed form of §4.2 (record types 0x40–0x44 in the tunnel framing) for the
 * control records too is not built.
 */
import type { TrunkFilter } from "../bridge.ts";
import type { ArpBindings } from "../ipam/arp-proxy.ts";
import type { MacRoute } from "./mac-routes.ts";

/** Frame record flags (docs/cells.md §4.2 record 0x40). */
export const TrunkFrameFlag = {
  /** The frame was flooded at the origin (broadcast, multicast or unknown unicast). */
  Flooded: 0x01,
  /** Only the receiving cell's monitors take it (§5.9). */
  MirrorOnly: 0x02,
  /** A GSO super-frame with its 10-byte virtio-net header in front. */
  VnetHeader: 0x04,
} as const;

export interface TrunkFrame {
  /** The port the frame entered the segment on (at the origin cell). */
  ingress: number;
  flags: number;
  frame: Uint8Array;
}

export type TrunkControl =
  | { type: "mac-route"; route: MacRoute }
  | { type: "mac-withdraw"; route: MacRoute }
  | { type: "cell-filter"; filter: TrunkFilter }
  /** Forget every route from the sender; the records that follow are its complete table. */
  | { type: "routes-reset"; epoch: number }
  /** From the cell hosting the IPAM service: what its ARP proxy answers for (null: nothing), replacing any earlier set. */
  | { type: "arp-bindings"; bindings: ArpBindings | null }
  /** An arp-bindings record a later one replaced before the peer acknowledged it: keeps its number, carries nothing. */
  | { type: "superseded" };

export interface TrunkBatch {
  /** The segment's generation: a call from another generation (a deleted segment's cell) is refused whole. */
  generation: string;
  /** The sender's cell index. */
  from: number;
  /** The sender's epoch (it changes when the sender reset). */
  epoch: number;
  /** The number of the first control record. */
  controlFrom: number;
  control: TrunkControl[];
  /** The frames, packed (trunk-frames.ts): one byte array clones far cheaper than an object per frame. */
  frames: Uint8Array;
  /** How many frames `frames` holds. */
  frameCount: number;
}

export interface TrunkReply {
  /** The receiver's epoch: a change tells the sender the receiver reset. */
  epoch: number;
  /** Every control record below this number was applied. */
  controlAck: number;
  /** Bytes of frames the sender may put in its next call. */
  grantBytes: number;
}
