import type { DhcpConfig } from "./config.ts";
import { ipamSettings } from "./config.ts";
import { IpamService } from "./ipam-service.ts";

/*
 * The IPAM service's life in a segment, for the adapter (durable/): build it from the stored
 * configuration and leases, rebuild it when the configuration changes (keeping the leases the
 * new configuration still allows), and persist its leases when they changed.
 */

/** The storage key the segment keeps the lease table under (JSON, ~240 KB at most for a 1024-address pool). */
export const IPAM_STATE_KEY = "ipam-leases";

/**
 * The service for `config` (null when the segment has no `dhcp`), with the leases of `stored`
 * (an earlier `exportState()`, or undefined) that are still valid at `nowMs`.
 */
export function ipamServiceFor(config: DhcpConfig | null | undefined, stored: unknown, nowMs: number): IpamService | null {
  if (config === null || config === undefined) return null;
  const service = new IpamService(ipamSettings(config));
  if (stored !== undefined) service.importState(stored, nowMs);
  return service;
}

/**
 * The service after a configuration change: a new one carrying over the leases `current` holds
 * that fit the new pool and reservations; null when `dhcp` was turned off. Its `takeDirty()` is
 * true when leases were dropped, so the adapter stores the smaller table.
 */
export function reconfigureIpam(current: IpamService | null, config: DhcpConfig | null | undefined, nowMs: number): IpamService | null {
  const next = ipamServiceFor(config, current?.exportState(), nowMs);
  if (next !== null && current !== null && next.exportState().leases.length !== current.exportState().leases.length) next.markDirty();
  return next;
}
