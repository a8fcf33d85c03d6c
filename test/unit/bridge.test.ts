import { beforeEach, describe, expect, it } from "vitest";
import {
  Bridge, DEFAULT_BRIDGE_CONFIG, DeliveryFlag, deliveryFlag, deliveryIndex, ForwardOutcome, FRAME_SUPER, type BridgeConfig, type PortSpec, type ReceiveFilter,
} from "../../datapath/bridge.ts";
import { DropReason } from "../../datapath/counters.ts";
import { frame, mac } from "./datapath-frames.ts";

// The cast: two locked member ports, one trunk (bridge port), one monitor.
//   port 1 member  02:00:00:00:00:01
//   port 2 member  02:00:00:00:00:02  (listens to 01:00:5e:00:00:fb)
//   port 3 bridge  (stations such as 02:00:00:00:00:0a live behind it)
//   port 4 monitor
const M1 = "02 00 00 00 00 01";
const M2 = "02 00 00 00 00 02";
const BEHIND = "02 00 00 00 00 0a";
const UNKNOWN = "02 00 00 00 00 99";
const BCAST = "ff ff ff ff ff ff";
const MDNS = "01 00 5e 00 00 fb";
const OTHER_GROUP = "01 00 5e 00 00 01";
const IPV4 = "08 00";

const QUIET: ReceiveFilter = { promiscuous: false, allMulticast: false, multicast: [] };

function spec(kind: PortSpec["kind"], macs: string[] = [], filter: Partial<ReceiveFilter> = {}, learnLimit?: number): PortSpec {
  const base: PortSpec = { kind, macs: macs.map(mac), filter: { ...QUIET, ...filter } };
  return learnLimit === undefined ? base : { ...base, learnLimit };
}

/** Unwraps a Result in a test, failing with its message. */
function must(result: { ok: boolean; error?: { message: string } }): void {
  if (!result.ok) throw new Error(result.error?.message);
}

let now = 0;
let bridge: Bridge;
const out = new ForwardOutcome();

function segment(config: BridgeConfig = DEFAULT_BRIDGE_CONFIG): Bridge {
  const b = new Bridge(config, () => now);
  must(b.addPort(1, spec("member", ["02:00:00:00:00:01"])));
  must(b.addPort(2, spec("member", ["02:00:00:00:00:02"], { multicast: [mac("01:00:5e:00:00:fb")] })));
  must(b.addPort(3, spec("bridge", [], { allMulticast: true })));
  must(b.addPort(4, spec("monitor")));
  return b;
}

/** The frames of the last `send`, which deliveries index. */
let lastFrames: Uint8Array[] = [];

/** Forwards frames from `ingress` and returns the verdicts. */
function send(ingress: number, ...frames: Uint8Array[]): number[] {
  lastFrames = frames;
  bridge.forward(ingress, frames, out);
  return [...out.verdicts];
}

/** The frames delivered to `port` in the last call, in order. */
function framesFor(port: number): Uint8Array[] {
  return out.deliveriesFor(port).map((delivery) => lastFrames[deliveryIndex(delivery)] as Uint8Array);
}

/** How each delivery to `port` in the last call got there (DeliveryFlag per frame). */
function flagsFor(port: number): number[] {
  return out.deliveriesFor(port).map(deliveryFlag);
}

/** Which ports got how many frames in the last call. */
function egress(): Record<number, number> {
  const result: Record<number, number> = {};
  for (const port of out.egressPorts()) result[port] = framesFor(port).length;
  return result;
}

beforeEach(() => {
  now = 0;
  bridge = segment();
});

describe("known unicast", () => {
  it("goes to the owner only (plus the monitor), and the frame is the same view", () => {
    const f = frame(`${M2} ${M1} ${IPV4}`);
    expect(send(1, f)).toEqual([0]);
    expect(egress()).toEqual({ 2: 1, 4: 1 });
    expect(framesFor(2)[0]).toBe(f);
    expect(out.forwarded).toBe(1);
    expect(out.dropped).toBe(0);
  });

  it("to the sender's own MAC is dropped as local, and the monitor does not see it", () => {
    expect(send(1, frame(`${M1} ${M1} ${IPV4}`))).toEqual([DropReason.Local]);
    expect(egress()).toEqual({});
  });

  it("to a station learned behind a bridge port goes only to that port", () => {
    send(3, frame(`${BCAST} ${BEHIND} ${IPV4}`));
    expect(send(1, frame(`${BEHIND} ${M1} ${IPV4}`))).toEqual([0]);
    expect(egress()).toEqual({ 3: 1, 4: 1 });
  });

  it("back out of the bridge port it was learned on is dropped as local", () => {
    send(3, frame(`${BCAST} ${BEHIND} ${IPV4}`));
    expect(send(3, frame(`${BEHIND} 02 00 00 00 00 0b ${IPV4}`))).toEqual([DropReason.Local]);
  });
});

describe("flooding and receive filters", () => {
  it("broadcast reaches every other port, never the sender", () => {
    expect(send(1, frame(`${BCAST} ${M1} 08 06`))).toEqual([0]);
    expect(egress()).toEqual({ 2: 1, 3: 1, 4: 1 });
  });

  it("multicast reaches ports listening to the group and allMulticast ports", () => {
    expect(send(1, frame(`${MDNS} ${M1} ${IPV4}`))).toEqual([0]);
    expect(egress()).toEqual({ 2: 1, 3: 1, 4: 1 });
    expect(send(1, frame(`${OTHER_GROUP} ${M1} ${IPV4}`))).toEqual([0]);
    expect(egress()).toEqual({ 3: 1, 4: 1 });
  });

  it("unknown unicast goes to bridge ports and promiscuous ports, not to quiet members", () => {
    expect(send(1, frame(`${UNKNOWN} ${M1} ${IPV4}`))).toEqual([0]);
    expect(egress()).toEqual({ 3: 1, 4: 1 });
    bridge.setFilter(2, { ...QUIET, promiscuous: true });
    send(1, frame(`${UNKNOWN} ${M1} ${IPV4}`));
    expect(egress()).toEqual({ 2: 1, 3: 1, 4: 1 });
  });

  it("a promiscuous port does not get known unicast for another port (that is the monitor's job)", () => {
    bridge.setFilter(2, { ...QUIET, promiscuous: true });
    send(3, frame(`${M1} ${BEHIND} ${IPV4}`));
    expect(egress()).toEqual({ 1: 1, 4: 1 });
  });

  it("a frame no port accepts is dropped as no-receiver and not mirrored", () => {
    bridge.removePort(3);
    expect(send(1, frame(`${UNKNOWN} ${M1} ${IPV4}`))).toEqual([DropReason.NoReceiver]);
    expect(egress()).toEqual({});
  });

  it("setFilter replaces the multicast list", () => {
    bridge.setFilter(2, QUIET);
    send(1, frame(`${MDNS} ${M1} ${IPV4}`));
    expect(egress()).toEqual({ 3: 1, 4: 1 });
  });
});

describe("ingress checks", () => {
  it("runt: 13 bytes, and a tagged frame of 17 bytes", () => {
    const verdicts = send(1, frame(`${M2} ${M1} 08`, 13), frame(`${M2} ${M1} 81 00 00 05 08`, 17));
    expect(verdicts).toEqual([DropReason.Runt, DropReason.Runt]);
  });

  it("a bare 14-byte header is forwarded (padding is the sender's business)", () => {
    expect(send(1, frame(`${M2} ${M1} ${IPV4}`, 14))).toEqual([0]);
  });

  it("oversize: 1514 passes, 1515 drops; tagged gets +4 (1518 passes, 1519 drops)", () => {
    const tagged = `${M2} ${M1} 81 00 00 05 ${IPV4}`;
    const verdicts = send(1, frame(`${M2} ${M1} ${IPV4}`, 1514), frame(`${M2} ${M1} ${IPV4}`, 1515), frame(tagged, 1518), frame(tagged, 1519));
    expect(verdicts).toEqual([0, DropReason.Oversize, 0, DropReason.Oversize]);
  });

  it("a jumbo maximum applies after reconfigure", () => {
    bridge.reconfigure({ ...DEFAULT_BRIDGE_CONFIG, maxFrameSize: 9014 });
    expect(send(1, frame(`${M2} ${M1} ${IPV4}`, 9014), frame(`${M2} ${M1} ${IPV4}`, 9015))).toEqual([0, DropReason.Oversize]);
  });

  it("multicast source is dropped, on any kind of port", () => {
    expect(send(3, frame(`${BCAST} 03 00 00 00 00 0a ${IPV4}`))).toEqual([DropReason.MulticastSource]);
    expect(send(1, frame(`${BCAST} ${BCAST} ${IPV4}`))).toEqual([DropReason.MulticastSource]);
  });

  it("a member port may only send from its registered MACs", () => {
    expect(send(1, frame(`${M2} 02 00 00 00 00 66 ${IPV4}`), frame(`${M2} ${M2} ${IPV4}`))).toEqual([
      DropReason.SpoofedSource,
      DropReason.SpoofedSource,
    ]);
  });

  it("the all-zero source is never valid, even on a bridge port", () => {
    expect(send(3, frame(`${BCAST} 00 00 00 00 00 00 ${IPV4}`))).toEqual([DropReason.SpoofedSource]);
    expect(bridge.fdbSummary().learned).toBe(0);
  });

  it("anything a monitor port sends is dropped", () => {
    expect(send(4, frame(`${BCAST} 02 00 00 00 00 44 ${IPV4}`), frame("00", 1))).toEqual([DropReason.MonitorPort, DropReason.MonitorPort]);
  });

  it("a bridge port at its learn limit drops frames from new sources, keeps forwarding known ones", () => {
    bridge.removePort(3);
    must(bridge.addPort(3, spec("bridge", [], { allMulticast: true }, 2)));
    const verdicts = send(
      3,
      frame(`${BCAST} 02 00 00 00 00 0a ${IPV4}`),
      frame(`${BCAST} 02 00 00 00 00 0b ${IPV4}`),
      frame(`${BCAST} 02 00 00 00 00 0c ${IPV4}`),
      frame(`${BCAST} 02 00 00 00 00 0a ${IPV4}`),
    );
    expect(verdicts).toEqual([0, 0, DropReason.LearnLimit, 0]);
    expect(bridge.fdbSummary().portLimitHits).toBe(1);
  });

  it("the segment learn limit also drops frames from new sources", () => {
    bridge.reconfigure({ ...DEFAULT_BRIDGE_CONFIG, learnLimitPerSegment: 1 });
    expect(send(3, frame(`${BCAST} 02 00 00 00 00 0a ${IPV4}`), frame(`${BCAST} 02 00 00 00 00 0b ${IPV4}`))).toEqual([0, DropReason.LearnLimit]);
    expect(bridge.fdbSummary().segmentLimitHits).toBe(1);
  });

  it("a frame from an unknown (removed) ingress port is answered with reset", () => {
    expect(send(9, frame(`${BCAST} ${M1} ${IPV4}`), frame(`${BCAST} ${M1} ${IPV4}`))).toEqual([DropReason.Reset, DropReason.Reset]);
    expect(out.dropped).toBe(2);
  });
});

describe("VLANs", () => {
  it("learns per VLAN: a station learned on VLAN 10 is still unknown untagged", () => {
    send(3, frame(`${BCAST} ${BEHIND} 81 00 00 0a ${IPV4}`));
    bridge.setFilter(2, { ...QUIET, promiscuous: true });
    send(1, frame(`${BEHIND} ${M1} 81 00 00 0a ${IPV4}`));
    expect(egress()).toEqual({ 3: 1, 4: 1 });
    send(1, frame(`${BEHIND} ${M1} ${IPV4}`));
    expect(egress()).toEqual({ 2: 1, 3: 1, 4: 1 });
  });

  it("registered MACs are reachable in every VLAN", () => {
    expect(send(3, frame(`${M1} ${BEHIND} 81 00 0f fe ${IPV4}`))).toEqual([0]);
    expect(egress()).toEqual({ 1: 1, 4: 1 });
  });
});

describe("batches", () => {
  it("each egress port gets one batch per call, in ingress order, with the caller's views", () => {
    const frames = [
      frame(`${M2} ${M1} ${IPV4} 01`),
      frame(`${BCAST} ${M1} ${IPV4} 02`),
      frame(`${M1} ${M1} ${IPV4} 03`),
      frame(`${M2} ${M1} ${IPV4} 04`),
    ];
    expect(send(1, ...frames)).toEqual([0, 0, DropReason.Local, 0]);
    expect(out.egressPorts()).toEqual([2, 4, 3]);
    expect(framesFor(2)).toEqual([frames[0], frames[1], frames[3]]);
    expect(framesFor(2)[1]).toBe(frames[1]);
    expect(framesFor(3)).toEqual([frames[1]]);
    expect(framesFor(4)).toEqual([frames[0], frames[1], frames[3]]);
    expect(framesFor(1)).toEqual([]);
  });

  it("reusing the outcome clears the previous call's batches", () => {
    send(1, frame(`${M2} ${M1} ${IPV4}`));
    send(2, frame(`${M1} ${M2} ${IPV4}`));
    expect(egress()).toEqual({ 1: 1, 4: 1 });
    expect(framesFor(2)).toEqual([]);
    out.clear();
    expect(out.egressPorts()).toEqual([]);
    expect(out.verdicts).toEqual([]);
  });
});

describe("how a frame reached each port", () => {
  it("flags known unicast 0, flooded copies Flooded and monitor copies Mirrored", () => {
    send(1, frame(`${M2} ${M1} ${IPV4}`), frame(`${BCAST} ${M1} ${IPV4}`));
    expect(flagsFor(2)).toEqual([DeliveryFlag.Unicast, DeliveryFlag.Flooded]);
    expect(flagsFor(3)).toEqual([DeliveryFlag.Flooded]);
    expect(flagsFor(4)).toEqual([DeliveryFlag.Mirrored, DeliveryFlag.Mirrored]);
  });
});

describe("marks and per-port limits", () => {
  it("a frame marked with a reason is dropped with it unseen; a super-frame mark exempts it from maxFrameSize", () => {
    const big = frame(`${M2} ${M1} ${IPV4}`, 4000);
    lastFrames = [big, big, frame(`${M2} ${M1} ${IPV4}`)];
    bridge.forward(1, lastFrames, out, [0, FRAME_SUPER, DropReason.Malformed]);
    expect([...out.verdicts]).toEqual([DropReason.Oversize, 0, DropReason.Malformed]);
    expect(egress()).toEqual({ 2: 1, 4: 1 });
  });

  it("a port's own frame cap and VLAN switch: oversize above its cap, malformed when tagged without VLANs", () => {
    bridge.reconfigure({ ...DEFAULT_BRIDGE_CONFIG, maxFrameSize: 9000 });
    bridge.removePort(1);
    must(bridge.addPort(1, { ...spec("member", ["02:00:00:00:00:01"]), maxFrameSize: 1514, vlan: false }));
    expect(send(1, frame(`${M2} ${M1} ${IPV4}`, 1514), frame(`${M2} ${M1} ${IPV4}`, 1515))).toEqual([0, DropReason.Oversize]);
    expect(send(1, frame(`${M2} ${M1} 81 00 00 05 ${IPV4}`, 64))).toEqual([DropReason.Malformed]);
    expect(send(2, frame(`${M1} ${M2} ${IPV4}`, 9000))).toEqual([0]);
  });
});

describe("broadcast interception", () => {
  it("a broadcast the interceptor takes goes nowhere, completes ok and counts as suppressed; other frames never reach it", () => {
    const offered: number[] = [];
    bridge.setBroadcastInterceptor((_frame, ingress) => {
      offered.push(ingress);
      return ingress === 1;
    });
    expect(send(1, frame(`${BCAST} ${M1} 08 06`), frame(`${MDNS} ${M1} ${IPV4}`), frame(`${M2} ${M1} ${IPV4}`))).toEqual([0, 0, 0]);
    expect(out.suppressed).toBe(1);
    expect(egress()).toEqual({ 2: 2, 3: 1, 4: 2 });
    expect(send(2, frame(`${BCAST} ${M2} 08 06`))).toEqual([0]);
    expect(egress()).toEqual({ 1: 1, 3: 1, 4: 1 });
    expect(offered).toEqual([1, 2]);
  });
});

describe("ports and MACs", () => {
  it("refuses a duplicate port id, a MAC registered elsewhere, and unusable MACs", () => {
    const codes = [
      bridge.addPort(1, spec("member")),
      bridge.addPort(5, spec("member", ["02:00:00:00:00:01"])),
      bridge.addPort(5, spec("member", ["01:00:5e:00:00:01"])),
      bridge.addPort(5, spec("member", ["00:00:00:00:00:00"])),
      bridge.addPort(5, spec("monitor", ["02:00:00:00:00:05"])),
    ].map((r) => (r.ok ? "ok" : r.error.code));
    expect(codes).toEqual(["port-exists", "mac-taken", "invalid-mac", "invalid-mac", "invalid-mac"]);
    expect(bridge.hasPort(5)).toBe(false);
  });

  it("a failed addPort registers none of its MACs", () => {
    const result = bridge.addPort(5, spec("member", ["02:00:00:00:00:05", "02:00:00:00:00:01"]));
    expect(result.ok).toBe(false);
    expect(bridge.addPort(6, spec("member", ["02:00:00:00:00:05"])).ok).toBe(true);
  });

  it("addMac lets a member send from a new address; removeMac takes it back", () => {
    const fromNew = `${M2} 02 00 00 00 00 11 ${IPV4}`;
    expect(send(1, frame(fromNew))).toEqual([DropReason.SpoofedSource]);
    must(bridge.addMac(1, mac("02:00:00:00:00:11")));
    expect(send(1, frame(fromNew))).toEqual([0]);
    bridge.removeMac(1, mac("02:00:00:00:00:11"));
    expect(send(1, frame(fromNew))).toEqual([DropReason.SpoofedSource]);
  });

  it("addMac errors: no-port, mac-taken, invalid-mac", () => {
    const codes = [
      bridge.addMac(9, mac("02:00:00:00:00:09")),
      bridge.addMac(1, mac("02:00:00:00:00:02")),
      bridge.addMac(1, mac("ff:ff:ff:ff:ff:ff")),
      bridge.addMac(4, mac("02:00:00:00:00:44")),
    ].map((r) => (r.ok ? "ok" : r.error.code));
    expect(codes).toEqual(["no-port", "mac-taken", "invalid-mac", "invalid-mac"]);
  });

  it("removePort flushes its entries: its MACs become unknown and free to register", () => {
    send(3, frame(`${BCAST} ${BEHIND} ${IPV4}`));
    expect(bridge.fdbSummary().learned).toBe(1);
    bridge.removePort(3);
    bridge.removePort(2);
    expect(bridge.hasPort(2)).toBe(false);
    const summary = bridge.fdbSummary();
    expect(summary.learned).toBe(0);
    expect(summary.entries.map((e) => e.mac)).toEqual(["02:00:00:00:00:01"]);
    expect(bridge.addPort(5, spec("member", ["02:00:00:00:00:02"])).ok).toBe(true);
  });
});

describe("MAC ownership (docs/datapath.md)", () => {
  const learnBehind = (): void => void send(3, frame(`${BCAST} ${BEHIND} ${IPV4}`));

  it("a member cannot register a MAC learned behind another port, at join or later", () => {
    learnBehind();
    expect(bridge.addPort(5, spec("member", ["02:00:00:00:00:0a"]))).toMatchObject({ ok: false, error: { code: "mac-taken", message: expect.stringContaining("behind port 3") } });
    must(bridge.addPort(5, spec("member", ["02:00:00:00:00:05"])));
    expect(bridge.addMac(5, mac(BEHIND.replace(/ /g, ":")))).toMatchObject({ ok: false, error: { code: "mac-taken" } });
    send(1, frame(`${BEHIND} ${M1} ${IPV4}`));
    expect(egress()).toEqual({ 3: 1, 4: 1 });
  });

  it("a MAC its join token binds (claims) replaces the learned entry: unicast to it now reaches the claimant", () => {
    learnBehind();
    must(bridge.addPort(5, { ...spec("member", ["02:00:00:00:00:0a"]), claims: [mac("02:00:00:00:00:0a")] }));
    send(1, frame(`${BEHIND} ${M1} ${IPV4}`));
    expect(egress()).toEqual({ 5: 1, 4: 1 });
  });

  it("a bridge port may register a MAC it learned itself", () => {
    learnBehind();
    must(bridge.addMac(3, mac("02:00:00:00:00:0a")));
    expect(bridge.staticOwner(mac("02:00:00:00:00:0a"))).toBe(3);
  });

  it("a bridge port cannot send from a MAC a member registered (spoofed-source), from its own learned ones it can", () => {
    expect(send(3, frame(`${BCAST} ${M2} ${IPV4}`), frame(`${BCAST} ${BEHIND} ${IPV4}`))).toEqual([DropReason.SpoofedSource, 0]);
  });
});

describe("learning, moves, conflicts and aging", () => {
  it("a station that moves between bridge ports follows, and the move is counted", () => {
    must(bridge.addPort(5, spec("bridge")));
    send(3, frame(`${BCAST} ${BEHIND} ${IPV4}`));
    send(5, frame(`${BCAST} ${BEHIND} ${IPV4}`));
    send(1, frame(`${BEHIND} ${M1} ${IPV4}`));
    expect(egress()).toEqual({ 5: 1, 4: 1 });
    expect(bridge.fdbSummary().moves).toBe(1);
  });

  it("a bridge port sending from a member's MAC is dropped spoofed-source and never steals it (conflict counted)", () => {
    expect(send(3, frame(`${M2} ${M1} ${IPV4}`))).toEqual([DropReason.SpoofedSource]);
    expect(egress()).toEqual({});
    expect(bridge.fdbSummary().conflicts).toBe(1);
    send(2, frame(`${M1} ${M2} ${IPV4}`));
    expect(egress()).toEqual({ 1: 1, 4: 1 });
  });

  it("learned entries age out on the injected clock (alarm path)", () => {
    now = 1_000;
    send(3, frame(`${BCAST} ${BEHIND} ${IPV4}`));
    expect(bridge.nextAgingDeadline()).toBe(301_000);
    now = 300_999;
    expect(bridge.ageOut()).toBe(0);
    now = 301_000;
    expect(bridge.ageOut()).toBe(1);
    expect(bridge.nextAgingDeadline()).toBeUndefined();
  });

  it("traffic after the deadline ages the table before deciding", () => {
    bridge.removePort(4);
    must(bridge.addPort(5, spec("bridge")));
    send(3, frame(`${BCAST} ${BEHIND} ${IPV4}`));
    now = 300_000;
    send(1, frame(`${BEHIND} ${M1} ${IPV4}`));
    expect(egress()).toEqual({ 3: 1, 5: 1 });
  });

  it("fdbSummary lists static and learned entries with ages from the clock", () => {
    send(3, frame(`${BCAST} ${BEHIND} 81 00 00 07 ${IPV4}`));
    now = 2_500;
    expect(bridge.fdbSummary().entries).toEqual([
      { mac: "02:00:00:00:00:01", vlan: null, port: 1, static: true, ageMs: null },
      { mac: "02:00:00:00:00:02", vlan: null, port: 2, static: true, ageMs: null },
      { mac: "02:00:00:00:00:0a", vlan: 7, port: 3, static: false, ageMs: 2_500 },
    ]);
  });
});

describe("configuration", () => {
  it("the defaults are 1514 bytes, 64 per port, 4096 per segment, 300 s", () => {
    expect(DEFAULT_BRIDGE_CONFIG).toEqual({ maxFrameSize: 1514, learnLimitPerPort: 64, learnLimitPerSegment: 4096, agingMs: 300_000 });
  });
});
