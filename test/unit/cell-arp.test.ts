// ARP suppression per cell (docs/cells.md §0 item 12): the home's IPAM service announces what its ARP
// proxy answers for, and every other cell answers ARP requests from its own ports from that, instead of
// flooding them across the trunks. Three cells in Node, each a real SegmentSwitch.
import { beforeEach, describe, expect, it } from "vitest";
import { Cell } from "../../datapath/cells/cell.ts";
import { newPortCounters } from "../../datapath/counters.ts";
import { checkDhcpConfig, ipamSettings } from "../../datapath/ipam/config.ts";
import { ArpAnswerer } from "../../datapath/ipam/arp-proxy.ts";
import { IpamService } from "../../datapath/ipam/ipam-service.ts";
import { ArpOperation, buildArpFrame, checkArpPacket } from "../../datapath/inet.ts";
import type { SegmentSwitch } from "../../datapath/segment-switch.ts";
import type { SwitchPort } from "../../datapath/switch-port.ts";
import { meshOfCells, newCell, settleCalls } from "./cells-fixture.ts";
import { RecordingSink } from "./recording-sink.ts";

const BROADCAST = 0xffff_ffff_ffff;
const ip = (host: number): number => 0x0a2c0000 + host;
const ASKER = 0x0200_0000_0002;
const OWNER = 0x0200_0000_0003;
const SERVICE_PORT = 0xffff_ff00;

let now = 0;
let cells: Cell[] = [];
let switches: SegmentSwitch[] = [];
let service: IpamService;
const sinks = new Map<number, RecordingSink>();

function attach(cellIndex: number, id: number, mac: number): void {
  const sink = new RecordingSink();
  const sw = switches[cellIndex] as SegmentSwitch;
  const port: SwitchPort = sw.attach(id, "raw", {
    kind: "member", macs: [mac], filter: { promiscuous: false, allMulticast: false, multicast: [] },
    features: 0, txWindow: 0, credits: null, counters: newPortCounters(), heldCompletions: [],
  }, sink);
  const opened = sw.open(port);
  if (!opened.ok) throw new Error(opened.error.message);
  sinks.set(id, sink);
}

/** What the durable layer does at the end of each event: announce, then run every call (bounded). */
function pumpAll(): void {
  settleCalls(cells, (cell, index) => {
    const sw = switches[index] as SegmentSwitch;
    cell.syncStatics(new Set([...sw.allPorts()].filter((p) => p.mode !== "trunk").flatMap((p) => p.state.macs)), 1);
    cell.syncArpBindings(sw.port(SERVICE_PORT)?.service ?? null);
    cell.refreshFilter();
  }, (peer) => (switches[peer] as SegmentSwitch).flush());
}

function arpRequest(senderMac: number, senderIp: number, targetIp: number): Uint8Array {
  return buildArpFrame({ destination: BROADCAST, source: senderMac }, { operation: ArpOperation.Request, senderMac, senderIp, targetMac: 0, targetIp });
}

function ask(targetIp: number): void {
  const sw = switches[1] as SegmentSwitch;
  sw.rawFrame(sw.port(2) as SwitchPort, arpRequest(ASKER, ip(2), targetIp));
  sw.flush();
}

function take(id: number): Uint8Array[] {
  const frames = [...(sinks.get(id) as RecordingSink).frames];
  (sinks.get(id) as RecordingSink).frames.length = 0;
  return frames;
}

beforeEach(() => {
  now = 0;
  sinks.clear();
  ({ cells, switches } = meshOfCells(3, () => now));
  const config = checkDhcpConfig({
    subnet: "10.44.0.0/24", range: ["10.44.0.100", "10.44.0.109"],
    reservations: [{ mac: "02:00:00:00:00:03", ip: "10.44.0.33", hostname: "owner" }],
  });
  if (!config.ok) throw new Error(config.error.message);
  service = new IpamService(ipamSettings(config.value));
  expect((switches[0] as SegmentSwitch).addService(SERVICE_PORT, service).ok).toBe(true);
  attach(1, 2, ASKER);
  attach(2, 3, OWNER);
  pumpAll();
});

describe("ARP suppression per cell", () => {
  it("a cell answers an ARP request for a bound address from its own port at once; nothing crosses a trunk", () => {
    const callsBefore = (cells[1] as Cell).outbox(0)?.counters.calls;
    ask(ip(33));
    const [reply] = take(2);
    const arp = checkArpPacket((reply as Uint8Array).subarray(14));
    expect(arp.ok && arp.value.repr()).toMatchObject({ operation: ArpOperation.Reply, senderMac: OWNER, senderIp: ip(33), targetMac: ASKER, targetIp: ip(2) });
    pumpAll();
    expect(take(3)).toEqual([]);
    expect((cells[1] as Cell).outbox(0)?.counters.calls).toBe(callsBefore);
    expect((cells[1] as Cell).trunkPort(2)?.state.counters.txFrames).toBe(0);
    expect((cells[1] as Cell).arpSuppressed).toBe(1);
    expect((switches[1] as SegmentSwitch).counters.suppressed).toBe(1);
  });

  it("a request for an address without an owner is flooded as before, and reaches the other cells", () => {
    ask(ip(50));
    expect(take(2)).toEqual([]);
    pumpAll();
    expect(take(3)).toHaveLength(1);
    expect((cells[1] as Cell).arpSuppressed).toBe(0);
  });

  it("a lease the home grants later is announced, and answered for on the other cells", () => {
    const leased = service.leases;
    const client = { key: "client-2", mac: ASKER, hostname: null };
    const offered = leased.offer(client, undefined, now);
    expect(offered.ok).toBe(true);
    const address = offered.ok ? offered.value : 0;
    expect(leased.bind(client, address, 600, now).ok).toBe(true);
    pumpAll();
    const sw = switches[2] as SegmentSwitch;
    sw.rawFrame(sw.port(3) as SwitchPort, arpRequest(OWNER, ip(33), address));
    sw.flush();
    expect(take(3)).toHaveLength(1);
    expect((cells[2] as Cell).arpSuppressed).toBe(1);
  });

  it("when the home's service goes, the other cells stop answering", () => {
    (switches[0] as SegmentSwitch).detach(SERVICE_PORT);
    pumpAll();
    ask(ip(33));
    expect(take(2)).toEqual([]);
    pumpAll();
    expect(take(3)).toHaveLength(1);
  });

  it("a cell restarted in a new epoch gets the bindings again with the home's full announce", () => {
    // The same switch and ports (the test's stand-in for a restart): the old cell's trunk ports leave first.
    for (const peer of [0, 2]) (cells[1] as Cell).removePeer(peer);
    cells[1] = newCell(1, switches[1] as SegmentSwitch, () => now, 2);
    for (const peer of [0, 2]) expect((cells[1] as Cell).addPeer(peer).ok).toBe(true);
    ask(ip(33));
    expect(take(2)).toEqual([]);
    pumpAll();
    take(3);
    ask(ip(33));
    expect(take(2)).toHaveLength(1);
  });

  it("an answerer answers for its bindings only, never probes, gratuitous ARP or an owner asking about itself", () => {
    const answerer = new ArpAnswerer();
    answerer.set({ serviceMac: 0x02ed1a2c00fe, addresses: [[ip(40), OWNER], [ip(33), OWNER]] });
    expect(answerer.answer(arpRequest(ASKER, ip(2), ip(40)))).not.toBeNull();
    expect(answerer.answer(arpRequest(ASKER, ip(2), ip(41)))).toBeNull();
    expect(answerer.answer(arpRequest(ASKER, 0, ip(33)))).toBeNull();
    expect(answerer.answer(arpRequest(ASKER, ip(33), ip(33)))).toBeNull();
    expect(answerer.answer(arpRequest(OWNER, ip(7), ip(33)))).toBeNull();
    expect(answerer.suppressed).toBe(1);
  });

  it("a lease the home releases is withdrawn from the other cells; a renewal sends nothing", () => {
    const client = { key: "client-9", mac: ASKER, hostname: null };
    const offered = service.leases.offer(client, undefined, now);
    const address = offered.ok ? offered.value : 0;
    expect(service.leases.bind(client, address, 600, now).ok).toBe(true);
    // A second lease after it: a renewal re-inserts the first, which must not reorder the list.
    const other = { key: "client-10", mac: 0x0200_0000_0077, hostname: null };
    const second = service.leases.offer(other, undefined, now);
    expect(second.ok && service.leases.bind(other, second.value, 600, now).ok).toBe(true);
    expect(service.leases.nextBoundExpiry()).toBe(now + 600_000);
    pumpAll();
    const calls = (cells[0] as Cell).outbox(1)?.counters.calls;
    expect(service.leases.bind(client, address, 600, now + 1000).ok).toBe(true);
    pumpAll();
    expect((cells[0] as Cell).outbox(1)?.counters.calls).toBe(calls);
    expect(service.leases.release(client.key, address)).toBe(true);
    pumpAll();
    const sw = switches[2] as SegmentSwitch;
    sw.rawFrame(sw.port(3) as SwitchPort, arpRequest(OWNER, ip(33), address));
    sw.flush();
    expect(take(3)).toEqual([]);
  });

  it("a lease that ends at the home (its sweep, which the segment's alarm runs) leaves the other cells' answers", () => {
    const client = { key: "client-11", mac: ASKER, hostname: null };
    const offered = service.leases.offer(client, undefined, now);
    const address = offered.ok ? offered.value : 0;
    expect(service.leases.bind(client, address, 600, now).ok).toBe(true);
    pumpAll();
    const sw = switches[2] as SegmentSwitch;
    const askTwo = (): void => {
      sw.rawFrame(sw.port(3) as SwitchPort, arpRequest(OWNER, ip(33), address));
      sw.flush();
    };
    askTwo();
    expect(take(3)).toHaveLength(1);
    now = service.leases.nextBoundExpiry() as number;
    service.sweep(now);
    pumpAll();
    askTwo();
    expect(take(3)).toEqual([]);
  });

  it("lease changes while a peer does not answer leave one list in its queue (earlier ones superseded)", () => {
    const home = cells[0] as Cell;
    for (let n = 0; n < 40; n++) {
      const client = { key: `churn-${n}`, mac: 0x0200_0000_1000 + n, hostname: null };
      const offered = service.leases.offer(client, undefined, now);
      if (offered.ok) service.leases.bind(client, offered.value, 600, now);
      home.syncArpBindings(service);
    }
    const batch = home.take().find((call) => call.peer === 1)?.batch;
    const types = (batch?.control ?? []).map((record) => record.type);
    expect(types.filter((type) => type === "arp-bindings")).toHaveLength(1);
    expect(types.filter((type) => type === "superseded").length).toBeGreaterThan(0);
    expect(types[types.length - 1]).toBe("arp-bindings");
  });
});
