/**
 * WebSocket close codes of tunnel protocol v1 (4000–4999, the range RFC 6455
 * leaves to applications). A close always carries one of these (or 1000 after
 * a normal BYE) with a short reason, so a client can tell "fix your code" from
 * "back off and resume" without parsing text.
 */
import type { DecodeErrorCode } from "./records.ts";

/** Close codes by name; the value is what goes into the WebSocket close frame. */
export const CloseCode = {
  /** Normal closure after a BYE (RFC 6455's own code). */
  Normal: 1000,
  /** A message could not be decoded (bad magic, bad length, bad field, text frame, …). */
  Malformed: 4000,
  /** The message framing version or the HELLO's version range is not supported. */
  UnsupportedVersion: 4001,
  /** The first message was not a HELLO, or no HELLO arrived in time. */
  HandshakeTimeout: 4002,
  /** The client had more TX descriptors outstanding than its granted window. */
  WindowOverrun: 4003,
  /** A message exceeded MAX_MESSAGE_BYTES. */
  MessageTooLarge: 4004,
  /** A message carried more than MAX_RECORDS_PER_MESSAGE records. */
  TooManyRecords: 4005,
  /** A record arrived that is not allowed now or in this direction (HELLO twice, TX before WELCOME, …). */
  UnexpectedRecord: 4006,
  /** An rx-post would exceed MAX_RX_CREDITS outstanding, or named a buffer below MIN_RX_BUFFER_BYTES. */
  RxPostInvalid: 4007,
  /** The segment refused the HELLO by policy (port kind, feature, auth scope, …). */
  Policy: 4008,
  /** A requested MAC is owned by another port. */
  MacTaken: 4009,
  /** The segment was deleted; do not reconnect. */
  SegmentDeleted: 4010,
  /** A newer connection resumed this session; this socket is obsolete. */
  Replaced: 4011,
  /** The segment is restarting (deploy, reset); reconnect with backoff and resume. */
  SegmentRestarting: 4012,
  /** A requested MAC is not a usable unicast address. */
  InvalidMac: 4013,
  /** The segment has no room for another port. */
  SegmentFull: 4014,
  /** The client sent messages faster than the segment allows. */
  RateLimited: 4029,
  /** Nothing arrived (not even a keepalive) for the segment's idle timeout. */
  IdleTimeout: 4030,
} as const;

/** One of the close codes above. */
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** What each close code means and whether a client should reconnect (and resume) after it. */
export const CLOSE_CODE_INFO: Readonly<Record<CloseCode, { readonly name: string; readonly reconnect: boolean; readonly meaning: string }>> = {
  1000: { name: "normal", reconnect: false, meaning: "normal closure after BYE" },
  4000: { name: "malformed", reconnect: false, meaning: "a message could not be decoded" },
  4001: { name: "unsupported-version", reconnect: false, meaning: "no common protocol version" },
  4002: { name: "handshake-timeout", reconnect: true, meaning: "no HELLO as the first message, or not in time" },
  4003: { name: "window-overrun", reconnect: false, meaning: "more TX outstanding than the granted window" },
  4004: { name: "message-too-large", reconnect: false, meaning: "message larger than 1 MiB" },
  4005: { name: "too-many-records", reconnect: false, meaning: "more than 4096 records in a message" },
  4006: { name: "unexpected-record", reconnect: false, meaning: "record not allowed in this state or direction" },
  4007: { name: "rx-post-invalid", reconnect: false, meaning: "too many RX credits or a buffer too small" },
  4008: { name: "policy", reconnect: false, meaning: "refused by segment policy" },
  4009: { name: "mac-taken", reconnect: false, meaning: "a requested MAC belongs to another port" },
  4010: { name: "segment-deleted", reconnect: false, meaning: "the segment no longer exists" },
  4011: { name: "replaced", reconnect: false, meaning: "the session was resumed on another connection" },
  4012: { name: "segment-restarting", reconnect: true, meaning: "the segment is restarting; resume" },
  4013: { name: "invalid-mac", reconnect: false, meaning: "a requested MAC is not usable unicast" },
  4014: { name: "segment-full", reconnect: true, meaning: "no room for another port" },
  4029: { name: "rate-limited", reconnect: true, meaning: "too many messages; back off" },
  4030: { name: "idle-timeout", reconnect: true, meaning: "nothing received for the idle timeout" },
};

/** The close code a segment uses for a message that failed to decode with `code`. */
export function closeCodeForDecodeError(code: DecodeErrorCode): CloseCode {
  switch (code) {
    case "message-too-large":
      return CloseCode.MessageTooLarge;
    case "too-many-records":
      return CloseCode.TooManyRecords;
    case "unsupported-version":
      return CloseCode.UnsupportedVersion;
    default:
      return CloseCode.Malformed;
  }
}

/** True for a code this protocol defines (1000 or one of the 4xxx codes above). */
export function isKnownCloseCode(code: number): code is CloseCode {
  return Object.prototype.hasOwnProperty.call(CLOSE_CODE_INFO, code);
}
