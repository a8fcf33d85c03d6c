import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  clientKeyOf, LeaseTable, MAX_PENDING_OFFERS, OFFER_HOLD_MS, QUARANTINE_MS, type LeaseClient, type LeasePool,
} from "../../../datapath/ipam/lease-table.ts";

// The lease table on its own: allocation, renewal, release, decline, expiry, reservations,
// client identifiers, names, limits and the stored form. Pool 10.44.0.100..10.44.0.109.

const BASE = 0x0a2c0000;
const ip = (host: number): number => BASE + host;
const POOL: LeasePool = { rangeStart: ip(100), rangeEnd: ip(109), reservations: [{ mac: 0x0200000000d0, ip: ip(10), hostname: "db" }] };
const client = (n: number, hostname: string | null = null): LeaseClient => ({ key: clientKeyOf(0x020000000100 + n, undefined), mac: 0x020000000100 + n, hostname });
const LEASE = 3600;

function mustOffer(table: LeaseTable, c: LeaseClient, now = 0, requested?: number): number {
  const offered = table.offer(c, requested, now);
  if (!offered.ok) throw new Error(offered.error.message);
  return offered.value;
}

function mustBind(table: LeaseTable, c: LeaseClient, address: number, now = 0): void {
  const bound = table.bind(c, address, LEASE, now);
  if (!bound.ok) throw new Error(bound.error.message);
}

describe("LeaseTable", () => {
  it("keys clients by client identifier when given, else by MAC", () => {
    expect(clientKeyOf(0x020000000001, undefined)).toBe("mac:020000000001");
    expect(clientKeyOf(0x020000000001, Uint8Array.of(1, 2, 0, 0, 0, 0, 1))).toBe("id:01020000000001");
  });

  it("offers an address in the pool, binds it on request, and offers the same one again to the same client", () => {
    const table = new LeaseTable(POOL);
    const a = mustOffer(table, client(1));
    expect(a).toBeGreaterThanOrEqual(ip(100));
    expect(a).toBeLessThanOrEqual(ip(109));
    mustBind(table, client(1), a);
    expect(table.leaseOf(a)).toMatchObject({ state: "bound", mac: client(1).mac, expiresAtMs: LEASE * 1000 });
    expect(mustOffer(table, client(1), 5)).toBe(a);
    expect(table.takeDirty()).toBe(true);
    expect(table.takeDirty()).toBe(false);
  });

  it("gives the requested address when free, another when taken", () => {
    const table = new LeaseTable(POOL);
    expect(mustOffer(table, client(1), 0, ip(105))).toBe(ip(105));
    mustBind(table, client(1), ip(105));
    expect(mustOffer(table, client(2), 0, ip(105))).not.toBe(ip(105));
    expect(mustOffer(table, client(3), 0, ip(50))).not.toBe(ip(50)); // outside the pool
  });

  it("renews: binding again moves the expiry, keeps the address", () => {
    const table = new LeaseTable(POOL);
    mustBind(table, client(1), ip(104), 0);
    mustBind(table, client(1), ip(104), 1_000_000);
    expect(table.leaseOf(ip(104))?.expiresAtMs).toBe(1_000_000 + LEASE * 1000);
  });

  it("refuses an address held by another client, outside the pool, or reserved for another MAC", () => {
    const table = new LeaseTable(POOL);
    mustBind(table, client(1), ip(104));
    expect(table.bind(client(2), ip(104), LEASE, 0)).toMatchObject({ ok: false, error: { code: "address-taken" } });
    expect(table.bind(client(2), ip(50), LEASE, 0)).toMatchObject({ ok: false, error: { code: "not-in-pool" } });
    expect(table.bind(client(2), ip(10), LEASE, 0)).toMatchObject({ ok: false, error: { code: "address-taken" } });
  });

  it("gives a reservation its fixed address (outside the pool) and name, never to anyone else", () => {
    const table = new LeaseTable(POOL);
    const reserved: LeaseClient = { key: clientKeyOf(0x0200000000d0, undefined), mac: 0x0200000000d0, hostname: "other" };
    expect(mustOffer(table, reserved)).toBe(ip(10));
    mustBind(table, reserved, ip(10));
    expect(table.leaseOf(ip(10))?.hostname).toBe("db");
    expect(table.addressOfName("db")).toBe(ip(10));
    expect(table.nameOfAddress(ip(10))).toBe("db");
    expect(table.ownerOf(ip(10))).toBe(0x0200000000d0);
  });

  it("release returns the address to the pool; only its holder can release it", () => {
    const table = new LeaseTable(POOL);
    mustBind(table, client(1), ip(104));
    expect(table.release(client(2).key, ip(104))).toBe(false);
    expect(table.release(client(1).key, ip(103))).toBe(false);
    expect(table.release(client(1).key, ip(104))).toBe(true);
    expect(table.leaseOf(ip(104))).toBeUndefined();
    expect(mustOffer(table, client(2), 0, ip(104))).toBe(ip(104));
  });

  it("an unanswered offer holds its address only for OFFER_HOLD_MS", () => {
    const table = new LeaseTable(POOL);
    expect(mustOffer(table, client(1), 0, ip(104))).toBe(ip(104));
    expect(mustOffer(table, client(2), 1, ip(104))).not.toBe(ip(104));
    table.expire(OFFER_HOLD_MS);
    expect(table.leaseOf(ip(104))).toBeUndefined();
    expect(table.takeDirty()).toBe(false); // offers are never persisted
  });

  it("a bound lease expires at its end and its address returns to the pool", () => {
    const table = new LeaseTable(POOL);
    mustBind(table, client(1, "web"), ip(104));
    table.takeDirty();
    expect(table.expire(LEASE * 1000 - 1)).toBe(0);
    expect(table.expire(LEASE * 1000)).toBe(1);
    expect(table.leaseOf(ip(104))).toBeUndefined();
    expect(table.addressOfName("web")).toBeUndefined();
    expect(table.takeDirty()).toBe(true);
  });

  it("a decline quarantines the address for QUARANTINE_MS; quarantines never exceed a quarter of the pool", () => {
    const table = new LeaseTable(POOL);
    mustBind(table, client(1), ip(104));
    expect(table.decline(client(2).key, ip(104), 0)).toBe(false);
    expect(table.decline(client(1).key, ip(104), 0)).toBe(true);
    expect(table.bind(client(1), ip(104), LEASE, 1)).toMatchObject({ ok: false, error: { code: "quarantined" } });
    table.expire(QUARANTINE_MS);
    expect(table.bind(client(1), ip(104), LEASE, QUARANTINE_MS).ok).toBe(true);
    // A client declining every offer takes at most floor(10 / 4) = 2 addresses out of the pool.
    for (let i = 0; i < 10; i++) {
      const offered = mustOffer(table, client(7), QUARANTINE_MS + i);
      table.decline(client(7).key, offered, QUARANTINE_MS + i);
    }
    expect(table.quarantined).toBe(2);
  });

  it("keeps one entry per MAC: a new client identifier from the same MAC replaces the old entry", () => {
    const table = new LeaseTable(POOL);
    const mac = 0x020000000999;
    for (let i = 0; i < 20; i++) {
      const c: LeaseClient = { key: clientKeyOf(mac, Uint8Array.of(0xff, i)), mac, hostname: null };
      const offered = mustOffer(table, c, i);
      mustBind(table, c, offered, i);
    }
    expect([...table.entries()].length).toBe(1);
  });

  it("holds at most MAX_PENDING_OFFERS offers; the oldest goes first", () => {
    const big = new LeaseTable({ rangeStart: ip(0) + 0x100, rangeEnd: ip(0) + 0x100 + 999, reservations: [] });
    for (let i = 0; i < MAX_PENDING_OFFERS + 10; i++) mustOffer(big, client(i), i);
    expect([...big.entries()].length).toBe(MAX_PENDING_OFFERS);
    expect(big.leaseOfClient(client(0).key)).toBeUndefined();
    expect(big.leaseOfClient(client(MAX_PENDING_OFFERS + 9).key)).toBeDefined();
  });

  it("says pool-exhausted when every address is taken", () => {
    const table = new LeaseTable(POOL);
    for (let i = 0; i < 10; i++) mustBind(table, client(i), mustOffer(table, client(i)));
    expect(table.offer(client(99), undefined, 0)).toMatchObject({ ok: false, error: { code: "pool-exhausted" } });
  });

  it("gives a host name to the first client that asks; a reservation's name is never given to a lease", () => {
    const table = new LeaseTable(POOL);
    mustBind(table, client(1, "web"), ip(101));
    mustBind(table, client(2, "web"), ip(102));
    mustBind(table, client(3, "db"), ip(103));
    expect(table.addressOfName("web")).toBe(ip(101));
    expect(table.leaseOf(ip(102))?.hostname).toBeNull();
    expect(table.addressOfName("db")).toBe(ip(10));
    expect(table.nameOfAddress(ip(101))).toBe("web");
  });

  it("exports bound leases and quarantines as readable JSON and imports them into a new table", () => {
    const table = new LeaseTable(POOL);
    mustBind(table, client(1, "web"), ip(101));
    mustOffer(table, client(2));
    mustBind(table, client(3), ip(103));
    table.decline(client(3).key, ip(103), 0);
    const state = JSON.parse(JSON.stringify(table.exportState())) as unknown;
    expect(state).toEqual({
      version: 1,
      leases: [{ ip: "10.44.0.101", client: "mac:020000000101", mac: "02:00:00:00:01:01", hostname: "web", expiresAtMs: LEASE * 1000 }],
      quarantine: [{ ip: "10.44.0.103", untilMs: QUARANTINE_MS }],
    });
    const restored = new LeaseTable(POOL);
    expect(restored.importState(state, 1000)).toBe(0);
    expect(restored.leaseOf(ip(101))).toMatchObject({ state: "bound", hostname: "web" });
    expect(restored.addressOfName("web")).toBe(ip(101));
    expect(restored.bind(client(9), ip(103), LEASE, 1000)).toMatchObject({ ok: false, error: { code: "quarantined" } });
    expect(restored.takeDirty()).toBe(false);
  });

  it("skips stored leases that are expired, malformed or outside a changed pool", () => {
    const smaller = new LeaseTable({ rangeStart: ip(100), rangeEnd: ip(102), reservations: [] });
    const skipped = smaller.importState({
      version: 1,
      leases: [
        { ip: "10.44.0.101", client: "mac:1", mac: "02:00:00:00:00:01", hostname: null, expiresAtMs: 5000 },
        { ip: "10.44.0.105", client: "mac:2", mac: "02:00:00:00:00:02", hostname: null, expiresAtMs: 5000 },
        { ip: "10.44.0.102", client: "mac:3", mac: "02:00:00:00:00:03", hostname: null, expiresAtMs: 10 },
        { ip: "nonsense", client: "mac:4", mac: "02:00:00:00:00:04", hostname: null, expiresAtMs: 5000 },
        { ip: "10.44.0.101", client: "mac:5", mac: "02:00:00:00:00:05", hostname: null, expiresAtMs: 5000 },
        "junk",
      ],
      quarantine: "junk",
    }, 100);
    expect(skipped).toBe(5);
    expect([...smaller.entries()].map((l) => l.client)).toEqual(["mac:1"]);
    expect(smaller.importState(null, 0)).toBe(0);
  });
});

describe("LeaseTable properties", () => {
  type Op = { kind: "discover" | "request" | "release" | "decline" | "tick"; client: number; requested: number };
  const op = fc.record({
    kind: fc.constantFrom("discover", "request", "release", "decline", "tick") as fc.Arbitrary<Op["kind"]>,
    client: fc.integer({ min: 0, max: 14 }),
    requested: fc.integer({ min: 95, max: 112 }),
  });

  it("never gives one address to two clients, and never leaves the pool or a reservation", () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const table = new LeaseTable(POOL);
      let now = 0;
      for (const { kind, client: n, requested } of ops) {
        const c = client(n);
        now += 700;
        if (kind === "discover") table.offer(c, ip(requested), now);
        else if (kind === "request") table.bind(c, table.leaseOfClient(c.key)?.ip ?? ip(requested), 5, now);
        else if (kind === "release") table.release(c.key, table.leaseOfClient(c.key)?.ip ?? 0);
        else if (kind === "decline") table.decline(c.key, table.leaseOfClient(c.key)?.ip ?? 0, now);
        else table.expire(now);
        const entries = [...table.entries()];
        const addresses = entries.map((l) => l.ip);
        expect(new Set(addresses).size).toBe(addresses.length);
        expect(new Set(entries.map((l) => l.client)).size).toBe(entries.length);
        for (const address of addresses) expect(address >= ip(100) && address <= ip(109)).toBe(true);
      }
    }), { numRuns: 300 });
  });

  it("a released address returns to the pool: the pool can be leased whole again", () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 30 }), (releases) => {
      const table = new LeaseTable(POOL);
      for (let i = 0; i < 10; i++) mustBind(table, client(i), mustOffer(table, client(i)));
      const released = new Set(releases);
      for (const i of released) expect(table.release(client(i).key, table.leaseOfClient(client(i).key)?.ip ?? 0)).toBe(true);
      for (const i of released) expect(table.offer(client(100 + i), undefined, 0).ok).toBe(true);
      expect(table.offer(client(200), undefined, 0).ok).toBe(false);
    }), { numRuns: 100 });
  });
});
