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

export class IpamHost {
  private service: IpamService | null = null;

  constructor(private readonly switchOf: () => SegmentSwitch | null, private readonly kv: DurableObjectStorage["kv"]) {}

  /** (Re)builds the service for `config` (null or absent: off, and its leases are forgotten). */
  configure(config: DhcpConfig | null | undefined, nowMs: number): void {
    const segmentSwitch = this.switchOf();
    const next = this.service === null
      ? ipamServiceFor(config, this.kv.get(IPAM_STATE_KEY), nowMs)
      : reconfigureIpam(this.service, config, nowMs);
    segmentSwitch?.detach(IPAM_PORT_ID);
    this.service = next;
    if (next === null) {
      this.kv.delete(IPAM_STATE_KEY);
      return;
    }
    const added = segmentSwitch?.addService(IPAM_PORT_ID, next);
    // The service's MAC is derived from its address; a port already owning it keeps it and the service stays off the wire.
    if (added !== undefined && !added.ok) console.error(`edgelan: the IPAM service could not join its segment: ${added.error.message}`);
    this.persist();
  }

  /** Stores the lease table when it changed (after every message that reached the service). */
  persist(): void {
    if (this.service?.takeDirty() === true) this.kv.put(IPAM_STATE_KEY, this.service.exportState());
  }

  /** The leases, for `GET /v1/segments/:name/leases`; null when the service is off. */
  leases(nowMs: number): LeaseReport | null {
    return this.service === null ? null : leaseReport(this.service, nowMs);
  }

  /** The segment was deleted or its switch rebuilt: forget the service (configure() builds it again). */
  reset(): void {
    this.service = null;
  }
}
