import { DropReason } from "./counters.ts";
import {
  DEFAULT_MAX_FRAME_SIZE, ETH_DESTINATION, ETH_HEADER_LEN, ETH_SOURCE, ETH_TYPE, TPID_8021Q, VLAN_HEADER_LEN, VLAN_TAG_LEN, VLAN_TCI,
} from "./ethernet.ts";
import { DEFAULT_FDB_CONFIG, ForwardingTable, LearnOutcome, type FdbSummary } from "./fdb.ts";
import { BROADCAST_MAC, formatMac, isUsableUnicastMac, macKeyAt, type MacKey } from "./mac.ts";
import type { PortKind } from "./port-kind.ts";
import { fail, ok, type Result } from "./result.ts";

/*
 * The forwarding decision of one segment, for a batch of frames from one
 * ingress port (Linux br_input.c ingress checks + br_forward.c delivery).
 *
 *   ingress checks, in order (first failing check is the one counted):
 *     marked by the caller    → that DropReason (decided before switching, e.g. Malformed)
 *     monitor port            → MonitorPort   (a monitor only listens)
 *     < 14 bytes, or tagged < 18 → Runt
 *     tagged, port without VLANs → Malformed
 *     > the port's max (+4 if tagged; GSO super-frames exempt) → Oversize
 *     group-bit source        → MulticastSource
 *     member port, source not registered on it; bridge port, source registered on another port;
 *       or all-zero source → SpoofedSource
 *     bridge port, new source, port or segment learn limit reached → LearnLimit
 *   decision (Local first, then the caller's policer: RateLimited, or StormControl for flooded frames):
 *     unicast, known, owner = ingress  → Local
 *     unicast, known                   → the owner only
 *     broadcast offered to the interceptor, taken → Suppressed (forwarded to nobody, verdict 0)
 *     broadcast / multicast / unknown  → every other port whose filter accepts
 *     accepted by no port              → NoReceiver
 *   a forwarded frame is also copied to every monitor port.
 *
 *   trunk ports (cells, docs/cells.md §4.4), when a segment runs as several cells:
 *     ingress from a trunk: length checks only (the origin cell checked the source), no learning
 *     known unicast from a trunk to another trunk's route → NoReceiver (split horizon: stale route)
 *     flooded from a trunk → local ports only, never another trunk (split horizon)
 *     flooded to a trunk → by the peer cell's aggregate TrunkFilter (no ports: nothing)
 *     unicast with no local entry → the remote route hook (MAC routes of other cells)
 *     mirror: the ingress cell copies to its monitors and sends a mirror-only copy to each peer
 *     with monitors that does not get the frame anyway; a trunk's frames go to local monitors only
 *
 * The bridge decides and counts nothing: the segment switch owns the counters.
 */

/** A bridge port's kind: a PortKind, or `trunk` (a peer cell of the same segment; never a client's kind). */
export type BridgePortKind = PortKind | "trunk";

/** What a peer cell wants flooded to it: the union of its ports' filters (docs/cells.md record 0x43). */
export interface TrunkFilter {
  /** The peer has ports (broadcast goes to it). */
  ports: boolean;
  /** The peer has a bridge port (unknown unicast goes to it). */
  bridges: boolean;
  promiscuous: boolean;
  allMulticast: boolean;
  multicast: readonly MacKey[];
  /** The peer has a monitor port (it gets a mirror-only copy of frames it would not receive). */
  monitors: boolean;
}

/** Where a MAC without a local entry lives: a trunk port id, or undefined (cells; see Bridge.setRemoteLookup). */
export type RemoteLookup = (mac: MacKey, vlan: number) => number | undefined;

/** Told when a bridge port learned a MAC or saw it move (cells announce it as a MAC route). */
export type LearnListener = (mac: MacKey, vlan: number, port: number) => void;

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

export const DEFAULT_BRIDGE_CONFIG: Readonly<BridgeConfig> = { maxFrameSize: DEFAULT_MAX_FRAME_SIZE, ...DEFAULT_FDB_CONFIG };

export interface PortSpec {
  kind: BridgePortKind;
  /** MACs the port registers: static entries, and for a member port the only sources it may use. */
  macs: readonly MacKey[];
  filter: ReceiveFilter;
  /** Learned-entry limit for a bridge port; defaults to the segment's learnLimitPerPort. */
  learnLimit?: number;
  /** The port's own untagged frame limit (no LargeFrames: 1514); the segment's maxFrameSize applies too. Default: none. */
  maxFrameSize?: number;
  /** Whether the port may send 802.1Q-tagged frames (feature Vlan). Default: true. */
  vlan?: boolean;
  /** MACs the port holds by its join token: they may replace entries learned behind other ports. Default: none. */
  claims?: readonly MacKey[];
}

/**
 * Per-frame marks a caller may pass with a batch: 0 is a plain frame, FRAME_SUPER a GSO super-frame
 * (validated and capped by the caller, so exempt from maxFrameSize), and a positive number is a
 * DropReason the caller already decided (the frame is not looked at).
 */
export const FRAME_SUPER = -1;
/** Mark for a frame from a trunk that only the monitors take (a mirror-only copy, docs/cells.md §5.9). */
export const FRAME_MIRROR_ONLY = -2;

/** How a frame reached a port, packed with its batch index in each delivery (see ForwardOutcome). */
export const DeliveryFlag = {
  /** Known unicast to the port's own MAC. */
  Unicast: 0,
  /** Flooded: broadcast, multicast or unknown unicast. */
  Flooded: 1,
  /** A monitor's copy. */
  Mirrored: 2,
} as const;

/** The batch index of a packed delivery. */
export function deliveryIndex(delivery: number): number {
  return delivery >>> 2;
}

/** The DeliveryFlag of a packed delivery. */
export function deliveryFlag(delivery: number): number {
  return delivery & 3;
}

/**
 * Ingress policing of one forward() call: asked for every frame that passed the ingress checks once its
 * path is known (`flooded`: broadcast, multicast or unknown unicast); returns 0 to admit it or the
 * DropReason that refuses it (rate-limited, storm-control). A refused frame is delivered nowhere.
 */
export type AdmitFrame = (bytes: number, flooded: boolean) => number;

/**
 * Offered every broadcast frame that passed the ingress checks, before it is flooded; true takes it
 * (it is then forwarded to nobody, counted in `ForwardOutcome.suppressed`, and its verdict is 0).
 */
export type BroadcastInterceptor = (frame: Uint8Array, ingress: number) => boolean;

/** Epochs are unique across every ForwardOutcome, so a port's cached batch can never be mistaken for another call's. */
let nextEpoch = 1;
const NO_DELIVERIES: readonly number[] = [];

/**
 * The result of one `forward` call, reused across calls so the hot path
 * allocates nothing: `verdicts[i]` is 0 if frame i was forwarded, else its
 * DropReason; each egress port has one list of deliveries in ingress order,
 * each a number packing the frame's batch index and its DeliveryFlag
 * (`index << 2 | flag`; read with deliveryIndex / deliveryFlag), so the
 * caller finds the frame and its metadata by index. Everything here is valid
 * until the next `forward` (or `clear`) on this outcome.
 */
export class ForwardOutcome {
  /** Per input frame: 0 = forwarded to at least one port, else the DropReason code. */
  readonly verdicts: number[] = [];
  forwarded = 0;
  dropped = 0;
  /** Broadcast frames the interceptor took (included in `forwarded`). */
  suppressed = 0;
  /** Identifies the current call; bridge ports compare it to reuse their batch without a Map lookup. */
  epoch = 0;
  private readonly ports: number[] = [];
  private readonly batches = new Map<number, number[]>();

  /** Port ids that received frames in the last call, in order of first delivery. */
  egressPorts(): readonly number[] {
    return this.ports;
  }

  /** Packed deliveries to `port` from the last call, in ingress order; empty if none. */
  deliveriesFor(port: number): readonly number[] {
    const batch = this.batches.get(port);
    return batch === undefined ? NO_DELIVERIES : batch;
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
    this.suppressed = 0;
  }

  /**
   * Drops `port`'s batch array: ids are never reused, so without this every port that ever received a
   * frame would leave an entry behind (unbounded under connection churn).
   */
  forget(port: number): void {
    this.batches.delete(port);
  }

  /** How many ports have a batch array (kept between calls); bounded by the attached ports. */
  get batchArrays(): number {
    return this.batches.size;
  }

  /** Opens `port`'s batch for the current call (once per port per call); used by Bridge. */
  openBatch(port: number): number[] {
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
const KIND_TRUNK = 3;
const KIND_CODES: Readonly<Record<BridgePortKind, number>> = { member: KIND_MEMBER, bridge: KIND_BRIDGE, monitor: KIND_MONITOR, trunk: KIND_TRUNK };

/** A port as the hot path sees it: flat fields, filter flags unpacked, its current egress batch cached. */
class BridgePort {
  promiscuous = false;
  allMulticast = false;
  multicast = new Set<MacKey>();
  /** Takes broadcast (every port; a trunk only while its peer has ports). */
  takesBroadcast = true;
  /** Takes unknown unicast (a bridge port; a trunk while its peer has one). */
  takesUnknown: boolean;
  /** A trunk whose peer has monitors. */
  peerMonitors = false;
  /** The batch in `batch` belongs to the ForwardOutcome call with this epoch. */
  epoch = 0;
  batch: number[] = [];

  constructor(
    readonly id: number,
    readonly kind: number,
    /** The port's own untagged frame limit (Infinity: only the segment's). */
    readonly frameCap: number,
    readonly vlan: boolean,
  ) {
    this.takesUnknown = kind === KIND_BRIDGE;
  }

  /** Unpacks a filter into flags and a Set (once per change, not per frame). */
  setFilter(filter: ReceiveFilter): void {
    this.promiscuous = filter.promiscuous;
    this.allMulticast = filter.allMulticast;
    this.multicast = new Set(filter.multicast);
  }

  /** A trunk's filter: what its peer cell's ports want, as one port. */
  setTrunkFilter(filter: TrunkFilter): void {
    this.setFilter(filter);
    this.takesBroadcast = filter.ports;
    this.takesUnknown = filter.bridges || filter.promiscuous;
    this.peerMonitors = filter.monitors;
  }
}

export class Bridge {
  private config: BridgeConfig;
  private readonly fdb: ForwardingTable;
  private readonly ports = new Map<number, BridgePort>();
  /** Member and bridge ports, for flooding; monitors are kept apart because they get every forwarded frame. */
  private receivers: BridgePort[] = [];
  private monitors: BridgePort[] = [];
  /** Trunk ports (cells), for mirror-only copies. */
  private trunks: BridgePort[] = [];
  private remoteLookup: RemoteLookup | null = null;
  private learnListener: LearnListener | null = null;
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
  /** The marks of the current forward() call (see FRAME_SUPER), or null. */
  private marks: readonly number[] | null = null;
  private interceptor: BroadcastInterceptor | null = null;
  /** The policer of the current forward() call, or null (no limits); `admitUnicast`: whether known unicast is policed too. */
  private admit: AdmitFrame | null = null;
  private admitUnicast = false;

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
    const invalid = this.firstUnregistrable(id, spec.macs, spec.claims ?? []);
    if (invalid !== undefined) return invalid;
    const port = new BridgePort(id, KIND_CODES[spec.kind], spec.maxFrameSize ?? Infinity, spec.vlan ?? true);
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

  /**
   * Registers one more MAC for a port (a guest changed or added an address); `claimed`: the port's join
   * token binds it, so it may replace an entry learned behind another port.
   */
  addMac(id: number, mac: MacKey, claimed = false): Result<void, "mac-taken" | "invalid-mac" | "no-port"> {
    const port = this.ports.get(id);
    if (port === undefined) return fail("no-port", `port ${id} is not attached`);
    if (port.kind === KIND_MONITOR) return monitorMacError(id);
    const invalid = this.firstUnregistrable(id, [mac], claimed ? [mac] : []);
    return invalid ?? this.fdb.addStatic(mac, id);
  }

  /** The port that registered `mac`, or undefined. */
  staticOwner(mac: MacKey): number | undefined {
    return this.fdb.staticOwner(mac);
  }

  /** Unregisters a MAC from a port; a no-op if the port does not own it. */
  removeMac(id: number, mac: MacKey): void {
    this.fdb.removeStatic(mac, id);
  }

  /** Replaces a port's receive filter; unknown ids are ignored. */
  setFilter(id: number, filter: ReceiveFilter): void {
    this.ports.get(id)?.setFilter(filter);
  }

  /** Replaces a trunk port's filter (the peer cell's aggregate); unknown or non-trunk ids are ignored. */
  setTrunkFilter(id: number, filter: TrunkFilter): void {
    const port = this.ports.get(id);
    if (port?.kind === KIND_TRUNK) port.setTrunkFilter(filter);
  }

  /** Sets (or with null removes) where unicast without a local entry is looked up (cells' MAC routes). */
  setRemoteLookup(lookup: RemoteLookup | null): void {
    this.remoteLookup = lookup;
  }

  /** Sets (or with null removes) the listener told of every learned or moved entry. */
  setLearnListener(listener: LearnListener | null): void {
    this.learnListener = listener;
  }

  /** Learned MACs other cells hold, counted against learnLimitPerSegment (ForwardingTable.countLearnedElsewhere). */
  countLearnedElsewhere(count: () => number): void {
    this.fdb.countLearnedElsewhere(count);
  }

  /** Forgets a learned entry (another cell now owns the MAC by a higher sequence number). */
  forgetLearned(mac: MacKey, vlan: number): void {
    this.fdb.forget(mac, vlan);
  }

  /** Sets (or with null removes) the hook offered broadcast frames before they are flooded. */
  setBroadcastInterceptor(interceptor: BroadcastInterceptor | null): void {
    this.interceptor = interceptor;
  }

  /** Applies a new configuration; existing learned entries are kept even above lowered limits. */
  reconfigure(config: BridgeConfig): void {
    this.config = { ...config };
    this.fdb.reconfigure(config);
  }

  /**
   * Decides the fate of a batch from `ingress`: fills `out` (reset first) with a
   * verdict per frame and one list of deliveries per egress port. An unknown
   * ingress port (already removed) gets every frame answered with
   * DropReason.Reset. `marks` (parallel to `frames`, or null for all plain)
   * flags GSO super-frames (FRAME_SUPER: exempt from maxFrameSize) and frames
   * the caller already dropped (a DropReason). `admit` polices every frame
   * that passed the ingress checks (after learning, before delivery): every frame, or with
   * `admitUnicast` false only those it floods (storm control alone leaves known unicast unpoliced).
   */
  forward(
    ingress: number, frames: readonly Uint8Array[], out: ForwardOutcome, marks: readonly number[] | null = null,
    admit: AdmitFrame | null = null, admitUnicast = true,
  ): void {
    out.reset();
    this.marks = marks;
    this.admit = admit;
    this.admitUnicast = admitUnicast;
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
      const mark = marks === null ? 0 : (marks[i] as number);
      const verdict = mark > 0 ? mark : mark === FRAME_MIRROR_ONLY ? this.mirrorOnly(port, i, out) : this.forwardOne(port, frames[i] as Uint8Array, i, out, now);
      // push, not index assignment, keeps the array packed (no holes) for V8.
      out.verdicts.push(verdict);
      if (verdict === 0) out.forwarded++;
      else out.dropped++;
    }
    this.marks = null;
    this.admit = null;
  }

  /** Removes learned entries past their aging time (call from the alarm); returns how many. */
  ageOut(): number {
    return this.fdb.ageOut(this.clock());
  }

  /** When `ageOut` next has work (ms, same clock), or undefined if nothing is learned. */
  nextAgingDeadline(): number | undefined {
    return this.fdb.nextExpiry();
  }

  /** Forwarding table counts and entries for APIs. */
  fdbSummary(): FdbSummary {
    return this.fdb.summary(this.clock());
  }

  /** One frame (index `index` of the batch): runs the ingress checks, learns, and delivers; returns 0 or a DropReason. */
  private forwardOne(port: BridgePort, frame: Uint8Array, index: number, out: ForwardOutcome, now: number): number {
    const vlan = this.ingressVlan(port, frame, index);
    if (vlan < 0) return -vlan;
    const refused = this.checkSource(port, frame, vlan, now);
    if (refused !== 0) return refused;
    const destination = macKeyAt(frame, ETH_DESTINATION);
    const admit = this.admit;
    if (((frame[ETH_DESTINATION] as number) & 1) === 0) {
      const owner = this.ownerOf(port, destination, vlan);
      if (owner === port.id) return DropReason.Local;
      if (owner !== undefined) {
        const policed = admit === null || !this.admitUnicast ? 0 : admit(frame.length, false);
        return policed !== 0 ? policed : this.forwardKnown(port, owner, frame, index, out);
      }
    }
    const policed = admit === null ? 0 : admit(frame.length, true);
    return policed !== 0 ? policed : this.flood(port, destination, frame, index, out);
  }

  /**
   * Length and kind checks that need only the bytes: returns the VLAN id
   * (0 untagged) or a negated DropReason, so the hot path returns one number.
   */
  private ingressVlan(port: BridgePort, frame: Uint8Array, index: number): number {
    if (port.kind === KIND_MONITOR) return -DropReason.MonitorPort;
    const length = frame.length;
    if (length < ETH_HEADER_LEN) return -DropReason.Runt;
    let max = Math.min(this.config.maxFrameSize, port.frameCap);
    let vlan = 0;
    if (frame[ETH_TYPE] === TPID_8021Q >> 8 && frame[ETH_TYPE + 1] === (TPID_8021Q & 0xff)) {
      if (length < VLAN_HEADER_LEN) return -DropReason.Runt;
      if (!port.vlan) return -DropReason.Malformed;
      max += VLAN_TAG_LEN;
      vlan = (((frame[VLAN_TCI] as number) & 0x0f) << 8) | (frame[VLAN_TCI + 1] as number);
    }
    return length > max && (this.marks === null || this.marks[index] !== FRAME_SUPER) ? -DropReason.Oversize : vlan;
  }

  /** Source rules: no group source; a member only sends from its registered MACs; a bridge port learns within limits. */
  private checkSource(port: BridgePort, frame: Uint8Array, vlan: number, now: number): number {
    if (port.kind === KIND_TRUNK) return 0;
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
    if (learned === LearnOutcome.Conflict) return DropReason.SpoofedSource;
    if ((learned === LearnOutcome.Learned || learned === LearnOutcome.Moved) && this.learnListener !== null) this.learnListener(source, vlan, port.id);
    return learned === LearnOutcome.PortLimit || learned === LearnOutcome.SegmentLimit ? DropReason.LearnLimit : 0;
  }

  /** The port behind a unicast destination, or undefined; remembered within a member port's batch (see memoSource). */
  private ownerOf(port: BridgePort, destination: MacKey, vlan: number): number | undefined {
    if (port.kind !== KIND_MEMBER) return this.lookup(destination, vlan);
    if (destination !== this.memoDestination || vlan !== this.memoVlan) {
      this.memoDestination = destination;
      this.memoVlan = vlan;
      this.memoOwner = this.lookup(destination, vlan);
    }
    return this.memoOwner;
  }

  /** The local table first, then (cells) the other cells' MAC routes. */
  private lookup(destination: MacKey, vlan: number): number | undefined {
    const local = this.fdb.lookup(destination, vlan);
    if (local !== undefined || this.remoteLookup === null) return local;
    return this.remoteLookup(destination, vlan);
  }

  /** Known unicast: the owner only (it accepts its own MAC by definition), then the monitors. */
  private forwardKnown(port: BridgePort, owner: number, frame: Uint8Array, index: number, out: ForwardOutcome): number {
    if (owner === port.id) return DropReason.Local;
    const target = this.ports.get(owner);
    // Split horizon: a frame from a trunk never leaves on another; the route moved while the frame was in flight.
    if (port.kind === KIND_TRUNK && target?.kind === KIND_TRUNK) return DropReason.NoReceiver;
    // The table only holds entries of attached ports; a missing one would be a bug, so treat it as unknown.
    if (target === undefined) return this.flood(port, macKeyAt(frame, ETH_DESTINATION), frame, index, out);
    deliver(target, index << 2, out);
    this.mirror(port, index, out);
    return 0;
  }

  /** Broadcast, multicast and unknown unicast: every other port whose filter accepts, then the monitors. */
  private flood(port: BridgePort, destination: MacKey, frame: Uint8Array, index: number, out: ForwardOutcome): number {
    const group = ((frame[ETH_DESTINATION] as number) & 1) === 1;
    const broadcast = destination === BROADCAST_MAC;
    if (broadcast && this.interceptor !== null && this.interceptor(frame, port.id)) {
      out.suppressed++;
      return 0;
    }
    const receivers = this.receivers;
    const delivery = (index << 2) | DeliveryFlag.Flooded;
    let delivered = 0;
    for (let i = 0; i < receivers.length; i++) {
      const target = receivers[i] as BridgePort;
      if (target === port || !accepts(target, destination, group, broadcast)) continue;
      if (target.kind === KIND_TRUNK && port.kind === KIND_TRUNK) continue;
      deliver(target, delivery, out);
      delivered++;
    }
    if (delivered === 0) return DropReason.NoReceiver;
    this.mirror(port, index, out);
    return 0;
  }

  /**
   * Copies a forwarded frame to every monitor port; a frame that entered on this cell also goes, mirror
   * only, to each trunk whose peer has monitors and that did not get it already (docs/cells.md §5.9).
   */
  private mirror(ingress: BridgePort, index: number, out: ForwardOutcome): void {
    const monitors = this.monitors;
    const delivery = (index << 2) | DeliveryFlag.Mirrored;
    for (let i = 0; i < monitors.length; i++) deliver(monitors[i] as BridgePort, delivery, out);
    const trunks = this.trunks;
    if (trunks.length === 0 || ingress.kind === KIND_TRUNK) return;
    for (let i = 0; i < trunks.length; i++) {
      const trunk = trunks[i] as BridgePort;
      if (!trunk.peerMonitors) continue;
      const last = trunk.epoch === out.epoch ? trunk.batch[trunk.batch.length - 1] : undefined;
      if (last === undefined || deliveryIndex(last) !== index) deliver(trunk, delivery, out);
    }
  }

  /** A mirror-only copy from a trunk: the local monitors take it (verdict 0 even without monitors: it was delivered where it was switched). */
  private mirrorOnly(port: BridgePort, index: number, out: ForwardOutcome): number {
    if (port.kind !== KIND_TRUNK) return DropReason.Malformed;
    this.mirror(port, index, out);
    return 0;
  }

  /**
   * Returns the first reason `macs` cannot all be registered to port `id`, or undefined: registered by
   * another port, or learned behind another port unless the port's token binds it (`claims`).
   */
  private firstUnregistrable(id: number, macs: readonly MacKey[], claims: readonly MacKey[]): Result<never, "mac-taken" | "invalid-mac"> | undefined {
    for (const mac of macs) {
      if (!isUsableUnicastMac(mac)) {
        return fail("invalid-mac", `${formatMac(mac)} is not a usable unicast address (multicast or all zeros)`);
      }
      const owner = this.fdb.staticOwner(mac);
      if (owner !== undefined && owner !== id) return fail("mac-taken", `${formatMac(mac)} is already registered by port ${owner}`);
      const learned = claims.includes(mac) ? undefined : this.fdb.learnedPort(mac);
      if (learned !== undefined && learned !== id) return fail("mac-taken", `${formatMac(mac)} is in use behind port ${learned}`);
    }
    return undefined;
  }

  private rebuildPortLists(): void {
    const all = [...this.ports.values()];
    this.receivers = all.filter((port) => port.kind !== KIND_MONITOR);
    this.monitors = all.filter((port) => port.kind === KIND_MONITOR);
    this.trunks = all.filter((port) => port.kind === KIND_TRUNK);
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
  if (broadcast) return port.takesBroadcast;
  if (port.promiscuous) return true;
  if (group) return port.allMulticast || port.multicast.has(destination);
  return port.takesUnknown;
}

/** The one delivery function for unicast, flood and mirror: appends a packed delivery to the port's batch. */
function deliver(port: BridgePort, delivery: number, out: ForwardOutcome): void {
  if (port.epoch !== out.epoch) {
    port.batch = out.openBatch(port.id);
    port.epoch = out.epoch;
  }
  port.batch.push(delivery);
}
