/**
 * The contract between the segment switch and a service that lives inside the segment as a port
 * (the DHCP server, ARP proxy and DNS of the IPAM service; later capture or trunks).
 *
 * A service is a port of the switch like any other (ARCHITECTURE.md: "services are ports, never
 * special cases"): frames it emits pass the same ingress checks as a member port's (its MACs are
 * registered on its port), frames switched to it are counted on its port counters, and it obeys
 * the same limits. It has no socket: the switch calls it synchronously and it answers by emitting
 * frames, which the switch switches as if the service port had sent them — after the batch that
 * caused them, never re-entrantly, and bounded by `MAX_SERVICE_FRAMES_PER_CALL`.
 */

import type { ArpBindings } from "./ipam/arp-proxy.ts";

/** Hands a frame the service wants to send to the switch; the switch copies it before returning. */
export type EmitFrame = (frame: Uint8Array) => void;

/** Most frames one call into a service may emit; more are dropped and counted by the switch. */
export const MAX_SERVICE_FRAMES_PER_CALL = 16;

export interface ServicePort {
  /** Short name for counters and the admin API ("ipam"). */
  readonly name: string;
  /** MACs the service sends from, as 6-byte addresses; registered on its port like a member's. */
  readonly macs: readonly Uint8Array[];
  /**
   * A frame the switch delivered to this port: unicast to one of its MACs, or flooded
   * (broadcast, or a multicast its filter accepts). `nowMs` is the segment's clock.
   */
  deliver(frame: Uint8Array, nowMs: number, emit: EmitFrame): void;
  /**
   * Offered a broadcast frame from another port before the switch floods it. Returning true means
   * the service answered it on behalf of its owner (ARP proxy): the switch then does not flood the
   * frame, completes the sender's TX as ok, and counts it as suppressed. Returning false floods it
   * as usual. Optional: a service without it never suppresses.
   */
  intercept?(frame: Uint8Array, ingressPortId: number, nowMs: number, emit: EmitFrame): boolean;
  /**
   * What the service's ARP proxy answers for, so that the other cells of a segment can answer too
   * (docs/cells.md §0 item 12); `arpBindingsVersion` changes whenever the result may have. Optional.
   */
  readonly arpBindingsVersion?: number;
  arpBindings?(): ArpBindings | null;
}
