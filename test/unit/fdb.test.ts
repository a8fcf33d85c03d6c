import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { ForwardingTable, LearnOutcome } from "../../datapath/fdb.ts";
import { mac } from "./datapath-frames.ts";

const A = mac("02:00:00:00:00:0a");
const B = mac("02:00:00:00:00:0b");
const C = mac("02:00:00:00:00:0c");

function table(overrides: Partial<{ agingMs: number; learnLimitPerPort: number; learnLimitPerSegment: number }> = {}): ForwardingTable {
  return new ForwardingTable({ agingMs: 300_000, learnLimitPerPort: 64, learnLimitPerSegment: 4096, ...overrides });
}

describe("learning and lookup", () => {
  it("learns (mac, vlan) → port and keeps VLANs apart", () => {
    const fdb = table();
    expect(fdb.learn(A, 0, 1, 0)).toBe(LearnOutcome.Learned);
    expect(fdb.learn(A, 7, 2, 0)).toBe(LearnOutcome.Learned);
    expect(fdb.lookup(A, 0)).toBe(1);
    expect(fdb.lookup(A, 7)).toBe(2);
    expect(fdb.lookup(A, 8)).toBeUndefined();
    expect(fdb.lookup(B, 0)).toBeUndefined();
  });

  it("refreshes an entry seen again on the same port", () => {
    const fdb = table();
    fdb.learn(A, 0, 1, 0);
    expect(fdb.learn(A, 0, 1, 1000)).toBe(LearnOutcome.Refreshed);
    expect(fdb.summary(1500).entries).toEqual([{ mac: "02:00:00:00:00:0a", vlan: 0, port: 1, static: false, ageMs: 500 }]);
  });

  it("static entries match every VLAN and win over learned ones", () => {
    const fdb = table();
    expect(fdb.addStatic(A, 3).ok).toBe(true);
    expect(fdb.lookup(A, 0)).toBe(3);
    expect(fdb.lookup(A, 4094)).toBe(3);
    expect(fdb.learn(A, 0, 3, 0)).toBe(LearnOutcome.Static);
  });

  it("a static registration replaces learned entries of that MAC in every VLAN", () => {
    const fdb = table();
    fdb.learn(A, 0, 1, 0);
    fdb.learn(A, 5, 1, 0);
    expect(fdb.learnedOn(1)).toBe(2);
    fdb.addStatic(A, 2);
    expect(fdb.learnedOn(1)).toBe(0);
    expect(fdb.summary(0).learned).toBe(0);
    expect(fdb.lookup(A, 5)).toBe(2);
  });

  it("refuses multicast and all-zero MACs as static entries", () => {
    const fdb = table();
    for (const bad of [mac("01:00:5e:00:00:01"), 0, 0xffffffffffff]) {
      const result = fdb.addStatic(bad, 1);
      expect(result.ok ? "ok" : result.error.code).toBe("invalid-mac");
    }
  });

  it("refuses a MAC already static on another port with mac-taken, and is idempotent for the owner", () => {
    const fdb = table();
    fdb.addStatic(A, 1);
    const taken = fdb.addStatic(A, 2);
    expect(taken.ok ? "ok" : taken.error.code).toBe("mac-taken");
    expect(fdb.addStatic(A, 1).ok).toBe(true);
    expect(fdb.summary(0).static).toBe(1);
  });

  it("removeStatic only removes the owner's entry", () => {
    const fdb = table();
    fdb.addStatic(A, 1);
    expect(fdb.removeStatic(A, 2)).toBe(false);
    expect(fdb.lookup(A, 0)).toBe(1);
    expect(fdb.removeStatic(A, 1)).toBe(true);
    expect(fdb.lookup(A, 0)).toBeUndefined();
  });
});

describe("moves and conflicts", () => {
  it("moves a learned MAC seen on another port and counts the move", () => {
    const fdb = table();
    fdb.learn(A, 0, 1, 0);
    expect(fdb.learn(A, 0, 2, 10)).toBe(LearnOutcome.Moved);
    expect(fdb.lookup(A, 0)).toBe(2);
    expect(fdb.learnedOn(1)).toBe(0);
    expect(fdb.learnedOn(2)).toBe(1);
    expect(fdb.summary(10).moves).toBe(1);
  });

  it("never lets learning steal a static entry; counts a conflict", () => {
    const fdb = table();
    fdb.addStatic(A, 1);
    expect(fdb.learn(A, 0, 2, 0)).toBe(LearnOutcome.Conflict);
    expect(fdb.lookup(A, 0)).toBe(1);
    const summary = fdb.summary(0);
    expect(summary.conflicts).toBe(1);
    expect(summary.learned).toBe(0);
  });

  it("a move into a port at its limit is refused and the entry stays", () => {
    const fdb = table({ learnLimitPerPort: 1 });
    fdb.learn(A, 0, 1, 0);
    fdb.learn(B, 0, 2, 0);
    expect(fdb.learn(A, 0, 2, 5)).toBe(LearnOutcome.PortLimit);
    expect(fdb.lookup(A, 0)).toBe(1);
    expect(fdb.summary(5).portLimitHits).toBe(1);
  });
});

describe("limits", () => {
  it("stops learning on a port at its limit (default 64) and counts each hit", () => {
    const fdb = table();
    for (let i = 1; i <= 64; i++) expect(fdb.learn(0x020000000000 + i, 0, 1, 0)).toBe(LearnOutcome.Learned);
    expect(fdb.learn(0x020000000000 + 65, 0, 1, 0)).toBe(LearnOutcome.PortLimit);
    expect(fdb.learn(0x020000000000 + 66, 0, 1, 0)).toBe(LearnOutcome.PortLimit);
    expect(fdb.learn(0x020000000000 + 1, 0, 1, 1)).toBe(LearnOutcome.Refreshed);
    expect(fdb.learnedOn(1)).toBe(64);
    expect(fdb.summary(0).portLimitHits).toBe(2);
  });

  it("honours a per-port override and restores the default with undefined", () => {
    const fdb = table({ learnLimitPerPort: 1 });
    fdb.setPortLimit(1, 3);
    for (const m of [A, B, C]) expect(fdb.learn(m, 0, 1, 0)).toBe(LearnOutcome.Learned);
    fdb.setPortLimit(1, undefined);
    expect(fdb.learn(mac("02:00:00:00:00:0d"), 0, 1, 0)).toBe(LearnOutcome.PortLimit);
  });

  it("stops learning anywhere once the segment limit is reached", () => {
    const fdb = table({ learnLimitPerSegment: 2 });
    fdb.learn(A, 0, 1, 0);
    fdb.learn(B, 0, 2, 0);
    expect(fdb.learn(C, 0, 3, 0)).toBe(LearnOutcome.SegmentLimit);
    expect(fdb.summary(0).segmentLimitHits).toBe(1);
    expect(fdb.lookup(C, 0)).toBeUndefined();
  });

  it("a lowered limit does not evict existing entries but stops new ones", () => {
    const fdb = table();
    fdb.learn(A, 0, 1, 0);
    fdb.learn(B, 0, 1, 0);
    fdb.reconfigure({ agingMs: 300_000, learnLimitPerPort: 1, learnLimitPerSegment: 4096 });
    expect(fdb.learnedOn(1)).toBe(2);
    expect(fdb.learn(C, 0, 1, 0)).toBe(LearnOutcome.PortLimit);
  });
});

describe("aging", () => {
  it("removes learned entries exactly agingMs after they were last seen, never static ones", () => {
    const fdb = table({ agingMs: 1000 });
    fdb.addStatic(C, 9);
    fdb.learn(A, 0, 1, 0);
    fdb.learn(B, 3, 2, 500);
    expect(fdb.nextExpiry()).toBe(1000);
    expect(fdb.ageOut(999)).toBe(0);
    expect(fdb.ageOut(1000)).toBe(1);
    expect(fdb.lookup(A, 0)).toBeUndefined();
    expect(fdb.nextExpiry()).toBe(1500);
    expect(fdb.ageOut(1500)).toBe(1);
    expect(fdb.nextExpiry()).toBeUndefined();
    expect(fdb.lookup(C, 0)).toBe(9);
    expect(fdb.learnedOn(1) + fdb.learnedOn(2)).toBe(0);
  });

  it("a refresh postpones expiry; nextExpiry may be early but never late", () => {
    const fdb = table({ agingMs: 1000 });
    fdb.learn(A, 0, 1, 0);
    fdb.learn(A, 0, 1, 800);
    const early = fdb.nextExpiry();
    expect(early).toBeDefined();
    expect(early as number).toBeLessThanOrEqual(1800);
    expect(fdb.ageOut(early as number)).toBe(0);
    expect(fdb.nextExpiry()).toBe(1800);
    expect(fdb.ageOut(1800)).toBe(1);
  });

  it("aged-out entries free room under the limits", () => {
    const fdb = table({ agingMs: 10, learnLimitPerSegment: 1 });
    fdb.learn(A, 0, 1, 0);
    expect(fdb.learn(B, 0, 1, 5)).toBe(LearnOutcome.SegmentLimit);
    fdb.ageOut(10);
    expect(fdb.learn(B, 0, 1, 11)).toBe(LearnOutcome.Learned);
  });

  it("property: after ageOut(now) no surviving learned entry is older than agingMs and none younger was removed", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ mac: fc.integer({ min: 1, max: 40 }), vlan: fc.constantFrom(0, 1, 2), port: fc.integer({ min: 1, max: 4 }), at: fc.integer({ min: 0, max: 5000 }) })),
        fc.integer({ min: 0, max: 6000 }),
        (events, now) => {
          const fdb = table({ agingMs: 1000, learnLimitPerPort: 1000 });
          const sorted = [...events].sort((x, y) => x.at - y.at);
          for (const e of sorted) fdb.learn(0x020000000000 + e.mac, e.vlan, e.port, e.at);
          const before = fdb.summary(now).entries;
          const removed = fdb.ageOut(now);
          const after = fdb.summary(now).entries;
          expect(removed).toBe(before.filter((e) => (e.ageMs as number) >= 1000).length);
          expect(after.every((e) => (e.ageMs as number) < 1000)).toBe(true);
          const expiry = fdb.nextExpiry();
          if (after.length === 0) expect(expiry).toBeUndefined();
          else expect(expiry).toBe(now - Math.max(...after.map((e) => e.ageMs as number)) + 1000);
        },
      ),
    );
  });
});

describe("flush on port removal", () => {
  it("removes every static and learned entry of the port and nothing else", () => {
    const fdb = table();
    fdb.addStatic(A, 1);
    fdb.learn(B, 0, 1, 0);
    fdb.learn(B, 9, 1, 0);
    fdb.learn(C, 0, 2, 0);
    expect(fdb.flushPort(1)).toBe(3);
    expect(fdb.lookup(A, 0)).toBeUndefined();
    expect(fdb.lookup(B, 0)).toBeUndefined();
    expect(fdb.lookup(B, 9)).toBeUndefined();
    expect(fdb.lookup(C, 0)).toBe(2);
    const summary = fdb.summary(0);
    expect(summary.learned).toBe(1);
    expect(summary.static).toBe(0);
  });

  it("property: learned counts per port always equal the entries listed for that port", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant("learn" as const), mac: fc.integer({ min: 1, max: 20 }), vlan: fc.constantFrom(0, 5), port: fc.integer({ min: 1, max: 3 }) }),
            fc.record({ op: fc.constant("static" as const), mac: fc.integer({ min: 1, max: 20 }), port: fc.integer({ min: 1, max: 3 }) }),
            fc.record({ op: fc.constant("flush" as const), port: fc.integer({ min: 1, max: 3 }) }),
          ),
        ),
        (ops) => {
          const fdb = table({ learnLimitPerPort: 4, learnLimitPerSegment: 10 });
          for (const op of ops) {
            if (op.op === "learn") fdb.learn(0x020000000000 + op.mac, op.vlan, op.port, 0);
            else if (op.op === "static") fdb.addStatic(0x020000000000 + op.mac, op.port);
            else fdb.flushPort(op.port);
          }
          const summary = fdb.summary(0);
          const learned = summary.entries.filter((e) => !e.static);
          expect(summary.learned).toBe(learned.length);
          expect(summary.learned).toBeLessThanOrEqual(10);
          for (const port of [1, 2, 3]) {
            const count = learned.filter((e) => e.port === port).length;
            expect(fdb.learnedOn(port)).toBe(count);
            expect(count).toBeLessThanOrEqual(4);
          }
        },
      ),
    );
  });
});
