import { countDrop, DropReason, newPortCounters, type PortCountersData } from "./counters.ts";
import { ETH_DESTINATION, ETH_HEADER_LEN, ETH_SOURCE, ETH_TYPE, TPID_8021Q, VLAN_HEADER_LEN, VLAN_TAG_LEN, VLAN_TCI } from "./ethernet.ts";
import { ForwardingTable, LearnOutcome, type FdbSummary } from "./fdb.ts";
import { BROADCAST_MAC, formatMac, isUsableUnicastMac, macKeyAt, type MacKey } from "./mac.ts";
import { fail, ok, type Result } from "./result.ts";

/*
 * The forwarding decision of one segment, for a batch of frames from one
 * ingress port (Linux br_input.c ingress checks + br_forward.c delivery).
 *
 *   ingress checks, in order (first failing check is the one counted):
 *     monitor port            → MonitorPort   (a monitor only listens)
 *     < 14 bytes, or tagged < 18 → Runt
 *     > max (+4 if tagged)    → Oversize
 *     group-bit source        → MulticastSource
 *     member port, source not registered on it; or all-zero source → SpoofedSource
 *     bridge port, new source, port or segment learn limit reached → LearnLimit
 *   decision:
 *     unicast, known, owner = ingress  → Local
 *     unicast, known                   → the owner only
 *     broadcast / multicast / unknown  → every other port whose filter accepts
 *     accepted by no port              → NoReceiver
 *   a forwarded frame is also copied to every monitor port.
 */

/** The kinds of port (the tunnel's u8 code is the index): member, bridge or monitor. */
export const PORT_KINDS = ["member", "bridge", "monitor"] as const;
export type PortKind = (typeof PORT_KINDS)[number];

/** Which flooded frames a port wants (lguest's promiscuous flag + NetKVM's packet filter). */
export interface ReceiveFilter {
  promiscuous: boolean;
  allMulticast: boolean;
  multicast: readonly MacKey[];
}

export interface BridgeConfig {
  /** Untagged maximum frame size (no FCS); a tagged frame may be 4 bytes longer. */
  maxFrameSize: number;
  learnLimitPerPort: number;
  learnLimitPerSegment: number;
  agingMs: number;
}

export const DEFAULT_BRIDGE_CONFIG: Readonly<BridgeConfig> = {
  maxFrameSize: 1514,
  learnLimitPerPort: 64,
  learnLimitPerSegment: 4096,
  agingMs: 300_000,
};

export interface PortSpec {
  kind: PortKind;
  /** MACs the port registers: static entries, and for a member port the only sources it may use. */
  macs: readonly MacKey[];
  filter: ReceiveFilter;
  /** Learned-entry limit for a bridge port; defaults to the segment's learnLimitPerPort. */
  learnLimit?: number;
}

/** Checks a configuration: frame size 60..65535, non-negative integer limits, a positive aging time. */
export function checkBridgeConfig(config: BridgeConfig): Result<BridgeConfig, "invalid-config"> {
  const { maxFrameSize, learnLimitPerPort, learnLimitPerSegment, agingMs } = config;
  if (!Number.isInteger(maxFrameSize) || maxFrameSize < 60 || maxFrameSize > 65535) {
    return fail("invalid-config", `maxFrameSize ${maxFrameSize} must be an integer from 60 to 65535`);
  }
  if (!isCount(learnLimitPerPort) || !isCount(learnLimitPerSegment)) {
    return fail("invalid-config", `learn limits (${learnLimitPerPort}, ${learnLimitPerSegment}) must be non-negative integers`);
  }
  if (!Number.isFinite(agingMs) || agingMs <= 0) {
    return fail("invalid-config", `agingMs ${agingMs} must be a positive number of milliseconds`);
  }
  return ok(config);
}

function isCount(value: number): boolean {
  return Number.isInteger(value) && value >= 0;
}

/** Epochs are unique across every ForwardOutcome, so a port's cached batch can never be mistaken for another call's. */
let nextEpoch = 1;
const NO_FRAMES: readonly Uint8Array[] = [];

/**
 * The result of one `forward` call, reused across calls so the hot path
 * allocates nothing: `verdicts[i]` is 0 if frame i was forwarded, else its
 * DropReason; each egress port has one batch of frames in ingress order. The
 * frames are the caller's own views (no copy). Everything here is valid until
 * the next `forward` (or `clear`) on this outcome.
 */
export class ForwardOutcome {
  /** Per input frame: 0 = forwarded to at least one port, else the DropReason code. */
  readonly verdicts: number[] = [];
  forwarded = 0;
  dropped = 0;
  /** Identifies the current call; bridge ports compare it to reuse their batch without a Map lookup. */
  epoch = 0;
  private readonly ports: number[] = [];
  private readonly batches = new Map<number, Uint8Array[]>();

  /** Port ids that received frames in the last call, in order of first delivery. */
  egressPorts(): readonly number[] {
    return this.ports;
  }

  /** Frames for `port` from the last call, in ingress order; empty if none. */
  framesFor(port: number): readonly Uint8Array[] {
    const batch = this.batches.get(port);
    return batch === undefined ? NO_FRAMES : batch;
  }

  /** Starts a new call: clears the previous batches (keeping their arrays) and verdicts. */
  reset(): void {
    this.clear();
    this.epoch = nextEpoch++;
  }

  /** Releases references to the last call's frames. */
  clear(): void {
    const ports = this.ports;
    for (let i = 0; i < ports.length; i++) {
      const batch = this.batches.get(ports[i] as number);
      if (batch !== undefined) empty(batch);
    }
    empty(ports);
    empty(this.verdicts);
    this.forwarded = 0;
    this.dropped = 0;
  }

  /** Opens `port`'s batch for the current call (once per port per call); used by Bridge. */
  openBatch(port: number): Uint8Array[] {
    let batch = this.batches.get(port);
    if (batch === undefined) {
      batch = [];
      this.batches.set(port, batch);
    }
    this.ports.push(port);
    return batch;
  }
}

/** Empties an array in place; pop() stays on V8's fast path where `length = 0` calls into the runtime. */
function empty(array: unknown[]): void {
  while (array.length > 0) array.pop();
}

const KIND_MEMBER = 0;
const KIND_BRIDGE = 1;
const KIND_MONITOR = 2;
const KIND_CODES: Readonly<Record<PortKind, number>> = { member: KIND_MEMBER, bridge: KIND_BRIDGE, monitor: KIND_MONITOR };

/** A port as the hot path sees it: flat fields, filter flags unpacked, its current egress batch cached. */
class BridgePort {
  promiscuous = false;
  allMulticast = false;
  multicast = new Set<MacKey>();
  readonly counters = newPortCounters();
  /** The batch in `batch` belongs to the ForwardOutcome call with this epoch. */
  epoch = 0;
  batch: Uint8Array[] = [];

  constructor(
    readonly id: number,
    readonly kind: number,
    readonly learnLimit: number | undefined,
  ) {}

  /** Unpacks a filter into flags and a Set (once per change, not per frame). */
  setFilter(filter: ReceiveFilter): void {
    this.promiscuous = filter.promiscuous;
    this.allMulticast = filter.allMulticast;
    this.multicast = new Set(filter.multicast);
  }
}

export class Bridge {
  private config: BridgeConfig;
  private readonly fdb: ForwardingTable;
  private readonly ports = new Map<number, BridgePort>();
  /** Member and bridge ports, for flooding; monitors are kept apart because they get every forwarded frame. */
  private receivers: BridgePort[] = [];
  private monitors: BridgePort[] = [];
  /**
   * Look-ups remembered within one batch from a member port. A member never learns, so the table cannot
   * change while its batch is switched (aging runs once, before the batch): the last source's verdict
   * and the last destination's owner stay valid, and a batch of frames between the same two stations
   * pays for one look-up of each instead of one per frame. Reset by every forward().
   */
  private memoSource = -1;
  private memoSourceVerdict = 0;
  private memoDestination = -1;
  private memoVlan = -1;
  private memoOwner: number | undefined = undefined;
  /** GSO super-frames of the current forward() call: exempt from maxFrameSize (the caller capped them). */
  private superFrames: ReadonlySet<Uint8Array> | null = null;

  /** Creates an empty segment; `clock` returns ms and is read once per batch (never Date.now() here). */
  constructor(
    config: BridgeConfig,
    private readonly clock: () => number,
  ) {
    this.config = { ...config };
    this.fdb = new ForwardingTable(config);
  }

  /** Adds a port and registers its MACs as static entries; all-or-nothing. */
  addPort(id: number, spec: PortSpec): Result<void, "port-exists" | "mac-taken" | "invalid-mac"> {
    if (this.ports.has(id)) return fail("port-exists", `port ${id} is already attached`);
    if (spec.kind === "monitor" && spec.macs.length > 0) return monitorMacError(id);
    const invalid = this.firstUnregistrable(id, spec.macs);
    if (invalid !== undefined) return invalid;
    const port = new BridgePort(id, KIND_CODES[spec.kind], spec.learnLimit);
    port.setFilter(spec.filter);
    for (const mac of spec.macs) this.fdb.addStatic(mac, id);
    if (spec.learnLimit !== undefined) this.fdb.setPortLimit(id, spec.learnLimit);
    this.ports.set(id, port);
    this.rebuildPortLists();
    return ok(undefined);
  }

  /** Detaches a port and flushes its forwarding entries; unknown ids are ignored. */
  removePort(id: number): void {
    if (!this.ports.delete(id)) return;
    this.fdb.flushPort(id);
    this.rebuildPortLists();
  }

  /** True if `id` is attached. */
  hasPort(id: number): boolean {
    return this.ports.has(id);
  }

  /** Registers one more MAC for a port (a guest changed or added an address). */
  addMac(id: number, mac: MacKey): Result<void, "mac-taken" | "invalid-mac" | "no-port"> {
    const port = this.ports.get(id);
    if (port === undefined) return fail("no-port", `port ${id} is not attached`);
    if (port.kind === KIND_MONITOR) return monitorMacError(id);
    return this.fdb.addStatic(mac, id);
  }

  /** Unregisters a MAC from a port; a no-op if the port does not own it. */
  removeMac(id: number, mac: MacKey): void {
    this.fdb.removeStatic(mac, id);
  }

  /** Replaces a port's receive filter; unknown ids are ignored. */
  setFilter(id: number, filter: ReceiveFilter): void {
    this.ports.get(id)?.setFilter(filter);
  }

  /** Applies a new configuration; existing learned entries are kept even above lowered limits. */
  reconfigure(config: BridgeConfig): void {
    this.config = { ...config };
    this.fdb.reconfigure(config);
  }

  /**
   * Decides the fate of a batch from `ingress`: fills `out` (reset first) with a
   * verdict per frame and one batch per egress port. An unknown ingress port
   * (already removed) gets every frame answered with DropReason.Reset and
   * counts nothing, since there is no port to count on. Frames in `superFrames`
   * (GSO super-frames, already validated and capped by the caller) skip the
   * maxFrameSize check.
   */
  forward(ingress: number, frames: readonly Uint8Array[], out: ForwardOutcome, superFrames: ReadonlySet<Uint8Array> | null = null): void {
    out.reset();
    this.superFrames = superFrames;
    const port = this.ports.get(ingress);
    if (port === undefined) {
      for (let i = 0; i < frames.length; i++) out.verdicts.push(DropReason.Reset);
      out.dropped = frames.length;
      return;
    }
    this.memoSource = -1;
    this.memoDestination = -1;
    const now = this.clock();
    // Age on traffic too, so a busy segment never needs its alarm to stay bounded; one comparison per batch.
    if (now >= (this.fdb.nextExpiry() ?? Infinity)) this.fdb.ageOut(now);
    for (let i = 0; i < frames.length; i++) {
      const verdict = this.forwardOne(port, frames[i] as Uint8Array, out, now);
      // push, not index assignment, keeps the array packed (no holes) for V8.
      out.verdicts.push(verdict);
      if (verdict === 0) {
        out.forwarded++;
      } else {
        out.dropped++;
        countDrop(port.counters, verdict as DropReason);
      }
    }
  }

  /** Removes learned entries past their aging time (call from the alarm); returns how many. */
  ageOut(): number {
    return this.fdb.ageOut(this.clock());
  }

  /** When `ageOut` next has work (ms, same clock), or undefined if nothing is learned. */
  nextAgingDeadline(): number | undefined {
    return this.fdb.nextExpiry();
  }

  /** The live counters of a port (the caller may add egress-side drops to them), or undefined. */
  counters(id: number): PortCountersData | undefined {
    return this.ports.get(id)?.counters;
  }

  /** Forwarding table counts and entries for APIs. */
  fdbSummary(): FdbSummary {
    return this.fdb.summary(this.clock());
  }

  /** One frame: counts it received, runs the ingress checks, learns, and delivers; returns 0 or a DropReason. */
  private forwardOne(port: BridgePort, frame: Uint8Array, out: ForwardOutcome, now: number): number {
    const length = frame.length;
    port.counters.rxFrames++;
    port.counters.rxBytes += length;
    const vlan = this.ingressVlan(port, frame);
    if (vlan < 0) return -vlan;
    const refused = this.checkSource(port, frame, vlan, now);
    if (refused !== 0) return refused;
    const destination = macKeyAt(frame, ETH_DESTINATION);
    if (((frame[ETH_DESTINATION] as number) & 1) === 0) {
      const owner = this.ownerOf(port, destination, vlan);
      if (owner !== undefined) return this.forwardKnown(port, owner, frame, out);
    }
    return this.flood(port, destination, frame, out);
  }

  /**
   * Length and kind checks that need only the bytes: returns the VLAN id
   * (0 untagged) or a negated DropReason, so the hot path returns one number.
   */
  private ingressVlan(port: BridgePort, frame: Uint8Array): number {
    if (port.kind === KIND_MONITOR) return -DropReason.MonitorPort;
    const length = frame.length;
    if (length < ETH_HEADER_LEN) return -DropReason.Runt;
    let max = this.config.maxFrameSize;
    let vlan = 0;
    if (frame[ETH_TYPE] === TPID_8021Q >> 8 && frame[ETH_TYPE + 1] === (TPID_8021Q & 0xff)) {
      if (length < VLAN_HEADER_LEN) return -DropReason.Runt;
      max += VLAN_TAG_LEN;
      vlan = (((frame[VLAN_TCI] as number) & 0x0f) << 8) | (frame[VLAN_TCI + 1] as number);
    }
    return length > max && this.superFrames?.has(frame) !== true ? -DropReason.Oversize : vlan;
  }

  /** Source rules: no group source; a member only sends from its registered MACs; a bridge port learns within limits. */
  private checkSource(port: BridgePort, frame: Uint8Array, vlan: number, now: number): number {
    if (((frame[ETH_SOURCE] as number) & 1) === 1) return DropReason.MulticastSource;
    const source = macKeyAt(frame, ETH_SOURCE);
    if (source === 0) return DropReason.SpoofedSource;
    if (port.kind === KIND_MEMBER) {
      if (source !== this.memoSource) {
        this.memoSource = source;
        this.memoSourceVerdict = this.fdb.staticOwner(source) === port.id ? 0 : DropReason.SpoofedSource;
      }
      return this.memoSourceVerdict;
    }
    const learned = this.fdb.learn(source, vlan, port.id, now);
    return learned === LearnOutcome.PortLimit || learned === LearnOutcome.SegmentLimit ? DropReason.LearnLimit : 0;
  }

  /** The port behind a unicast destination, or undefined; remembered within a member port's batch (see memoSource). */
  private ownerOf(port: BridgePort, destination: MacKey, vlan: number): number | undefined {
    if (port.kind !== KIND_MEMBER) return this.fdb.lookup(destination, vlan);
    if (destination !== this.memoDestination || vlan !== this.memoVlan) {
      this.memoDestination = destination;
      this.memoVlan = vlan;
      this.memoOwner = this.fdb.lookup(destination, vlan);
    }
    return this.memoOwner;
  }

  /** Known unicast: the owner only (it accepts its own MAC by definition), then the monitors. */
  private forwardKnown(port: BridgePort, owner: number, frame: Uint8Array, out: ForwardOutcome): number {
    if (owner === port.id) return DropReason.Local;
    const target = this.ports.get(owner);
    // The table only holds entries of attached ports; a missing one would be a bug, so treat it as unknown.
    if (target === undefined) return this.flood(port, macKeyAt(frame, ETH_DESTINATION), frame, out);
    deliver(target, frame, out);
    this.mirror(frame, out);
    return 0;
  }

  /** Broadcast, multicast and unknown unicast: every other port whose filter accepts, then the monitors. */
  private flood(port: BridgePort, destination: MacKey, frame: Uint8Array, out: ForwardOutcome): number {
    const group = ((frame[ETH_DESTINATION] as number) & 1) === 1;
    const broadcast = destination === BROADCAST_MAC;
    const receivers = this.receivers;
    let delivered = 0;
    for (let i = 0; i < receivers.length; i++) {
      const target = receivers[i] as BridgePort;
      if (target === port || !accepts(target, destination, group, broadcast)) continue;
      deliver(target, frame, out);
      delivered++;
    }
    if (delivered === 0) return DropReason.NoReceiver;
    this.mirror(frame, out);
    return 0;
  }

  /** Copies a forwarded frame to every monitor port. */
  private mirror(frame: Uint8Array, out: ForwardOutcome): void {
    const monitors = this.monitors;
    for (let i = 0; i < monitors.length; i++) deliver(monitors[i] as BridgePort, frame, out);
  }

  /** Returns the first reason `macs` cannot all be registered to port `id`, or undefined. */
  private firstUnregistrable(id: number, macs: readonly MacKey[]): Result<never, "mac-taken" | "invalid-mac"> | undefined {
    for (const mac of macs) {
      if (!isUsableUnicastMac(mac)) {
        return fail("invalid-mac", `${formatMac(mac)} is not a usable unicast address (multicast or all zeros)`);
      }
      const owner = this.fdb.staticOwner(mac);
      if (owner !== undefined && owner !== id) return fail("mac-taken", `${formatMac(mac)} is already registered by port ${owner}`);
    }
    return undefined;
  }

  private rebuildPortLists(): void {
    const all = [...this.ports.values()];
    this.receivers = all.filter((port) => port.kind !== KIND_MONITOR);
    this.monitors = all.filter((port) => port.kind === KIND_MONITOR);
  }
}

/** Monitors only listen, so a MAC of theirs could never be a source and unicast to it would have no sensible owner. */
function monitorMacError(id: number): Result<never, "invalid-mac"> {
  return fail("invalid-mac", `port ${id} is a monitor port: it is receive-only and cannot register MACs`);
}

/**
 * Whether a port takes a flooded frame: promiscuous takes everything; broadcast
 * goes to all; multicast needs allMulticast or a listed group; unknown unicast
 * goes only to bridge ports (stations may live behind them). A member port's own
 * MACs never arrive here: they are static entries, so they take the known path.
 */
function accepts(port: BridgePort, destination: MacKey, group: boolean, broadcast: boolean): boolean {
  if (port.promiscuous || broadcast) return true;
  if (group) return port.allMulticast || port.multicast.has(destination);
  return port.kind === KIND_BRIDGE;
}

/** The one delivery function for unicast, flood and mirror: appends to the port's batch and counts tx. */
function deliver(port: BridgePort, frame: Uint8Array, out: ForwardOutcome): void {
  if (port.epoch !== out.epoch) {
    port.batch = out.openBatch(port.id);
    port.epoch = out.epoch;
  }
  port.batch.push(frame);
  port.counters.txFrames++;
  port.counters.txBytes += frame.length;
}
