/**
 * One cell of a segment that runs as several (docs/cells.md): the cell's
 * segment switch, its trunk ports (one per peer cell, split horizon in the
 * bridge), its MAC route table, and the trunk protocol around them — what
 * goes out in each call (frames, numbered control records, full announces)
 * and what an incoming call does (generation and epoch checks, control in
 * order, frames switched to local ports only, a grant back).
 *
 * Pure: the durable layer calls `receive` for an incoming trunk call, `take`
 * at the end of every event for the calls to make, and `completed`/`failed`
 * when they return.
 */
import type { TrunkFilter } from "../bridge.ts";
import { ArpAnswerer, sameArpBindings, type ArpBindings } from "../ipam/arp-proxy.ts";
import type { MacKey } from "../mac.ts";
import { fail, ok, type Result } from "../result.ts";
import type { SegmentSwitch } from "../segment-switch.ts";
import type { ServicePort } from "../service-port.ts";
import type { SwitchPort } from "../switch-port.ts";
import { MAX_FILTER_MACS } from "../tunnel/constants.ts";
import { ANY_VLAN, MacRouteTable, RouteOutcome, type MacRoute, type MacRouteLimits } from "./mac-routes.ts";
import { unpackTrunkFrames } from "./trunk-frames.ts";
import { DEFAULT_TRUNK_QUEUE_BYTES, TrunkOutbox } from "./trunk-outbox.ts";
import type { TrunkBatch, TrunkControl, TrunkReply } from "./trunk-records.ts";

/** Trunk port ids: 0xff000000 + the peer's index. Cell i allocates client port ids i × 2^24 + k (i ≤ 254), so they never meet. */
export const TRUNK_PORT_BASE = 0xff00_0000;
/** Highest cell index (indexes are never reused while the segment exists). */
export const MAX_CELL_INDEX = 254;

/** A filter that takes nothing: a peer that has said nothing yet, or has no ports. */
export const EMPTY_TRUNK_FILTER: TrunkFilter = { ports: false, bridges: false, promiscuous: false, allMulticast: false, multicast: [], monitors: false };

export interface CellIdentity {
  index: number;
  epoch: number;
  generation: string;
}

export interface CellOptions extends MacRouteLimits {
  /** The pending batch's bound per trunk (trunkQueueBytes). */
  trunkQueueBytes?: number;
  /** The segment's queue budget, for the grant a receiver gives. */
  segmentQueueBytes: number;
  /** A static MAC of a local port moved to another cell (a resume there): the owner closes that port (4011). */
  staticLost?: (mac: MacKey) => void;
}

export type TrunkRefusalCode = "stale-generation" | "unknown-peer" | "malformed-frames";

interface Peer {
  readonly port: SwitchPort;
  readonly outbox: TrunkOutbox;
  /** What the peer last announced it wants flooded (its cell-filter). */
  filter: TrunkFilter;
  /** Next control record number expected from the peer; undefined until its first call. */
  expect: number | undefined;
}

/** The calls to make now: one batch per peer at most. */
export interface OutgoingCall {
  peer: number;
  batch: TrunkBatch;
}

/** What a cell keeps across a restart (docs/cells.md §0): the routes and filters its peers announced, their epochs. */
export interface CellSnapshot {
  routes: ReturnType<MacRouteTable["remoteState"]>["routes"];
  epochs: Array<[number, number]>;
  filters: Array<[number, TrunkFilter]>;
}

export class Cell {
  readonly routes: MacRouteTable;
  /** Counts changes to what `snapshot` returns, so the owner stores it only when it changed. */
  remoteVersion = 0;
  private readonly peers = new Map<number, Peer>();
  private sentFilter = "";
  /** Static MACs of local ports announced to peers (syncStatics). */
  private readonly statics = new Set<MacKey>();
  private filter: TrunkFilter = EMPTY_TRUNK_FILTER;
  /** This cell's ARP proxy, answering from the bindings the IPAM service's cell announced (docs/cells.md §0 item 12). */
  private readonly arp = new ArpAnswerer();
  /** The peer whose bindings `arp` holds. */
  private arpFrom: number | null = null;
  /** The local IPAM service whose bindings were announced, its version then, and what was sent. */
  private arpSource: ServicePort | null = null;
  private arpVersion = -1;
  private announcedArp: ArpBindings | null = null;

  constructor(
    readonly identity: CellIdentity,
    private readonly switcher: SegmentSwitch,
    private readonly options: CellOptions,
    private readonly clock: () => number,
  ) {
    this.routes = new MacRouteTable(identity.index, options);
    switcher.setCellHooks((mac, vlan) => this.remotePort(mac, vlan), (mac, vlan) => this.learned(mac, vlan), () => this.routes.remoteLearnedCount);
    // Bindings come with the home's announcements to this cell (epoch), never from an earlier one.
    switcher.setFloodAnswerer(null);
  }

  /** Adds the trunk to a peer cell; it gets nothing flooded until the peer announces its filter. */
  addPeer(index: number): Result<void, "invalid-peer" | "port-exists" | "mac-taken" | "invalid-mac"> {
    if (index === this.identity.index || index < 0 || index > MAX_CELL_INDEX || !Number.isInteger(index)) {
      return fail("invalid-peer", `cell ${index} cannot be a peer of cell ${this.identity.index}`);
    }
    if (this.peers.has(index)) return ok(undefined);
    const outbox = new TrunkOutbox(index, this.identity, this.options.trunkQueueBytes ?? DEFAULT_TRUNK_QUEUE_BYTES);
    const added = this.switcher.addTrunk(TRUNK_PORT_BASE + index, EMPTY_TRUNK_FILTER, {
      carry: (ingress, flags, frame, ticket) => outbox.carry(ingress, flags, frame, ticket, ticket === 0 ? 0 : this.clock()),
    });
    if (!added.ok) return added;
    this.peers.set(index, { port: added.value, outbox, filter: EMPTY_TRUNK_FILTER, expect: undefined });
    return ok(undefined);
  }

  /** Removes a peer that left the segment: its trunk port and every route from it. */
  removePeer(index: number): void {
    const peer = this.peers.get(index);
    if (peer === undefined) return;
    this.switcher.settleTickets(peer.outbox.abandon());
    this.switcher.detach(peer.port.id);
    this.routes.dropOrigin(index);
    this.peers.delete(index);
  }

  /** The outbox of a peer (counters, tests). */
  outbox(index: number): TrunkOutbox | undefined {
    return this.peers.get(index)?.outbox;
  }

  /** The trunk port to a peer. */
  trunkPort(index: number): SwitchPort | undefined {
    return this.peers.get(index)?.port;
  }

  // ---- local announcements ------------------------------------------------------

  /** A local port registered `mac` with the seq the home granted: announced to every peer. */
  claimStatic(mac: MacKey, seq: number): void {
    this.broadcastControl({ type: "mac-route", route: this.routes.claimLocal(mac, seq, this.clock()) });
  }

  /** A local port gave up `mac` (remove-mac, close): withdrawn from every peer. */
  releaseStatic(mac: MacKey): void {
    const route = this.routes.releaseLocal(mac, ANY_VLAN);
    if (route !== null) this.broadcastControl({ type: "mac-withdraw", route });
  }

  /**
   * Announces the registered MACs of local ports that are new since the last call (claimed with `seq`)
   * and withdraws those that are gone. The durable layer calls it at the end of each event, so a MAC
   * registered by HELLO, add-mac or a raw port's first frame is announced without hooks in the relay.
   */
  syncStatics(current: ReadonlySet<MacKey>, seq: number): void {
    for (const mac of current) {
      if (this.statics.has(mac)) continue;
      const held = this.routes.route(mac, ANY_VLAN);
      if (held !== undefined && held.origin !== this.identity.index && (held.seq > seq || (held.seq === seq && held.origin < this.identity.index))) {
        // Another cell holds a winning claim: the port here loses the MAC, as a second claimant does within one cell.
        this.options.staticLost?.(mac);
        continue;
      }
      this.statics.add(mac);
      this.claimStatic(mac, seq);
    }
    for (const mac of [...this.statics]) {
      if (current.has(mac)) continue;
      this.statics.delete(mac);
      this.releaseStatic(mac);
    }
  }

  /** Recomputes this cell's aggregate filter from its ports; a change is announced to every peer. */
  refreshFilter(): void {
    this.filter = aggregateFilter(this.switcher.allPorts());
    const key = JSON.stringify(this.filter);
    if (key === this.sentFilter) return;
    this.sentFilter = key;
    this.broadcastControl({ type: "cell-filter", filter: this.filter });
  }

  /**
   * Announces what the local IPAM service's ARP proxy answers for (the home only runs one) when it
   * changed, so the other cells answer ARP requests from their own ports instead of flooding them.
   */
  syncArpBindings(service: ServicePort | null): void {
    const version = service?.arpBindingsVersion ?? -1;
    if (service === this.arpSource && version === this.arpVersion) return;
    this.arpSource = service;
    this.arpVersion = version;
    const bindings = service?.arpBindings?.() ?? null;
    // A renewal or a quarantine changes the version but not the list: nothing to send.
    if (sameArpBindings(bindings, this.announcedArp)) return;
    this.announcedArp = bindings;
    this.broadcastControl({ type: "arp-bindings", bindings });
  }

  /** ARP requests this cell's proxy answered instead of flooding them. */
  get arpSuppressed(): number {
    return this.arp.suppressed;
  }

  // ---- calls --------------------------------------------------------------------

  /** The calls to make now (peers with something pending and no call in flight); full announces first where due. */
  take(): OutgoingCall[] {
    const calls: OutgoingCall[] = [];
    for (const [index, peer] of this.peers) {
      if (peer.outbox.needsFullAnnounce && !peer.outbox.busy) peer.outbox.beginFullAnnounce(this.fullAnnounce());
      const batch = peer.outbox.take(this.clock());
      if (batch !== null) calls.push({ peer: index, batch });
    }
    return calls;
  }

  /** A call to `peer` returned. */
  completed(peer: number, reply: TrunkReply): void {
    const entry = this.peers.get(peer);
    if (entry === undefined) return;
    this.switcher.settleTickets(entry.outbox.completed(reply));
    if (this.routes.observeEpoch(peer, reply.epoch) > 0) this.remoteVersion++;
  }

  /** Removes remote learned routes past their lifetime (1.5 × aging; the segment's alarm calls it). */
  age(): void {
    if (this.routes.expire(this.clock()) > 0) this.remoteVersion++;
  }

  /** The peers' routes, epochs and filters, for storage. */
  snapshot(): CellSnapshot {
    const { routes, epochs } = this.routes.remoteState();
    return { routes, epochs, filters: [...this.peers].map(([index, peer]) => [index, peer.filter]) };
  }

  /**
   * After a restart (a wake from hibernation or a reset): the peers' routes and filters as they were,
   * so this cell's ports reach the other cells at once instead of after the full announces (which
   * follow anyway, because the restart is a new epoch, and replace what was restored).
   */
  restore(snapshot: CellSnapshot): void {
    this.routes.restoreRemote(snapshot, this.clock());
    for (const [index, filter] of snapshot.filters) {
      const peer = this.peers.get(index);
      if (peer === undefined) continue;
      peer.filter = filter;
      this.switcher.setTrunkFilter(peer.port, filter);
    }
  }

  /** A call to `peer` threw; `overloaded`: the platform said so (send only probes until one passes). */
  failed(peer: number, overloaded: boolean): void {
    const outbox = this.peers.get(peer)?.outbox;
    if (outbox !== undefined) this.switcher.settleTickets(outbox.failed(overloaded, this.clock()));
  }

  /** `peer` does not exist yet: nothing goes to it until it calls or `peerExists` says it was made. */
  peerNotYet(peer: number): void {
    this.peers.get(peer)?.outbox.markAbsent();
  }

  /** `peer` was made (the home says so): calls to it may go. */
  peerExists(peer: number): void {
    this.peers.get(peer)?.outbox.peerCalled();
  }

  /** `peer` refused a call whole (not a cell of this generation yet): nothing goes to it until it calls. */
  refused(peer: number): void {
    const outbox = this.peers.get(peer)?.outbox;
    if (outbox !== undefined) this.switcher.settleTickets(outbox.refused());
  }

  /** The earliest time a call deferred by a failure's backoff may go, or null. */
  nextRetry(): number | null {
    let due: number | null = null;
    for (const peer of this.peers.values()) {
      const at = peer.outbox.retryDue;
      if (at !== null && (due === null || at < due)) due = at;
    }
    return due;
  }

  /**
   * An incoming trunk call: refused whole if it is from another generation or an unknown cell; else
   * the control records not applied yet, in order, then the frames (to local ports only).
   */
  receive(batch: TrunkBatch): Result<TrunkReply, TrunkRefusalCode> {
    if (batch.generation !== this.identity.generation) {
      return fail("stale-generation", `a trunk call of segment generation ${batch.generation} reached generation ${this.identity.generation}`);
    }
    const peer = this.peers.get(batch.from);
    if (peer === undefined) return fail("unknown-peer", `cell ${batch.from} is not a peer of cell ${this.identity.index}`);
    // Checked before anything changes: a batch whose frames do not parse is refused whole.
    const frames = batch.frames instanceof Uint8Array ? unpackTrunkFrames(batch.frames) : fail("malformed-frames", "a trunk call's frames are not a byte array");
    if (!frames.ok) return frames;
    peer.outbox.peerCalled();
    const known = this.routes.epochOf(batch.from);
    if (this.routes.observeEpoch(batch.from, batch.epoch) > 0) this.remoteVersion++;
    if (known !== undefined && batch.epoch > known) {
      // The peer reset: it lost our routes and its control numbering starts over.
      peer.expect = undefined;
      peer.outbox.needsFullAnnounce = true;
    }
    if (peer.expect === undefined) peer.expect = batch.controlFrom;
    this.applyControl(batch.from, peer, batch);
    if (frames.value.length > 0) this.switcher.trunkReceive(peer.port, frames.value);
    return ok({ epoch: this.identity.epoch, controlAck: peer.expect ?? batch.controlFrom, grantBytes: this.grant() });
  }

  // ---- internals ----------------------------------------------------------------

  private applyControl(from: number, peer: Peer, batch: TrunkBatch): void {
    const expect = peer.expect ?? batch.controlFrom;
    const start = Math.max(0, expect - batch.controlFrom);
    // A gap (numbers skipped) is only ever a replaced queue, which starts with routes-reset: accept it.
    if (batch.controlFrom > expect && batch.control[0]?.type !== "routes-reset") return;
    for (let i = start; i < batch.control.length; i++) this.applyOne(from, peer, batch.control[i] as TrunkControl);
    if (start < batch.control.length) this.remoteVersion++;
    peer.expect = Math.max(expect, batch.controlFrom + batch.control.length);
  }

  private applyOne(from: number, peer: Peer, record: TrunkControl): void {
    const now = this.clock();
    switch (record.type) {
      case "mac-route": {
        const route: MacRoute = { ...record.route, origin: from };
        if (this.routes.apply(route, now) === RouteOutcome.LocalLost) this.lose(route);
        return;
      }
      case "mac-withdraw":
        this.routes.withdraw(record.route.mac, record.route.vlan, record.route.seq, from, now);
        return;
      case "cell-filter":
        peer.filter = record.filter;
        this.switcher.setTrunkFilter(peer.port, record.filter);
        return;
      case "arp-bindings":
        this.setArp(from, record.bindings);
        return;
      case "superseded":
        return;
      case "routes-reset":
        if (this.arpFrom === from) this.setArp(from, null);
        this.routes.dropOrigin(from);
        peer.filter = EMPTY_TRUNK_FILTER;
        this.switcher.setTrunkFilter(peer.port, EMPTY_TRUNK_FILTER);
        return;
    }
  }

  private setArp(from: number, bindings: ArpBindings | null): void {
    this.arp.set(bindings);
    this.arpFrom = bindings === null ? null : from;
    this.switcher.setFloodAnswerer(this.arp.active ? this.arp : null);
  }

  /** A peer's route beat this cell's own: forget the learned entry, or have the owner close the port of a moved static MAC. */
  private lose(route: MacRoute): void {
    if (route.kind === "learned") this.switcher.forgetLearned(route.mac, route.vlan);
    else this.options.staticLost?.(route.mac);
  }

  /** Where unicast to a MAC with no local entry goes: the trunk to the cell that announced it. */
  private remotePort(mac: MacKey, vlan: number): number | undefined {
    const owner = this.routes.owner(mac, vlan);
    if (owner === undefined || owner === this.identity.index) return undefined;
    return this.peers.get(owner)?.port.id;
  }

  /** A bridge port here learned `mac`: announce it (seq above any remote route) unless a static route owns it. */
  private learned(mac: MacKey, vlan: number): void {
    const route = this.routes.learnLocal(mac, vlan, this.clock());
    if (route !== null) this.broadcastControl({ type: "mac-route", route });
  }

  private broadcastControl(record: TrunkControl): void {
    for (const peer of this.peers.values()) peer.outbox.queueControl(record);
  }

  /** Everything a peer needs after a reset or overflow (after routes-reset): the filter and every own route. */
  private fullAnnounce(): TrunkControl[] {
    const records: TrunkControl[] = [{ type: "cell-filter", filter: this.filter }];
    for (const route of this.routes.localRoutes()) records.push({ type: "mac-route", route });
    if (this.announcedArp !== null) records.push({ type: "arp-bindings", bindings: this.announcedArp });
    return records;
  }

  /** Bytes a sender may put in its next call: the pending bound scaled by the queue budget left, 0 below 1/8. */
  private grant(): number {
    const queueBytes = this.options.trunkQueueBytes ?? DEFAULT_TRUNK_QUEUE_BYTES;
    const left = 1 - this.switcher.queuedBytes / this.options.segmentQueueBytes;
    const grant = Math.floor(queueBytes * Math.max(0, left));
    return grant < queueBytes / 8 ? 0 : grant;
  }
}

/**
 * The union of a cell's client ports' filters, trunks excluded. A service port (only the home runs them)
 * counts as a port, so broadcasts from every cell reach the segment's DHCP server and ARP proxy.
 */
export function aggregateFilter(ports: Iterable<SwitchPort>): TrunkFilter {
  let any = false;
  let bridges = false;
  let promiscuous = false;
  let allMulticast = false;
  let monitors = false;
  const groups = new Set<MacKey>();
  for (const port of ports) {
    if (!port.open || port.mode === "trunk") continue;
    const { kind, filter } = port.state;
    if (kind === "monitor") {
      monitors = true;
      continue;
    }
    any = true;
    bridges ||= kind === "bridge";
    promiscuous ||= filter.promiscuous;
    allMulticast ||= filter.allMulticast;
    for (const group of filter.multicast) groups.add(group);
  }
  allMulticast ||= groups.size > MAX_FILTER_MACS;
  const multicast = allMulticast ? [] : [...groups].sort((a, b) => a - b);
  return { ports: any, bridges, promiscuous, allMulticast, multicast, monitors };
}
