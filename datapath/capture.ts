/**
 * What an edgelan capture writes: a pcapng section with one Ethernet
 * interface (the segment), one enhanced packet block per mirrored frame
 * with its ingress port and RX flags in the comment, and an interface
 * statistics block at the end with what the monitor port received, dropped
 * and the filter kept. Also the capture filter (--port/--mac/--vlan).
 */
import { frameDestination, frameIsTagged, frameSource, frameVlanId, ETH_HEADER_LEN } from "./ethernet.ts";
import { formatMac, isBroadcastMac, isMulticastMac, type MacKey } from "./mac.ts";
import {
  enhancedPacketBlock, interfaceDescriptionBlock, interfaceStatisticsBlock, LINKTYPE_ETHERNET, packetFlags, sectionHeaderBlock,
  type ReceptionType,
} from "./pcapng.ts";
import { MAX_FRAME_BYTES, RxFlag } from "./tunnel/constants.ts";

/** A frame as the capture writes it. */
export interface CaptureRecord {
  frame: Uint8Array;
  /** RX flags of the record that carried it (Flooded, Mirrored). */
  rxFlags: number;
  /** Microseconds since 1970. */
  timestampUs: number;
  /** The port the frame entered the segment at, or null when not known. */
  ingressPort: number | null;
  /** For known unicast, the port the destination MAC is behind; null otherwise. */
  egressPort: number | null;
}

/** Keeps frames matching every given field. */
export interface CaptureFilter {
  /** Frames that entered at this port or are addressed (known unicast) to it. */
  port?: number;
  /** Frames from or to this MAC. */
  mac?: MacKey;
  /** Frames with an 802.1Q tag of this VLAN id. */
  vlan?: number;
}

/** What the monitor port saw over the whole capture, for the closing statistics block. */
export interface CaptureTotals {
  startUs: number;
  endUs: number;
  /** Frames the monitor port received. */
  received: number;
  /** Frames the segment dropped on the way to the monitor port (queue full, budget…), or undefined when unknown. */
  dropped: number | undefined;
  /** Frames the filter kept (= written). */
  written: number;
  /** Free text, e.g. why the capture ended. */
  comment?: string;
}

/** Whether a frame passes the filter. Frames shorter than an Ethernet header pass only an empty filter. */
export function matchesCaptureFilter(record: CaptureRecord, filter: CaptureFilter): boolean {
  const { frame } = record;
  if (filter.port === undefined && filter.mac === undefined && filter.vlan === undefined) return true;
  if (frame.length < ETH_HEADER_LEN) return false;
  if (filter.port !== undefined && record.ingressPort !== filter.port && record.egressPort !== filter.port) return false;
  if (filter.mac !== undefined && frameSource(frame) !== filter.mac && frameDestination(frame) !== filter.mac) return false;
  if (filter.vlan !== undefined && !(frameIsTagged(frame) && frameVlanId(frame) === filter.vlan)) return false;
  return true;
}

/** The file's first blocks: a section header and the one interface (the segment), microsecond timestamps. */
export function captureHeader(segment: string, relay: string, application: string): Uint8Array {
  const section = sectionHeaderBlock({ userApplication: application, comment: `edgelan segment ${segment} at ${relay}` });
  const segmentInterface = interfaceDescriptionBlock({
    linkType: LINKTYPE_ETHERNET, snapLength: MAX_FRAME_BYTES, resolution: "us",
    name: `edgelan:${segment}`, description: `edgelan segment ${segment} (monitor port at ${relay})`,
  });
  return concatBytes(section, segmentInterface);
}

/** One enhanced packet block for a frame. */
export function capturePacket(record: CaptureRecord): Uint8Array {
  return enhancedPacketBlock({
    interfaceId: 0, timestamp: record.timestampUs, data: record.frame,
    flags: packetFlags("inbound", receptionOf(record.frame)),
    comment: describeCaptureRecord(record),
  });
}

/** The closing interface statistics block. */
export function captureTrailer(totals: CaptureTotals): Uint8Array {
  return interfaceStatisticsBlock({
    interfaceId: 0, timestamp: totals.endUs, startTime: totals.startUs, endTime: totals.endUs,
    received: totals.received, dropped: totals.dropped, filterAccepted: totals.written, delivered: totals.written,
    comment: totals.comment,
  });
}

/** The packet comment: `ingress port 3`, then the RX flags, e.g. `ingress port 3, flooded, mirrored`. */
export function describeCaptureRecord(record: CaptureRecord): string {
  const parts = [record.ingressPort === null ? "ingress port unknown" : `ingress port ${record.ingressPort}`];
  if ((record.rxFlags & RxFlag.Flooded) !== 0) parts.push("flooded");
  if ((record.rxFlags & RxFlag.Mirrored) !== 0) parts.push("mirrored");
  return parts.join(", ");
}

/** A one-line summary of a filter for logs (`port 3, mac 02:…, vlan 10`), or "none". */
export function describeCaptureFilter(filter: CaptureFilter): string {
  const parts: string[] = [];
  if (filter.port !== undefined) parts.push(`port ${filter.port}`);
  if (filter.mac !== undefined) parts.push(`mac ${formatMac(filter.mac)}`);
  if (filter.vlan !== undefined) parts.push(`vlan ${filter.vlan}`);
  return parts.length === 0 ? "none" : parts.join(", ");
}

function receptionOf(frame: Uint8Array): ReceptionType | undefined {
  if (frame.length < ETH_HEADER_LEN) return undefined;
  const destination = frameDestination(frame);
  if (isBroadcastMac(destination)) return "broadcast";
  return isMulticastMac(destination) ? "multicast" : "unicast";
}

/** The bytes of several arrays, one after the other. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
