/**
 * The records a tunnel message carries, as plain data. Frame, session id and
 * token fields of decoded records are zero-copy views into the received
 * message: copy them if you keep them past the message's lifetime.
 */
import type { PortCountersData } from "../counters.ts";
import type { MacKey } from "../mac.ts";
import type { PortKind } from "./constants.ts";

/** Resume credentials from an earlier WELCOME. */
export interface ResumeCredentials {
  /** SESSION_ID_BYTES bytes. */
  sessionId: Uint8Array;
  /** 0..MAX_RESUME_TOKEN_BYTES bytes. */
  token: Uint8Array;
}

/** Client → segment, first record of the first message. */
export interface HelloRecord {
  type: "hello";
  minVersion: number;
  maxVersion: number;
  features: number;
  portKind: PortKind;
  /** Unicast MACs the client wants to own (0..MAX_MACS_PER_PORT); none asks the segment to assign one. */
  macs: MacKey[];
  /** Wanted TX window (1..MAX_TX_WINDOW). */
  txWindow: number;
  /** Wanted RX queue: frames the segment keeps for the port while it has no credit. */
  rxQueue: number;
  clientName: string;
  clientVersion: string;
  resume?: ResumeCredentials;
}

/** Segment → client: the handshake succeeded. */
export interface WelcomeRecord {
  type: "welcome";
  version: number;
  features: number;
  portId: number;
  maxFrameSize: number;
  /** Granted TX window: a power of two, 1..MAX_TX_WINDOW. */
  txWindow: number;
  rxQueue: number;
  /** SESSION_ID_BYTES bytes. */
  sessionId: Uint8Array;
  /** 0..MAX_RESUME_TOKEN_BYTES bytes; empty when Resume was not granted. */
  resumeToken: Uint8Array;
  macs: MacKey[];
}

/** Segment → client: the handshake failed; the segment closes with `code` next. */
export interface RefuseRecord { type: "refuse"; code: number; reason: string }
/** Either direction: the sender will close with `code` (1000 for a normal goodbye). */
export interface ByeRecord { type: "bye"; code: number; reason: string }

/** Client → segment: transmit one frame; `id` (u16) is answered by exactly one completion. */
export interface TxRecord { type: "tx"; id: number; flags: number; frame: Uint8Array }
/** Segment → client: ids firstId … firstId+count-1 (mod 2^16) completed with `status` (0 ok, else a DropReason). */
export interface TxCompleteRecord { type: "tx-complete"; firstId: number; count: number; status: number }
/** Client → segment: `count` more RX buffers of `bufferSize` bytes; the size applies to every outstanding credit. */
export interface RxPostRecord { type: "rx-post"; count: number; bufferSize: number }
/** Segment → client: one frame, filling one posted buffer; used length = frame length. */
export interface RxRecord { type: "rx"; flags: number; frame: Uint8Array }

/** Client → segment: replace the port's receive filter. */
export interface SetFilterRecord { type: "set-filter"; seq: number; promiscuous: boolean; allMulticast: boolean; multicast: MacKey[] }
/** Client → segment: own one more unicast MAC. */
export interface AddMacRecord { type: "add-mac"; seq: number; mac: MacKey }
/** Client → segment: give up one MAC. */
export interface RemoveMacRecord { type: "remove-mac"; seq: number; mac: MacKey }
/** Segment → client: result of the control request with the same `seq` (status 0 = ok, else an AckStatus). */
export interface AckRecord { type: "ack"; seq: number; status: number; reason: string }
/** Client → segment: ask for the port's counters. */
export interface StatsRequestRecord { type: "stats-request"; seq: number }
/** Segment → client: the port's counters (segment's view: rx = from the guest, tx = to the guest). */
export interface StatsReplyRecord {
  type: "stats-reply";
  seq: number;
  /** rx/tx frames and bytes, and drops indexed by DropReason code (index 0 unused). */
  counters: PortCountersData;
  /** RX credits posted and not yet filled. */
  creditsAvailable: number;
  /** Frames (and their bytes) waiting in the port's RX queue for credit. */
  queuedFrames: number;
  queuedBytes: number;
}
/** Either direction: answered by a pong echoing `seq` and `timestamp` (ms, sender's clock). */
export interface PingRecord { type: "ping"; seq: number; timestamp: number }
/** Answer to a ping, echoing its seq and timestamp. */
export interface PongRecord { type: "pong"; seq: number; timestamp: number }
/** Segment → client: the port's link went up or down. */
export interface LinkRecord { type: "link"; up: boolean; reason: string }

/** Every record of protocol v1. */
export type TunnelRecord =
  | HelloRecord | WelcomeRecord | RefuseRecord | ByeRecord
  | TxRecord | TxCompleteRecord | RxPostRecord | RxRecord
  | SetFilterRecord | AddMacRecord | RemoveMacRecord | AckRecord
  | StatsRequestRecord | StatsReplyRecord | PingRecord | PongRecord | LinkRecord;

/** The `type` string of a record. */
export type TunnelRecordType = TunnelRecord["type"];

/** Every way a message can fail to decode; the failure's message names the record index and byte offset. */
export const DECODE_ERROR_CODES = [
  "truncated-header",
  "bad-magic",
  "unsupported-version",
  "reserved-nonzero",
  "message-too-large",
  "too-many-records",
  "truncated-record",
  "record-length-past-end",
  "record-count-mismatch",
  "unknown-record-type",
  "bad-record-length",
  "oversize-frame",
  "invalid-utf8",
  "too-many-macs",
  "token-too-long",
  "invalid-port-kind",
  "invalid-boolean",
  "zero-count",
  "counter-out-of-range",
] as const;

/** One decode error code. */
export type DecodeErrorCode = (typeof DECODE_ERROR_CODES)[number];

/** Why a record cannot be encoded (a caller bug: a field out of its wire range). */
export type EncodeErrorCode = "field-out-of-range" | "string-too-long" | "too-many-macs" | "oversize-frame" | "message-full";
