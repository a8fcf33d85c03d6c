import { formatIpv4, parseIpv4, type Ipv4Address } from "../inet.ts";
import { formatMac, parseMac, type MacKey } from "../mac.ts";
import { fail, ok, type Result } from "../result.ts";

/*
 * The IPAM lease table: which client holds which address of the pool, until when, under which
 * name. Pure bookkeeping (no wire formats, no clock of its own: every call gets `nowMs`), so the
 * DHCP state machine in ipam-service.ts stays apart from it, as smoltcp keeps its DHCP socket
 * apart from the wire.
 *
 * Bounds, whatever clients do:
 * - entries ≤ pool size + reservations: one entry per address, and one entry per MAC (a new
 *   client identifier from the same MAC replaces that MAC's old entry);
 * - an OFFER is not a lease: it holds its address OFFER_HOLD_MS and at most MAX_PENDING_OFFERS
 *   are held at once (the oldest is dropped first); a REQUEST for a free address is granted with
 *   or without a held offer, so a dropped offer costs a client nothing;
 * - DECLINEd addresses are quarantined QUARANTINE_MS, at most a quarter of the pool at once
 *   (the oldest quarantine ends first), so declines cannot drain the pool.
 */

/** How long an unanswered OFFER holds its address. */
export const OFFER_HOLD_MS = 10_000;
/** Offers held at once, segment-wide. */
export const MAX_PENDING_OFFERS = 64;
/** How long a DECLINEd address stays out of the pool (dnsmasq uses the same 10 minutes). */
export const QUARANTINE_MS = 10 * 60_000;

/** Who a lease belongs to: option 61 when the client sent one (RFC 2131 §4.2), else its hardware address. */
export interface LeaseClient {
  /** "id:<hex of option 61>" or "mac:<hex of chaddr>"; see `clientKeyOf`. */
  key: string;
  mac: MacKey;
  /** The name the client asked for (option 12), already a valid DNS label, or null. */
  hostname: string | null;
}

export interface Lease {
  ip: Ipv4Address;
  client: string;
  mac: MacKey;
  hostname: string | null;
  expiresAtMs: number;
  state: "offered" | "bound";
}

/** The pool and reservations a table serves (from IpamSettings). */
export interface LeasePool {
  rangeStart: Ipv4Address;
  rangeEnd: Ipv4Address;
  reservations: ReadonlyArray<{ mac: MacKey; ip: Ipv4Address; hostname: string | null }>;
}

export type LeaseError = "pool-exhausted" | "address-taken" | "not-in-pool" | "quarantined";

/** Persisted form: readable JSON (addresses and MACs as text), bound leases and quarantines only. */
export interface LeaseTableState {
  version: 1;
  leases: Array<{ ip: string; client: string; mac: string; hostname: string | null; expiresAtMs: number }>;
  quarantine: Array<{ ip: string; untilMs: number }>;
}

/** The key of a client: its client identifier if it sent one, else its MAC. */
export function clientKeyOf(mac: MacKey, clientId: Uint8Array | undefined): string {
  if (clientId !== undefined) return `id:${Array.from(clientId, (b) => b.toString(16).padStart(2, "0")).join("")}`;
  return `mac:${mac.toString(16).padStart(12, "0")}`;
}

export class LeaseTable {
  private readonly byIp = new Map<Ipv4Address, Lease>();
  private readonly byClient = new Map<string, Lease>();
  private readonly byMac = new Map<MacKey, Lease>();
  private readonly byName = new Map<string, Lease>();
  /** Offered entries in the order they were made (oldest first). */
  private readonly offers = new Set<Lease>();
  private readonly quarantine = new Map<Ipv4Address, number>();
  private readonly reservedByMac = new Map<MacKey, { ip: Ipv4Address; hostname: string | null }>();
  private readonly reservedIps = new Set<Ipv4Address>();
  private readonly reservedNames = new Set<string>();
  /** Counts changes to bound leases and quarantines (what `bindings()` reads and what is stored), never reset. */
  version = 0;
  /** `version` at the last `takeDirty()` (or restore). */
  private storedVersion = 0;

  constructor(private readonly pool: LeasePool) {
    for (const r of pool.reservations) {
      this.reservedByMac.set(r.mac, { ip: r.ip, hostname: r.hostname });
      this.reservedIps.add(r.ip);
      if (r.hostname !== null) this.reservedNames.add(r.hostname);
    }
  }

  get poolSize(): number {
    return this.pool.rangeEnd - this.pool.rangeStart + 1;
  }

  /** Most addresses quarantined at once: a quarter of the pool, at least one. */
  get quarantineLimit(): number {
    return Math.max(1, Math.floor(this.poolSize / 4));
  }

  /** Whether bound leases or quarantines changed since the last `takeDirty()` (offers never persist). */
  takeDirty(): boolean {
    const dirty = this.version !== this.storedVersion;
    this.storedVersion = this.version;
    return dirty;
  }

  /** Makes the next `takeDirty()` true. */
  markDirty(): void {
    this.touch();
  }

  /** The live entry holding `ip`, if any. */
  leaseOf(ip: Ipv4Address): Lease | undefined {
    return this.byIp.get(ip);
  }

  /** The live entry of a client, if any. */
  leaseOfClient(key: string): Lease | undefined {
    return this.byClient.get(key);
  }

  /** The reservation of a MAC, if any. */
  reservationOf(mac: MacKey): { ip: Ipv4Address; hostname: string | null } | undefined {
    return this.reservedByMac.get(mac);
  }

  /** Every live entry (offers included), in no particular order. */
  entries(): IterableIterator<Lease> {
    return this.byIp.values();
  }

  /** How many addresses are quarantined now. */
  get quarantined(): number {
    return this.quarantine.size;
  }

  /** The address a bound lease or a reservation gives `hostname`, if any (reservations first). */
  addressOfName(hostname: string): Ipv4Address | undefined {
    for (const r of this.pool.reservations) if (r.hostname === hostname) return r.ip;
    return this.byName.get(hostname)?.ip;
  }

  /** The hostname of a reserved or bound address, if it has one (reservations first). */
  nameOfAddress(ip: Ipv4Address): string | undefined {
    for (const r of this.pool.reservations) if (r.ip === ip && r.hostname !== null) return r.hostname;
    const lease = this.byIp.get(ip);
    return lease?.state === "bound" ? (lease.hostname ?? undefined) : undefined;
  }

  /** The MAC that owns `ip` now: its reservation's, or a bound lease's. */
  ownerOf(ip: Ipv4Address): MacKey | undefined {
    for (const r of this.pool.reservations) if (r.ip === ip) return r.mac;
    const lease = this.byIp.get(ip);
    return lease?.state === "bound" ? lease.mac : undefined;
  }

  /**
   * Every address with an owner, as `ownerOf` answers (reservations, then bound leases), sorted by
   * address: a renewal re-inserts its lease, which must not make the list look changed.
   */
  bindings(): Array<[Ipv4Address, MacKey]> {
    const out: Array<[Ipv4Address, MacKey]> = this.pool.reservations.map((r) => [r.ip, r.mac]);
    for (const lease of this.byIp.values()) if (lease.state === "bound" && !this.reservedIps.has(lease.ip)) out.push([lease.ip, lease.mac]);
    return out.sort((a, b) => a[0] - b[0]);
  }

  /** The earliest end of a bound lease (ms), or undefined: when a sweep next changes what `bindings` lists. */
  nextBoundExpiry(): number | undefined {
    let next: number | undefined;
    for (const lease of this.byIp.values()) if (lease.state === "bound" && (next === undefined || lease.expiresAtMs < next)) next = lease.expiresAtMs;
    return next;
  }

  /** Whether the pool range contains `ip`. */
  inRange(ip: Ipv4Address): boolean {
    return ip >= this.pool.rangeStart && ip <= this.pool.rangeEnd;
  }

  /**
   * Picks an address for `client` and holds it as an offer for OFFER_HOLD_MS (a bound client keeps
   * its lease untouched). Preference: its reservation, the address it already holds, the address it
   * asks for if free, then the first free address from a point hashed from its key (so a client
   * tends to get the same address back even after the table was lost).
   */
  offer(client: LeaseClient, requested: Ipv4Address | undefined, nowMs: number): Result<Ipv4Address, LeaseError> {
    const existing = this.byClient.get(client.key);
    if (existing?.state === "bound" && existing.mac === client.mac) return ok(existing.ip);
    const ip = this.pick(client, requested);
    if (ip === undefined) return fail("pool-exhausted", `all ${this.poolSize} addresses of the pool are leased, offered or quarantined`);
    this.place(client, ip, "offered", nowMs + OFFER_HOLD_MS);
    return ok(ip);
  }

  /**
   * Binds `ip` to `client` for `leaseSeconds` (a REQUEST granted): refused if the address is
   * reserved for another MAC, outside the pool and not reserved for this one, quarantined, or
   * held by another client.
   */
  bind(client: LeaseClient, ip: Ipv4Address, leaseSeconds: number, nowMs: number): Result<Lease, LeaseError> {
    const refusal = this.refusalFor(client, ip);
    if (refusal !== undefined) return refusal;
    return ok(this.place(client, ip, "bound", nowMs + leaseSeconds * 1000));
  }

  /** Why `client` may not have `ip` now, or undefined if it may. */
  refusalFor(client: LeaseClient, ip: Ipv4Address): { ok: false; error: { code: LeaseError; message: string } } | undefined {
    const reservation = this.reservedByMac.get(client.mac);
    if (this.reservedIps.has(ip) && reservation?.ip !== ip) return fail("address-taken", `${formatIpv4(ip)} is reserved for another MAC`);
    if (reservation?.ip !== ip && !this.inRange(ip)) return fail("not-in-pool", `${formatIpv4(ip)} is outside the pool`);
    if (this.quarantine.has(ip)) return fail("quarantined", `${formatIpv4(ip)} was declined and is quarantined`);
    const holder = this.byIp.get(ip);
    if (holder !== undefined && holder.client !== client.key) return fail("address-taken", `${formatIpv4(ip)} is held by another client`);
    return undefined;
  }

  /** Ends `client`'s lease of `ip` (RELEASE); returns whether it held it. The address returns to the pool. */
  release(clientKey: string, ip: Ipv4Address): boolean {
    const lease = this.byClient.get(clientKey);
    if (lease === undefined || lease.ip !== ip) return false;
    this.remove(lease);
    return true;
  }

  /**
   * `client` found `ip` in use by someone else (DECLINE): its entry ends and the address leaves the
   * pool for QUARANTINE_MS. Only the client the address was offered or leased to can decline it.
   */
  decline(clientKey: string, ip: Ipv4Address, nowMs: number): boolean {
    const lease = this.byClient.get(clientKey);
    if (lease === undefined || lease.ip !== ip) return false;
    this.remove(lease);
    if (!this.inRange(ip) || this.reservedIps.has(ip)) return true;
    if (this.quarantine.size >= this.quarantineLimit) {
      const oldest = this.quarantine.keys().next().value as Ipv4Address;
      this.quarantine.delete(oldest);
    }
    this.quarantine.set(ip, nowMs + QUARANTINE_MS);
    this.touch();
    return true;
  }

  /** Drops entries and quarantines whose time is over; returns how many leases (bound or offered) ended. */
  expire(nowMs: number): number {
    let ended = 0;
    for (const lease of [...this.byIp.values()]) {
      if (lease.expiresAtMs > nowMs) continue;
      this.remove(lease);
      ended++;
    }
    for (const [ip, until] of this.quarantine) {
      if (until > nowMs) continue;
      this.quarantine.delete(ip);
      this.touch();
    }
    return ended;
  }

  /** The bound leases and quarantines, for storage. */
  exportState(): LeaseTableState {
    const leases = [...this.byIp.values()]
      .filter((lease) => lease.state === "bound")
      .map((lease) => ({ ip: formatIpv4(lease.ip), client: lease.client, mac: formatMac(lease.mac), hostname: lease.hostname, expiresAtMs: lease.expiresAtMs }));
    const quarantine = [...this.quarantine].map(([ip, untilMs]) => ({ ip: formatIpv4(ip), untilMs }));
    return { version: 1, leases, quarantine };
  }

  /**
   * Restores stored leases into this (empty) table, as far as the current pool allows: entries
   * that are malformed, expired, outside the pool (the configuration changed) or in conflict with
   * a reservation or an earlier entry are skipped. Returns how many were skipped.
   */
  importState(state: unknown, nowMs: number): number {
    if (typeof state !== "object" || state === null) return 0;
    const { leases, quarantine } = state as Partial<LeaseTableState>;
    let skipped = 0;
    for (const stored of Array.isArray(leases) ? leases : []) {
      const lease = storedLease(stored);
      if (lease === undefined || lease.expiresAtMs <= nowMs || this.byClient.has(lease.key) || this.refusalFor(lease, lease.ip) !== undefined) {
        skipped++;
        continue;
      }
      this.place(lease, lease.ip, "bound", lease.expiresAtMs);
    }
    for (const stored of Array.isArray(quarantine) ? quarantine : []) {
      const ip = typeof stored?.ip === "string" ? parseIpv4(stored.ip) : undefined;
      if (ip?.ok !== true || typeof stored.untilMs !== "number" || stored.untilMs <= nowMs || !this.inRange(ip.value) || this.byIp.has(ip.value)) continue;
      if (this.quarantine.size < this.quarantineLimit) this.quarantine.set(ip.value, stored.untilMs);
    }
    this.storedVersion = this.version;
    return skipped;
  }

  private pick(client: LeaseClient, requested: Ipv4Address | undefined): Ipv4Address | undefined {
    const reservation = this.reservedByMac.get(client.mac);
    if (reservation !== undefined) return this.refusalFor(client, reservation.ip) === undefined ? reservation.ip : undefined;
    const existing = this.byClient.get(client.key);
    if (existing !== undefined && existing.mac === client.mac) return existing.ip;
    if (requested !== undefined && this.isFree(requested)) return requested;
    const size = this.poolSize;
    const start = hashOf(client.key) % size;
    for (let i = 0; i < size; i++) {
      const ip = this.pool.rangeStart + ((start + i) % size);
      if (this.isFree(ip)) return ip;
    }
    return undefined;
  }

  private isFree(ip: Ipv4Address): boolean {
    return this.inRange(ip) && !this.byIp.has(ip) && !this.reservedIps.has(ip) && !this.quarantine.has(ip);
  }

  /** Bound leases or quarantines changed: `version` moves on (so `takeDirty` reports it). */
  private touch(): void {
    this.version++;
  }

  /** Records `client` at `ip`, replacing its own older entry and any other entry of its MAC. */
  private place(client: LeaseClient, ip: Ipv4Address, state: Lease["state"], expiresAtMs: number): Lease {
    const own = this.byClient.get(client.key);
    if (own !== undefined) this.remove(own);
    const sameMac = this.byMac.get(client.mac);
    if (sameMac !== undefined) this.remove(sameMac);
    const holder = this.byIp.get(ip);
    if (holder !== undefined) this.remove(holder);
    const lease: Lease = { ip, client: client.key, mac: client.mac, hostname: this.nameFor(client), expiresAtMs, state };
    this.byIp.set(ip, lease);
    this.byClient.set(client.key, lease);
    this.byMac.set(client.mac, lease);
    if (state === "offered") {
      this.offers.add(lease);
      if (this.offers.size > MAX_PENDING_OFFERS) this.remove(this.offers.values().next().value as Lease);
    } else {
      if (lease.hostname !== null) this.byName.set(lease.hostname, lease);
      this.touch();
    }
    return lease;
  }

  /** The name a client's entry gets: its reservation's, else the one it asked for unless another host has it. */
  private nameFor(client: LeaseClient): string | null {
    const reservation = this.reservedByMac.get(client.mac);
    if (reservation !== undefined) return reservation.hostname;
    const name = client.hostname;
    if (name === null || this.reservedNames.has(name)) return null;
    const holder = this.byName.get(name);
    return holder === undefined || holder.client === client.key ? name : null;
  }

  private remove(lease: Lease): void {
    if (this.byIp.get(lease.ip) === lease) this.byIp.delete(lease.ip);
    if (this.byClient.get(lease.client) === lease) this.byClient.delete(lease.client);
    if (this.byMac.get(lease.mac) === lease) this.byMac.delete(lease.mac);
    if (lease.hostname !== null && this.byName.get(lease.hostname) === lease) this.byName.delete(lease.hostname);
    this.offers.delete(lease);
    if (lease.state === "bound") this.touch();
  }
}

function storedLease(stored: unknown): (LeaseClient & { ip: Ipv4Address; expiresAtMs: number }) | undefined {
  if (typeof stored !== "object" || stored === null) return undefined;
  const { ip, client, mac, hostname, expiresAtMs } = stored as Record<string, unknown>;
  const parsedIp = typeof ip === "string" ? parseIpv4(ip) : undefined;
  const parsedMac = typeof mac === "string" ? parseMac(mac) : undefined;
  if (parsedIp?.ok !== true || parsedMac?.ok !== true || typeof client !== "string" || typeof expiresAtMs !== "number") return undefined;
  if (hostname !== null && typeof hostname !== "string") return undefined;
  return { ip: parsedIp.value, key: client, mac: parsedMac.value, hostname, expiresAtMs };
}

/** FNV-1a over the key's characters: a stable starting point in the pool per client. */
function hashOf(key: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}
