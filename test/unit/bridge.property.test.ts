import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Bridge, DEFAULT_BRIDGE_CONFIG, deliveryIndex, ForwardOutcome, type PortSpec } from "../../datapath/bridge.ts";
import type { PortKind } from "../../datapath/port-kind.ts";
import { DropReason } from "../../datapath/counters.ts";
import { BROADCAST_MAC, isMulticastMac, macKeyAt, writeMac, type MacKey } from "../../datapath/mac.ts";

// Random segments (port kinds, registered MACs, filters) and random traffic
// (destinations from a small pool so hits, misses, groups and broadcast all
// occur; sources registered, foreign or multicast; lengths around the limits).

const UNICAST_POOL: MacKey[] = Array.from({ length: 12 }, (_, i) => 0x020000000000 + i + 1);
const GROUP_POOL: MacKey[] = [0x01005e000001, 0x01005e0000fb, 0x333300000001];
const ADDRESS_POOL: MacKey[] = [...UNICAST_POOL, ...GROUP_POOL, BROADCAST_MAC, 0];

interface PortPlan {
  id: number;
  spec: PortSpec;
}

const portKind = fc.constantFrom<PortKind>("member", "member", "bridge", "monitor");

const portPlans = fc
  .uniqueArray(
    fc.record({
      id: fc.integer({ min: 1, max: 50 }),
      kind: portKind,
      macs: fc.subarray(UNICAST_POOL, { maxLength: 3 }),
      promiscuous: fc.boolean(),
      allMulticast: fc.boolean(),
      multicast: fc.subarray(GROUP_POOL),
      learnLimit: fc.option(fc.integer({ min: 0, max: 4 }), { nil: undefined }),
    }),
    { minLength: 1, maxLength: 6, selector: (p) => p.id },
  )
  .map((plans): PortPlan[] =>
    plans.map((p) => {
      const spec: PortSpec = {
        kind: p.kind,
        macs: p.kind === "monitor" ? [] : p.macs,
        filter: { promiscuous: p.promiscuous, allMulticast: p.allMulticast, multicast: p.multicast },
      };
      return { id: p.id, spec: p.learnLimit === undefined ? spec : { ...spec, learnLimit: p.learnLimit } };
    }),
  );

const frameArb = fc.record({
  destination: fc.constantFrom(...ADDRESS_POOL),
  source: fc.constantFrom(...ADDRESS_POOL),
  vlan: fc.constantFrom(-1, 0, 5, 4095),
  length: fc.oneof(fc.integer({ min: 0, max: 70 }), fc.integer({ min: 1510, max: 1520 })),
});

const batchArb = fc.array(fc.record({ ingressIndex: fc.nat(), frames: fc.array(frameArb, { maxLength: 8 }) }), { maxLength: 12 });

/** Builds a frame: vlan -1 = untagged, otherwise an 802.1Q tag with that VID. Short lengths truncate the header. */
function build(f: { destination: MacKey; source: MacKey; vlan: number; length: number }): Uint8Array {
  const full = new Uint8Array(Math.max(f.length, 18));
  writeMac(f.destination, full, 0);
  writeMac(f.source, full, 6);
  if (f.vlan >= 0) {
    full.set([0x81, 0x00, f.vlan >> 8, f.vlan & 0xff, 0x08, 0x00], 12);
  } else {
    full.set([0x08, 0x00], 12);
  }
  return full.subarray(0, f.length);
}

/** Registers every plan whose MACs are still free; returns the plans that were attached. */
function attach(bridge: Bridge, plans: PortPlan[]): PortPlan[] {
  return plans.filter((plan) => bridge.addPort(plan.id, plan.spec).ok);
}

/** Whether `plan`'s port may receive a frame to `destination` by the filter rules (owner and monitor rules aside). */
function filterAccepts(plan: PortPlan, destination: MacKey): boolean {
  const { kind, filter } = plan.spec;
  if (kind === "monitor" || filter.promiscuous || destination === BROADCAST_MAC) return true;
  if (isMulticastMac(destination)) return filter.allMulticast || filter.multicast.includes(destination);
  return kind === "bridge" || plan.spec.macs.includes(destination);
}

describe("bridge properties", () => {
  it("never returns a frame to its ingress port, and only delivers to ports that accept it", () => {
    fc.assert(
      fc.property(portPlans, batchArb, (plans, batches) => {
        const bridge = new Bridge(DEFAULT_BRIDGE_CONFIG, () => 0);
        const attached = attach(bridge, plans);
        const out = new ForwardOutcome();
        for (const batch of batches) {
          const ingress = attached[batch.ingressIndex % attached.length] as PortPlan;
          const frames = batch.frames.map(build);
          bridge.forward(ingress.id, frames, out);
          for (const port of out.egressPorts()) {
            expect(port).not.toBe(ingress.id);
            const plan = attached.find((p) => p.id === port) as PortPlan;
            for (const f of out.deliveriesFor(port).map((d) => frames[deliveryIndex(d)] as Uint8Array)) {
              expect(frames.includes(f)).toBe(true);
              expect(filterAccepts(plan, macKeyAt(f, 0))).toBe(true);
            }
          }
        }
      }),
    );
  });

  it("accounts for every frame: forwarded + dropped = batch, deliveries in ingress order, dropped frames go nowhere", () => {
    fc.assert(
      fc.property(portPlans, batchArb, (plans, batches) => {
        const bridge = new Bridge(DEFAULT_BRIDGE_CONFIG, () => 0);
        const attached = attach(bridge, plans);
        const out = new ForwardOutcome();
        for (const batch of batches) {
          const ingress = attached[batch.ingressIndex % attached.length] as PortPlan;
          const frames = batch.frames.map(build);
          bridge.forward(ingress.id, frames, out);
          expect(out.verdicts.length).toBe(frames.length);
          expect(out.forwarded + out.dropped).toBe(frames.length);
          const sent = new Set<Uint8Array>();
          for (const port of out.egressPorts()) {
            // Ingress order within each port's batch.
            const indices = out.deliveriesFor(port).map(deliveryIndex);
            expect(indices).toEqual([...indices].sort((a, b) => a - b));
            for (const i of indices) sent.add(frames[i] as Uint8Array);
          }
          frames.forEach((f, i) => expect(sent.has(f)).toBe(out.verdicts[i] === 0));
        }
      }),
    );
  });

  it("unicast to a registered MAC reaches exactly its owner and the monitors", () => {
    fc.assert(
      fc.property(portPlans, fc.nat(), fc.nat(), (plans, from, to) => {
        const bridge = new Bridge(DEFAULT_BRIDGE_CONFIG, () => 0);
        const attached = attach(bridge, plans);
        const owners = attached.filter((p) => p.spec.macs.length > 0);
        const senders = attached.filter((p) => p.spec.kind === "member" && p.spec.macs.length > 0);
        fc.pre(owners.length > 0 && senders.length > 0);
        const owner = owners[to % owners.length] as PortPlan;
        const sender = senders[from % senders.length] as PortPlan;
        const destination = owner.spec.macs[0] as MacKey;
        const out = new ForwardOutcome();
        bridge.forward(sender.id, [build({ destination, source: sender.spec.macs[0] as MacKey, vlan: -1, length: 60 })], out);
        if (owner === sender) {
          expect(out.verdicts).toEqual([DropReason.Local]);
          expect(out.egressPorts()).toEqual([]);
        } else {
          const monitors = attached.filter((p) => p.spec.kind === "monitor").map((p) => p.id);
          expect(out.verdicts).toEqual([0]);
          expect([...out.egressPorts()].sort((a, b) => a - b)).toEqual([owner.id, ...monitors].sort((a, b) => a - b));
        }
      }),
    );
  });

  it("learning respects per-port limits, and flushing a removed port leaves no entry pointing at it", () => {
    fc.assert(
      fc.property(portPlans, batchArb, fc.nat(), (plans, batches, victimIndex) => {
        const bridge = new Bridge({ ...DEFAULT_BRIDGE_CONFIG, learnLimitPerPort: 3, learnLimitPerSegment: 6 }, () => 0);
        const attached = attach(bridge, plans);
        const out = new ForwardOutcome();
        for (const batch of batches) {
          const ingress = attached[batch.ingressIndex % attached.length] as PortPlan;
          bridge.forward(ingress.id, batch.frames.map(build), out);
        }
        const learned = bridge.fdbSummary().entries.filter((e) => !e.static);
        expect(learned.length).toBeLessThanOrEqual(6);
        for (const plan of attached) {
          const count = learned.filter((e) => e.port === plan.id).length;
          expect(count).toBeLessThanOrEqual(plan.spec.learnLimit ?? 3);
          if (plan.spec.kind !== "bridge") expect(count).toBe(0);
        }
        const victim = attached[victimIndex % attached.length] as PortPlan;
        bridge.removePort(victim.id);
        expect(bridge.fdbSummary().entries.some((e) => e.port === victim.id)).toBe(false);
        expect(bridge.hasPort(victim.id)).toBe(false);
      }),
    );
  });

  it("ages learned entries on the injected clock: none survive a full aging period without traffic", () => {
    fc.assert(
      fc.property(portPlans, batchArb, fc.integer({ min: 1, max: 10_000 }), (plans, batches, agingMs) => {
        let now = 0;
        const bridge = new Bridge({ ...DEFAULT_BRIDGE_CONFIG, agingMs }, () => now);
        const attached = attach(bridge, plans);
        const out = new ForwardOutcome();
        for (const batch of batches) {
          now += 7;
          const ingress = attached[batch.ingressIndex % attached.length] as PortPlan;
          bridge.forward(ingress.id, batch.frames.map(build), out);
        }
        const deadline = bridge.nextAgingDeadline();
        const learned = bridge.fdbSummary().learned;
        if (learned === 0) expect(deadline).toBeUndefined();
        else expect(deadline).toBeLessThanOrEqual(now + agingMs);
        now += agingMs;
        expect(bridge.ageOut()).toBe(learned);
        expect(bridge.fdbSummary().learned).toBe(0);
        expect(bridge.nextAgingDeadline()).toBeUndefined();
      }),
    );
  });
});
