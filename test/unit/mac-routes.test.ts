// MAC routes between cells (docs/cells.md §5): the RFC 7432 §15 sequence-number rules, withdraws,
// epochs, expiry and move dampening, plus a property: every cell converges to one owner per MAC.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ANY_VLAN, MacRouteTable, MOVE_LIMIT, RouteOutcome, type MacRoute } from "../../datapath/cells/mac-routes.ts";
import { mac } from "./datapath-frames.ts";

const X = mac("02:00:00:00:00:0a");
const AGING = 300_000;
const LIMITS = { maxLearned: 4096, agingMs: AGING };

function learned(origin: number, seq: number, vlan = 0): MacRoute {
  return { mac: X, vlan, kind: "learned", seq, origin };
}

describe("MacRouteTable", () => {
  it("installs a route, replaces it by a higher seq, ignores a lower one", () => {
    const table = new MacRouteTable(0, LIMITS);
    expect(table.apply(learned(1, 3), 0)).toBe(RouteOutcome.Installed);
    expect(table.owner(X, 0)).toBe(1);
    expect(table.apply(learned(2, 2), 0)).toBe(RouteOutcome.Stale);
    expect(table.owner(X, 0)).toBe(1);
    expect(table.apply(learned(2, 4), 0)).toBe(RouteOutcome.Installed);
    expect(table.owner(X, 0)).toBe(2);
    expect(table.counters.stale).toBe(1);
  });

  it("equal seq from two cells: the lower index wins whatever the order", () => {
    const a = new MacRouteTable(0, LIMITS);
    a.apply(learned(2, 5), 0);
    a.apply(learned(1, 5), 0);
    const b = new MacRouteTable(0, LIMITS);
    b.apply(learned(1, 5), 0);
    b.apply(learned(2, 5), 0);
    expect([a.owner(X, 0), b.owner(X, 0)]).toEqual([1, 1]);
  });

  it("an update from the same origin replaces its route even with a lower seq", () => {
    const table = new MacRouteTable(0, LIMITS);
    table.apply(learned(1, 7), 0);
    expect(table.apply(learned(1, 2), 0)).toBe(RouteOutcome.Installed);
    expect(table.route(X, 0)?.seq).toBe(2);
  });

  it("learning a MAC held remotely announces seq + 1; a higher remote seq makes the local entry lose", () => {
    const table = new MacRouteTable(0, LIMITS);
    table.apply(learned(1, 4), 0);
    expect(table.learnLocal(X, 0, 0)).toEqual({ mac: X, vlan: 0, kind: "learned", seq: 5, origin: 0 });
    expect(table.owner(X, 0)).toBe(0);
    expect(table.apply(learned(2, 6), 1000)).toBe(RouteOutcome.LocalLost);
    expect(table.owner(X, 0)).toBe(2);
  });

  it("static beats learned both ways: a learned route for a static MAC is a conflict; a static route ends local learning", () => {
    const table = new MacRouteTable(0, LIMITS);
    table.learnLocal(X, 0, 0);
    expect(table.apply({ mac: X, vlan: ANY_VLAN, kind: "static", seq: 0, origin: 1 }, 0)).toBe(RouteOutcome.LocalLost);
    expect(table.owner(X, 0)).toBe(1);
    expect(table.owner(X, 7)).toBe(1);
    expect(table.apply(learned(2, 99), 0)).toBe(RouteOutcome.Conflict);
    expect(table.learnLocal(X, 0, 0)).toBeNull();
    expect(table.counters.conflicts).toBe(2);
  });

  it("a static MAC moves only by a higher seq (a resume on another cell)", () => {
    const table = new MacRouteTable(0, LIMITS);
    table.claimLocal(X, 3, 0);
    expect(table.apply({ mac: X, vlan: ANY_VLAN, kind: "static", seq: 3, origin: 1 }, 0)).toBe(RouteOutcome.Stale);
    expect(table.apply({ mac: X, vlan: ANY_VLAN, kind: "static", seq: 4, origin: 1 }, 0)).toBe(RouteOutcome.LocalLost);
    const other = new MacRouteTable(2, LIMITS);
    other.apply({ mac: X, vlan: ANY_VLAN, kind: "static", seq: 4, origin: 1 }, 0);
    expect(other.apply({ mac: X, vlan: ANY_VLAN, kind: "static", seq: 3, origin: 0 }, 0)).toBe(RouteOutcome.Stale);
    expect(other.owner(X, 0)).toBe(1);
  });

  it("a withdraw removes only the origin's own route, not a newer one", () => {
    const table = new MacRouteTable(0, LIMITS);
    table.apply(learned(1, 1), 0);
    expect(table.withdraw(X, 0, 1, 2, 0)).toBe(false);
    expect(table.withdraw(X, 0, 0, 1, 0)).toBe(false);
    expect(table.withdraw(X, 0, 1, 1, 0)).toBe(true);
    expect(table.owner(X, 0)).toBeUndefined();
  });

  it("a static claim that lost takes over when the winner's withdraw arrives after it", () => {
    const table = new MacRouteTable(0, LIMITS);
    table.apply({ mac: X, vlan: ANY_VLAN, kind: "static", seq: 9, origin: 1 }, 0);
    expect(table.apply({ mac: X, vlan: ANY_VLAN, kind: "static", seq: 5, origin: 2 }, 0)).toBe(RouteOutcome.Stale);
    expect(table.withdraw(X, ANY_VLAN, 9, 1, 0)).toBe(true);
    expect(table.owner(X, 0)).toBe(2);
    expect(table.withdraw(X, ANY_VLAN, 5, 2, 0)).toBe(true);
    expect(table.owner(X, 0)).toBeUndefined();
  });

  it("a new epoch of an origin voids its routes; the first sighting and an old epoch do not", () => {
    const table = new MacRouteTable(0, LIMITS);
    expect(table.observeEpoch(1, 5)).toBe(0);
    table.apply(learned(1, 1), 0);
    table.apply({ mac: mac("02:00:00:00:00:0b"), vlan: ANY_VLAN, kind: "static", seq: 1, origin: 1 }, 0);
    expect(table.observeEpoch(1, 4)).toBe(0);
    expect(table.observeEpoch(1, 5)).toBe(0);
    expect(table.observeEpoch(1, 6)).toBe(2);
    expect(table.remoteCount).toBe(0);
  });

  it("remote learned routes expire after 1.5 × aging; static ones never", () => {
    const table = new MacRouteTable(0, LIMITS);
    table.apply(learned(1, 1), 0);
    table.apply({ mac: mac("02:00:00:00:00:0b"), vlan: ANY_VLAN, kind: "static", seq: 1, origin: 1 }, 0);
    expect(table.expire(1.5 * AGING - 1)).toBe(0);
    expect(table.expire(1.5 * AGING)).toBe(1);
    expect(table.remoteCount).toBe(1);
  });

  it("refuses remote learned routes past the limit and counts them", () => {
    const table = new MacRouteTable(0, { maxLearned: 1, agingMs: AGING });
    expect(table.apply(learned(1, 0, 1), 0)).toBe(RouteOutcome.Installed);
    expect(table.apply(learned(1, 0, 2), 0)).toBe(RouteOutcome.Limit);
    expect(table.counters.routeLimitHits).toBe(1);
  });

  it(`freezes a MAC after ${MOVE_LIMIT} moves within 180 s, until the freeze ends`, () => {
    const table = new MacRouteTable(0, LIMITS);
    table.apply(learned(1, 0), 0);
    for (let i = 1; i <= MOVE_LIMIT; i++) table.apply(learned(1 + (i % 2), i), i * 1000);
    expect(table.counters.macFlaps).toBe(1);
    const owner = table.owner(X, 0);
    expect(table.apply(learned(owner === 1 ? 2 : 1, 100), 10_000)).toBe(RouteOutcome.Frozen);
    expect(table.owner(X, 0)).toBe(owner);
    expect(table.apply(learned(owner === 1 ? 2 : 1, 100), 10_000 + 1.5 * AGING)).toBe(RouteOutcome.Installed);
  });

  it("property: after any order of the same announcements every cell agrees on the owner", () => {
    const route = fc.record({ origin: fc.integer({ min: 1, max: 5 }), seq: fc.integer({ min: 0, max: 6 }) });
    fc.assert(fc.property(fc.uniqueArray(route, { minLength: 1, maxLength: 8, selector: (r) => r.origin }), fc.integer(), (routes, seed) => {
      // One route per origin (an origin's own updates replace each other by design, so order between them is the origin's).
      const shuffled = [...routes].sort((a, b) => ((a.origin * 7919 + seed) % 13) - ((b.origin * 7919 + seed) % 13));
      const t1 = new MacRouteTable(0, { maxLearned: 4096, agingMs: 1e12 });
      const t2 = new MacRouteTable(9, { maxLearned: 4096, agingMs: 1e12 });
      for (const r of routes) t1.apply(learned(r.origin, r.seq), 0);
      for (const r of shuffled) t2.apply(learned(r.origin, r.seq), 0);
      const best = [...routes].sort((a, b) => b.seq - a.seq || a.origin - b.origin)[0];
      return t1.owner(X, 0) === best?.origin && t2.owner(X, 0) === best?.origin;
    }));
  });
});
