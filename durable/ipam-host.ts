import type { DhcpConfig } from "../datapath/ipam/config.ts";
import type { IpamService } from "../datapath/ipam/ipam-service.ts";
import { leaseReport, type LeaseReport } from "../datapath/ipam/lease-list.ts";
import { IPAM_STATE_KEY, ipamServiceFor, reconfigureIpam } from "../datapath/ipam/lifecycle.ts";
import type { SegmentSwitch } from "../datapath/segment-switch.ts";

/**
 * The segment's IPAM service (DHCP server, ARP proxy, DNS: docs/ipam.md) hosted as a port of its
 * switch: built from the stored `dhcp` setting and leases whenever the switch is (also after
 * hibernation), rebuilt when the setting changes, and its lease table stored whenever it changed.
 */

/** The service's port id: above every id the segment hands to sockets (those count up from 1). */
export const IPAM_PORT_ID = 0xffff_ff00;

/** Storage key of the service's counters (`GET …/leases`), so they go on counting after hibernation or a restart. */
const IPAM_COUNTERS_KEY = "ipam-counters";
/**
 * How long changed counters may wait for their storage write: one write per interval at most while the
 * service is busy (storage writes are billed). The pending timer keeps the object from hibernating first;
 * a crash loses at most this much counting.
 */
export const IPAM_COUNTERS_WRITE_DELAY_MS = 5_000;

export class IpamHost {
  private service: IpamService | null = null;
  private countersTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly switchOf: () => SegmentSwitch | null, private readonly kv: DurableObjectStorage["kv"]) {}

  /** (Re)builds the service for `config` (null or absent: off, and its leases are forgotten). */
  configure(config: DhcpConfig | null | undefined, nowMs: number): void {
    const segmentSwitch = this.switchOf();
    const next = this.service === null
      ? ipamServiceFor(config, this.kv.get(IPAM_STATE_KEY), nowMs)
      : reconfigureIpam(this.service, config, nowMs);
    // A reconfigured service counts on from the one it replaces; a woken one from what was stored.
    const counted = this.service?.counters ?? this.kv.get(IPAM_COUNTERS_KEY);
    segmentSwitch?.detach(IPAM_PORT_ID);
    this.service = next;
    if (next === null) {
      this.kv.delete(IPAM_STATE_KEY);
      this.kv.delete(IPAM_COUNTERS_KEY);
      return;
    }
    next.restoreCounters(counted);
    const added = segmentSwitch?.addService(IPAM_PORT_ID, next);
    // The service's MAC is derived from its address; a port already owning it keeps it and the service stays off the wire.
    if (added !== undefined && !added.ok) console.error(`edgelan: the IPAM service could not join its segment: ${added.error.message}`);
    this.persist();
  }

  /** Stores the lease table when it changed (after every message that reached the service), and the counters within the delay. */
  persist(): void {
    if (this.service?.takeDirty() === true) this.kv.put(IPAM_STATE_KEY, this.service.exportState());
    if (this.countersTimer === null && this.service?.takeCountersChanged() === true) {
      this.countersTimer = setTimeout(() => this.storeCounters(), IPAM_COUNTERS_WRITE_DELAY_MS);
    }
  }

  private storeCounters(): void {
    this.countersTimer = null;
    if (this.service === null) return;
    // Counting since the timer was set is in this write too.
    this.service.takeCountersChanged();
    this.kv.put(IPAM_COUNTERS_KEY, { ...this.service.counters });
  }

  /**
   * Ends the leases whose time is over now (the service does it by itself only when a frame reaches it)
   * and stores the table if that changed. The segment's alarm calls it on a segment of several cells,
   * where the other cells answer ARP from the service's bindings and so never wake it for a lease.
   */
  sweep(nowMs: number): void {
    this.service?.sweep(nowMs);
    this.persist();
  }

  /** When the next bound lease ends (ms), or undefined. */
  nextLeaseExpiry(): number | undefined {
    return this.service?.leases.nextBoundExpiry();
  }

  /** The leases, for `GET /v1/segments/:name/leases`; null when the service is off. */
  leases(nowMs: number): LeaseReport | null {
    return this.service === null ? null : leaseReport(this.service, nowMs);
  }

  /** The segment was deleted or its switch rebuilt: forget the service (configure() builds it again). */
  reset(): void {
    this.service = null;
    // A deleted segment's storage is gone: a pending write must not put a key back.
    if (this.countersTimer !== null) clearTimeout(this.countersTimer);
    this.countersTimer = null;
  }
}
