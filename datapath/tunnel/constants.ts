/**
 * Wire constants of tunnel protocol v1 (docs/protocol.md is the specification).
 * Every number that appears on the wire or bounds a message lives here, so the
 * codec, the rings, the Durable Object and the clients agree by construction.
 */

import { MAX_CONFIGURABLE_FRAME_SIZE, MIN_CONFIGURABLE_FRAME_SIZE } from "../ethernet.ts";

/** WebSocket subprotocol that selects descriptor mode; no subprotocol selects raw mode. */
export const SUBPROTOCOL_V1 = "edgelan.v1";

/** Message magic: the ASCII bytes "EL" (0x45 0x4c), read as a little-endian u16. */
export const MESSAGE_MAGIC = 0x4c45;
/** Framing version carried in every message header; a HELLO is always framed with it. */
export const FRAMING_VERSION = 1;
/** Lowest protocol version this implementation speaks (HELLO offers a range, WELCOME picks one). */
export const PROTOCOL_VERSION_MIN = 1;
/** Highest protocol version this implementation speaks. */
export const PROTOCOL_VERSION_MAX = 1;

/** Bytes in the message header: magic u16, version u8, flags u8, record count u16, reserved u16. */
export const MESSAGE_HEADER_BYTES = 8;
/** Bytes in every record header: type u8, flags u8, body length u32. */
export const RECORD_HEADER_BYTES = 6;
/** Largest WebSocket message either side may send (Cloudflare's per-message limit). */
export const MAX_MESSAGE_BYTES = 1_048_576;
/** Most records one message may carry. */
export const MAX_RECORDS_PER_MESSAGE = 4096;
/** Largest Ethernet frame (no FCS) the protocol can carry: the largest a segment can be configured for; it may grant less. */
export const MAX_FRAME_BYTES = MAX_CONFIGURABLE_FRAME_SIZE;
/** Smallest RX buffer a client may post: the minimum Ethernet frame without FCS. */
export const MIN_RX_BUFFER_BYTES = MIN_CONFIGURABLE_FRAME_SIZE;
/** Most RX credits a port may have outstanding (posted and not yet filled). */
export const MAX_RX_CREDITS = 65_536;
/** Largest TX window a segment grants; ids are u16 and a window must be a power of two dividing 2^16. */
export const MAX_TX_WINDOW = 32_768;
/** Number of distinct TX ids: ids are u16 and wrap. */
export const TX_ID_SPACE = 65_536;
/** Most MACs a HELLO, WELCOME or port may carry. */
export const MAX_MACS_PER_PORT = 16;
/** Most multicast addresses in one set-filter record. */
export const MAX_FILTER_MACS = 64;
/** Longest resume token, in bytes. */
export const MAX_RESUME_TOKEN_BYTES = 64;
/** Length of a session id, in bytes. */
export const SESSION_ID_BYTES = 16;
/** Longest string (client name, reasons) in UTF-8 bytes: strings carry a u8 length. */
export const MAX_STRING_BYTES = 255;
/** Most drop counters a stats-reply carries (indexed by DropReason code). */
export const MAX_STATS_DROPS = 64;

/** Text message a client may send as a keepalive; answered by the runtime without waking a hibernated segment. */
export const KEEPALIVE_REQUEST = "ping";
/** The runtime's automatic answer to KEEPALIVE_REQUEST. */
export const KEEPALIVE_RESPONSE = "pong";

/** Record type codes (u8 at offset 0 of every record header). */
export const RecordType = {
  Hello: 0x01,
  Welcome: 0x02,
  Refuse: 0x03,
  Bye: 0x04,
  Tx: 0x10,
  TxComplete: 0x11,
  RxPost: 0x12,
  Rx: 0x13,
  SetFilter: 0x20,
  AddMac: 0x21,
  RemoveMac: 0x22,
  Ack: 0x23,
  StatsRequest: 0x24,
  StatsReply: 0x25,
  Ping: 0x26,
  Pong: 0x27,
  Link: 0x28,
} as const;

/** A record type code. */
export type RecordTypeCode = (typeof RecordType)[keyof typeof RecordType];

/** Feature bits (u32) offered in HELLO and granted in WELCOME; unknown bits are ignored and never granted. */
export const Feature = {
  /** The segment may answer several TX ids with one tx-complete run (count > 1). */
  CoalescedCompletions: 1 << 0,
  /** The segment queues frames for the port while it has no RX credit (granted RX queue > 0). */
  RxQueue: 1 << 1,
  /** stats-request / stats-reply are available. */
  Stats: 1 << 2,
  /** The segment sends link records (up/down notices). */
  LinkNotices: 1 << 3,
  /** 802.1Q-tagged frames are accepted and delivered (4 more bytes per frame). */
  Vlan: 1 << 4,
  /** Frames larger than 1514 bytes (jumbo or GSO) up to the granted max frame size. */
  LargeFrames: 1 << 5,
  /** The WELCOME carries a resume token; a later HELLO may resume the session. */
  Resume: 1 << 6,
  /** TX and RX frames may carry a 10-byte virtio-net header (partial checksum, GSO super-frames); see TxFlag/RxFlag.VnetHeader. */
  Gso: 1 << 7,
  /**
   * Completions ride on the next message the segment sends the port, instead of a message of their own
   * (docs/protocol.md §6.3 rule 2a): a ping then costs 4 messages instead of 6. No timer is involved.
   */
  LazyCompletions: 1 << 8,
  /**
   * A TX switched to a port on another cell of the segment completes when the trunk call carrying it
   * returned: ok, or cell-unreachable when it failed (docs/protocol.md §6.3 rule 8). Such completions
   * may come after later ones.
   */
  CellCompletions: 1 << 9,
} as const;

/** Every feature bit this implementation knows. */
export const KNOWN_FEATURES = Object.values(Feature).reduce((all, bit) => all | bit, 0) >>> 0;

/** TX record flag bits valid without any feature: none, so a segment completes a TX with unknown flag bits as Malformed. */
export const TX_FLAGS_KNOWN = 0x00;

/** TX record flag bits (each needs its feature; without it the TX completes as Malformed). */
export const TxFlag = {
  /** Needs Gso: the body's frame is a 10-byte virtio-net header followed by the frame (up to 65,535 bytes). */
  VnetHeader: 0x01,
} as const;

/** Bytes of the virtio-net header a VnetHeader-flagged TX or RX frame starts with. */
export const VNET_HEADER_BYTES = 10;

/** RX record flag bits: why the frame reached this port. */
export const RxFlag = {
  /** Delivered by flooding (broadcast, multicast or unknown unicast), not as known unicast. */
  Flooded: 0x01,
  /** A copy for a monitor port; the frame was not addressed to it. */
  Mirrored: 0x02,
  /** Only with Gso: the frame is preceded by a 10-byte virtio-net header (as TxFlag.VnetHeader). */
  VnetHeader: 0x04,
} as const;

/** Port kinds a HELLO may ask for; the u8 code on the wire is the index. */
export { PORT_KINDS, type PortKind } from "../port-kind.ts";

/** Status of an ack record (control request result); 0 is success. */
export const AckStatus = {
  Ok: 0,
  /** The MAC is not a usable address for this request (zero, multicast where unicast is needed, …). */
  InvalidMac: 1,
  /** Another port already owns the MAC. */
  MacTaken: 2,
  /** The port already has MAX_MACS_PER_PORT addresses (or the filter list is too long). */
  TooManyMacs: 3,
  /** remove-mac named a MAC the port does not own. */
  UnknownMac: 4,
  /** Segment policy forbids the request (e.g. promiscuous mode). */
  Policy: 5,
  /** The port kind cannot do this (e.g. add-mac on a monitor port). */
  NotPermitted: 6,
  /** The feature the request needs was not granted. */
  NotNegotiated: 7,
} as const;

/** An ack status code. */
export type AckStatus = (typeof AckStatus)[keyof typeof AckStatus];
