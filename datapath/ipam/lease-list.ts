import { formatIpv4 } from "../inet.ts";
import { formatMac } from "../mac.ts";
import type { IpamCounters, IpamService } from "./ipam-service.ts";

/*
 * What `GET /v1/segments/:name/leases` and `edgelan segments show` print about the IPAM service:
 * every lease and reservation, the pool's occupancy and the service's counters. Pure: the
 * adapter passes the service and the segment's clock.
 */

export interface LeaseListEntry {
  ip: string;
  mac: string;
  hostname: string | null;
  /** "id:<hex>" (DHCP client identifier) or "mac:<hex>"; null for a reservation nobody holds now. */
  client: string | null;
  /** bound: leased; offered: held for an OFFER a few seconds; reserved: configured, not leased now. */
  state: "bound" | "offered" | "reserved";
  /** Seconds left (rounded up); null for an unleased reservation. */
  expiresInSeconds: number | null;
}

export interface LeaseReport {
  /** The service's own address and MAC. */
  server: string;
  serverMac: string;
  pool: { first: string; last: string; size: number; bound: number; offered: number; quarantined: number; free: number };
  leases: LeaseListEntry[];
  counters: IpamCounters;
}

/** The lease report of `service` at `nowMs`, leases sorted by address. */
export function leaseReport(service: IpamService, nowMs: number): LeaseReport {
  const { settings, leases: table } = service;
  const entries: LeaseListEntry[] = [];
  let bound = 0;
  let offered = 0;
  for (const lease of table.entries()) {
    if (lease.expiresAtMs <= nowMs) continue;
    if (table.inRange(lease.ip)) {
      if (lease.state === "bound") bound++;
      else offered++;
    }
    entries.push({
      ip: formatIpv4(lease.ip), mac: formatMac(lease.mac), hostname: lease.hostname, client: lease.client, state: lease.state,
      expiresInSeconds: Math.ceil((lease.expiresAtMs - nowMs) / 1000),
    });
  }
  for (const reservation of settings.reservations) {
    const holder = table.leaseOf(reservation.ip);
    if (holder !== undefined && holder.expiresAtMs > nowMs) continue;
    entries.push({ ip: formatIpv4(reservation.ip), mac: formatMac(reservation.mac), hostname: reservation.hostname, client: null, state: "reserved", expiresInSeconds: null });
  }
  entries.sort((a, b) => addressOrder(a.ip) - addressOrder(b.ip));
  const reservedInRange = settings.reservations.filter((r) => table.inRange(r.ip)).length;
  const size = table.poolSize;
  return {
    server: formatIpv4(settings.server),
    serverMac: formatMac(service.mac),
    pool: {
      first: formatIpv4(settings.rangeStart), last: formatIpv4(settings.rangeEnd), size, bound, offered, quarantined: table.quarantined,
      free: Math.max(0, size - bound - offered - table.quarantined - reservedInRange),
    },
    leases: entries,
    counters: { ...service.counters },
  };
}

function addressOrder(text: string): number {
  return text.split(".").reduce((sum, octet) => sum * 256 + Number(octet), 0);
}
