/**
 * The segment switch: the whole data plane of one segment, with no platform in
 * it. A port's TX batch goes through the Bridge (ingress checks, learning, the
 * forwarding decision), each copy to its destination through that port's
 * limits, RX credits and queue (GSO super-frames cut in software for ports
 * without Gso), and every TX id of the sender gets one completion. Services
 * (DHCP, ARP proxy, DNS) are ports too: frames switched to them are calls, and
 * what they emit is switched after the batch as if their port had sent it.
 *
 * Counters have one writer each: the switch counts every port's rx, tx and
 * drops (`sent = delivered + dropped` per port: rxFrames = forwarded + ingress
 * drops), and the segment-level `flushed` and `suppressed`.
 *
 * The switch reaches the platform only through each port's PortSink (outgoing
 * bytes, "state changed"). `flush()` at the end of each platform event sends one
 * message per touched descriptor port and reports the changes to persist.
 */
import {
  Bridge, deliveryFlag, deliveryIndex, ForwardOutcome, FRAME_MIRROR_ONLY, type AdmitFrame, type BridgeConfig, type LearnListener,
  type ReceiveFilter, type RemoteLookup, type TrunkFilter,
} from "./bridge.ts";
import { countDrop, DropReason, newPortCounters } from "./counters.ts";
import { DeferredCompletions, NO_TICKET } from "./deferred-completions.ts";
import { countTx, deliverFrame, type ServiceCall } from "./egress.ts";
import { ETH_SOURCE } from "./ethernet.ts";
import type { FdbSummary } from "./fdb.ts";
import { formatMac, isUsableUnicastMac, macKeyAt, type MacKey } from "./mac.ts";
import { MAX_REFUSED_PER_SECOND, newPolicerState, noteRefusal, police, type PolicerLimits } from "./policer.ts";
import { admitRawEgress, newRawEgressState, rawPortSpoke, type RawEgressLimits } from "./raw-egress.ts";
import { fail, ok, type Result } from "./result.ts";
import { MAX_SERVICE_FRAMES_PER_CALL, type EmitFrame, type ServicePort } from "./service-port.ts";
import { SwitchPort, type PortSink, type SwitchPortMode, type SwitchPortState } from "./switch-port.ts";
import { emptyArray, TxBatch } from "./tx-batch.ts";
import { CloseCode } from "./tunnel/close-codes.ts";
import { AckStatus, Feature, MAX_FILTER_MACS, MAX_MACS_PER_PORT, RxFlag, TxFlag } from "./tunnel/constants.ts";
import type { TunnelRecord } from "./tunnel/records.ts";
import { RxCreditLedger, SegmentQueueBudget, type RxPostErrorCode } from "./tunnel/rx-credits.ts";
import { TxBatchGuard, type TxOverrunCode } from "./tunnel/tx-window.ts";

/** A segment's switching settings. */
export interface SwitchConfig extends BridgeConfig {
  /** Frames queued towards one port without credit (the most a HELLO's rxQueue gets). */
  rxQueueFrames: number;
  /** Bytes queued towards one port without credit. */
  rxQueueBytes: number;
  /** Bytes queued towards all ports together. */
  segmentQueueBytes: number;
  /** Ingress policing of every member, bridge and raw port (a port's `limits` override it); absent: none. */
  policer?: PolicerLimits;
  /** The rate the segment sends one raw port (raw-egress.ts); absent: unlimited (RAW_SILENT_BYTES still applies). */
  rawEgress?: RawEgressLimits;
}

/** No limits at all: what a switch without `policer` settings applies. */
export const NO_POLICING: Readonly<PolicerLimits> = { bytesPerSecond: null, framesPerSecond: null, floodFramesPerSecond: null, burstSeconds: 1 };

/** What the platform knows about a port besides its state: its join token's claims. */
export interface AttachOptions {
  /** Policing limits of its own (join-token claims), each field overriding the segment's; default: the segment's. */
  limits?: Partial<PolicerLimits> | null;
  /** MACs its join token binds it to; null or absent: unbound. */
  boundMacs?: readonly MacKey[] | null;
}

/** Segment-level counters the switch owns. */
export interface SwitchCounters {
  /** Frames still queued for a port when it closed or the segment was evicted (also counted `flushed` on the port). */
  flushed: number;
  /** The part of `flushed` lost to an eviction (counted when the segment wakes). */
  flushedOnEviction: number;
  /** Broadcast frames a service answered in place of flooding them (ARP proxy). */
  suppressed: number;
}

/** A control request's answer: an AckStatus and a reason. */
export interface ControlAnswer {
  status: number;
  reason: string;
}

/** Rounds of service output switched after one batch: frames emitted in reply to emitted frames, at most this deep. */
export const MAX_SERVICE_ROUNDS = 4;

/** Bridge flags and RX flags agree bit for bit (Flooded 0x01, Mirrored 0x02), so a delivery flag is the RX flag. */
const RX_FLAG_OF_DELIVERY = RxFlag.Flooded | RxFlag.Mirrored;

/**
 * Takes the frames the switch sends to a trunk port (the cell's outbox to one peer): null when taken,
 * else why not (counted by the carrier). `ticket`: non-zero when the sender's completion waits for the
 * call (DeferredCompletions); the carrier hands it back through `settleTickets`.
 */
export interface TrunkCarrier {
  carry(ingress: number, flags: number, frame: Uint8Array, ticket: number): "backlog" | "unreachable" | null;
}

/** One frame a trunk brought in: RX flags as the origin switched it (Mirrored: for the monitors only; VnetHeader: a super-frame). */
export interface TrunkIngressFrame {
  flags: number;
  frame: Uint8Array;
}

/**
 * Answers a broadcast from a local port on behalf of another host, or returns null to let it flood: a
 * cell's ARP proxy on a segment of several cells (datapath/ipam/arp-proxy.ts ArpAnswerer).
 */
export interface FloodAnswerer {
  answer(frame: Uint8Array): Uint8Array | null;
}

/** A frame a service emitted, waiting to be switched after the current batch. */
interface Emitted {
  readonly port: SwitchPort;
  readonly frame: Uint8Array;
}

export class SegmentSwitch {
  readonly counters: SwitchCounters = { flushed: 0, flushedOnEviction: 0, suppressed: 0 };
  /** Set when `counters` changed since the owner last stored them. */
  countersChanged = false;
  private config: SwitchConfig;
  private readonly bridge: Bridge;
  private readonly budget: SegmentQueueBudget;
  private readonly ports = new Map<number, SwitchPort>();
  private readonly outcome = new ForwardOutcome();
  private readonly batch = new TxBatch();
  private readonly serviceBatch = new TxBatch();
  private readonly guard = new TxBatchGuard();
  private readonly touched = new Set<SwitchPort>();
  private emitted: Emitted[] = [];
  /** A cell's ARP proxy (cells > 1, cells without the IPAM service), and the replies it made for the current batch. */
  private answerer: FloodAnswerer | null = null;
  private answers: Emitted[] = [];
  private readonly services: SwitchPort[] = [];
  private readonly serviceCall: ServiceCall = {
    deliver: (port, frame) => this.callService(port, frame),
    trunk: (port, frame, flags) => this.carryToTrunk(port, frame, flags),
    admitRaw: (port, bytes) => this.admitRaw(port, bytes),
  };
  /** Trunk ports (cells > 1 only) and where their frames go; the id of the port whose batch is being switched. */
  private readonly carriers = new Map<SwitchPort, TrunkCarrier>();
  private ingressId = 0;
  /** Completions that wait for trunk calls (CellCompletions); `deferringFor`: the sender whose batch is being switched opens tickets. */
  readonly deferred = new DeferredCompletions();
  private deferringFor: SwitchPort | null = null;
  /** Per frame index of the batch being switched: its ticket, once a trunk was offered it. */
  private readonly batchTickets: number[] = [];
  private deliveringIndex = 0;
  /** The port whose batch is being policed, its limits and the batch's time (read by `admit`). */
  private policed: SwitchPort | null = null;
  private policedLimits: PolicerLimits = NO_POLICING;
  private policedNow = 0;
  /** A port that passed MAX_REFUSED_PER_SECOND during the current batch, closed once the batch is done. */
  private flooding: SwitchPort | null = null;
  private readonly admit: AdmitFrame = (bytes, flooded) => this.policeFrame(bytes, flooded);

  /** @param clock ms; read once per batch */
  constructor(config: SwitchConfig, private readonly clock: () => number) {
    this.config = { ...config };
    this.bridge = new Bridge(config, clock);
    this.budget = new SegmentQueueBudget(config.segmentQueueBytes);
  }

  /** Applies new settings; connected ports stay. */
  reconfigure(config: SwitchConfig): void {
    this.config = { ...config };
    this.bridge.reconfigure(config);
    this.budget.setLimit(config.segmentQueueBytes);
  }

  // ---- ports ------------------------------------------------------------------

  /**
   * Adds a port in its current state (not switching until `open`). A restored state with credits gets its
   * ledger back, and frames that were queued when the segment was evicted are counted as flushed.
   */
  attach(id: number, mode: SwitchPortMode, state: SwitchPortState, sink: PortSink, options: AttachOptions = {}): SwitchPort {
    const port = new SwitchPort(id, mode, state, sink);
    port.limits = options.limits ?? null;
    port.boundMacs = options.boundMacs ?? null;
    if (state.credits !== null) {
      port.ledger = RxCreditLedger.restore(state.credits, this.budget);
      this.countFlushed(port, port.ledger.flush(), true);
    }
    port.output?.restoreHeld(state.heldCompletions);
    this.ports.set(id, port);
    return port;
  }

  /**
   * Starts switching a port: registers its MACs with the bridge (all or nothing). A descriptor port
   * gets its RX ledger (queue of `queueFrames`, 0 = drop at once) unless it was restored with one.
   */
  open(port: SwitchPort, queueFrames = 0): Result<void, "mac-taken" | "invalid-mac" | "port-exists"> {
    const { state } = port;
    port.applyFeatures();
    this.evictSquatters(port, state.macs);
    const added = this.bridge.addPort(port.id, {
      kind: state.kind, macs: state.macs, filter: state.filter, learnLimit: this.config.learnLimitPerPort,
      maxFrameSize: port.frameCap === Infinity ? undefined : port.frameCap, vlan: port.vlan, claims: port.boundMacs ?? [],
    });
    if (!added.ok) return added;
    port.open = true;
    if (port.mode === "descriptor" && port.ledger === null) {
      port.ledger = new RxCreditLedger({ maxQueueFrames: queueFrames, maxQueueBytes: this.config.rxQueueBytes }, this.budget);
    }
    port.touch("state");
    this.touched.add(port);
    return ok(undefined);
  }

  /** Per-port arrays the switch keeps between batches; bounded by the attached ports (a memory check for tests). */
  get retainedBatchArrays(): number {
    return this.outcome.batchArrays;
  }

  /** Removes a port: frames still queued for it are counted flushed (on the port and the segment). Returns the port. */
  detach(id: number): SwitchPort | undefined {
    const port = this.ports.get(id);
    if (port === undefined) return undefined;
    this.ports.delete(id);
    this.carriers.delete(port);
    this.deferred.forget(port);
    if (port.open) this.bridge.removePort(id);
    this.outcome.forget(id);
    port.open = false;
    if (port.ledger !== null) this.countFlushed(port, port.ledger.flush(), false);
    this.touched.delete(port);
    const serviceIndex = this.services.indexOf(port);
    if (serviceIndex >= 0) {
      this.services.splice(serviceIndex, 1);
      this.installInterceptor();
    }
    return port;
  }

  /** Adds a service as a port with static MACs (the service's own), switched like a member port. */
  addService(id: number, service: ServicePort): Result<SwitchPort, "mac-taken" | "invalid-mac" | "port-exists"> {
    if (this.ports.has(id)) return fail("port-exists", `port ${id} is already attached`);
    const macs = service.macs.map((bytes) => macKeyAt(bytes, 0));
    const state: SwitchPortState = {
      kind: "member", macs, filter: { promiscuous: false, allMulticast: false, multicast: [] }, features: 0, txWindow: 0,
      credits: null, counters: newPortCounters(), heldCompletions: [],
    };
    const port = new SwitchPort(id, "service", state, { send: () => false, changed: () => undefined, evicted: () => undefined }, service);
    this.ports.set(id, port);
    const opened = this.open(port);
    if (!opened.ok) {
      this.ports.delete(id);
      return opened;
    }
    this.services.push(port);
    this.installInterceptor();
    return ok(port);
  }

  // ---- trunks (cells, docs/cells.md §4.4; unused while a segment has one cell) ----

  /** Adds a trunk to a peer cell: a port of kind `trunk` (split horizon), filtered by the peer's aggregate filter. */
  addTrunk(id: number, filter: TrunkFilter, carrier: TrunkCarrier): Result<SwitchPort, "mac-taken" | "invalid-mac" | "port-exists"> {
    if (this.ports.has(id)) return fail("port-exists", `port ${id} is already attached`);
    const state: SwitchPortState = {
      kind: "bridge", macs: [], filter: { promiscuous: false, allMulticast: false, multicast: [] }, features: 0, txWindow: 0,
      credits: null, counters: newPortCounters(), heldCompletions: [],
    };
    const port = new SwitchPort(id, "trunk", state, { send: () => false, changed: () => undefined, evicted: () => undefined });
    port.gso = true;
    const added = this.bridge.addPort(id, { kind: "trunk", macs: [], filter: state.filter });
    if (!added.ok) return added;
    this.bridge.setTrunkFilter(id, filter);
    port.open = true;
    this.ports.set(id, port);
    this.carriers.set(port, carrier);
    return ok(port);
  }

  /** Replaces what a trunk's peer wants flooded to it. */
  setTrunkFilter(port: SwitchPort, filter: TrunkFilter): void {
    this.bridge.setTrunkFilter(port.id, filter);
  }

  /** Frames a trunk brought in, switched as one batch from the trunk port (to local ports only: split horizon). */
  trunkReceive(port: SwitchPort, frames: readonly TrunkIngressFrame[]): void {
    const batch = this.batch;
    batch.begin(true);
    for (const { flags, frame } of frames) {
      // A mirror copy of a GSO super-frame is not cut for monitors yet: dropped and counted (malformed) on the trunk port.
      if ((flags & RxFlag.Mirrored) !== 0) batch.addMarkedFrame(frame, (flags & RxFlag.VnetHeader) !== 0 ? DropReason.Malformed : FRAME_MIRROR_ONLY);
      // The origin's RX flag VnetHeader (0x04) is the TX flag VnetHeader (0x01) here: a super-frame or partial checksum.
      else batch.addTx(0, (flags & RxFlag.VnetHeader) !== 0 ? TxFlag.VnetHeader : 0, frame);
    }
    this.switchBatch(port, batch);
    this.runServices();
  }

  /**
   * Where unicast without a local entry goes (the cell's MAC routes), who hears of learned MACs, and how
   * many learned MACs other cells hold (they count against learnLimitPerSegment here too).
   */
  setCellHooks(lookup: RemoteLookup | null, learned: LearnListener | null, learnedElsewhere: () => number = () => 0): void {
    this.bridge.setRemoteLookup(lookup);
    this.bridge.setLearnListener(learned);
    this.bridge.countLearnedElsewhere(learnedElsewhere);
  }

  /** Forgets a learned entry another cell won. */
  forgetLearned(mac: MacKey, vlan: number): void {
    this.bridge.forgetLearned(mac, vlan);
  }

  /** The port with this id, if attached. */
  port(id: number): SwitchPort | undefined {
    return this.ports.get(id);
  }

  /** Every attached port. */
  allPorts(): IterableIterator<SwitchPort> {
    return this.ports.values();
  }

  /** Bytes queued for ports without credit, segment-wide. */
  get queuedBytes(): number {
    return this.budget.usedBytes;
  }

  // ---- data ---------------------------------------------------------------------

  /** Starts collecting a TX batch from `port`; add descriptors with `addTx` on the returned batch, then call `transmit`. */
  beginTx(port: SwitchPort | null): TxBatch {
    this.batch.begin(port?.gso ?? false);
    return this.batch;
  }

  /**
   * Switches the batch collected since `beginTx` and completes every id (the window check first: more
   * TX than the granted window, or an id twice, is an overrun and nothing is switched).
   */
  transmit(port: SwitchPort): Result<void, TxOverrunCode> {
    const batch = this.batch;
    const guarded = this.guard.check(batch.ids, port.state.txWindow);
    if (!guarded.ok) return guarded;
    const waiting = this.checkWaitingIds(port, batch.ids);
    if (!waiting.ok) return waiting;
    if (batch.length === 0) return ok(undefined);
    const deferring = port.output !== null && (port.state.features & Feature.CellCompletions) !== 0 && this.carriers.size > 0;
    this.deferringFor = deferring ? port : null;
    if (deferring) emptyArray(this.batchTickets);
    this.switchBatch(port, batch);
    const output = port.output;
    if (output !== null) {
      const verdicts = this.outcome.verdicts;
      const ids = batch.ids;
      for (let i = 0; i < ids.length; i++) {
        const status = deferring ? this.statusNow(i, verdicts[i] as number) : verdicts[i] as number;
        if (status !== null) output.completions.push(ids[i] as number, status);
      }
      output.endBatch();
    }
    this.deferringFor = null;
    this.touched.add(port);
    this.runServices();
    this.closeIfFlooding(port);
    return ok(undefined);
  }

  /** A frame's completion status now, or null when its ticket waits for trunk calls. */
  private statusNow(index: number, verdict: number): number | null {
    const ticket = this.batchTickets[index] ?? NO_TICKET;
    return ticket === NO_TICKET ? verdict : this.deferred.afterSwitch(ticket, verdict);
  }

  /**
   * Rule 3 with completions that wait for trunks: the ids still waiting count against the window, and a
   * message may not reuse one of them (4003, as for an overrun within one message).
   */
  private checkWaitingIds(port: SwitchPort, ids: readonly number[]): Result<void, TxOverrunCode> {
    const waiting = this.deferred.waitingFor(port);
    if (waiting === 0) return ok(undefined);
    if (waiting + ids.length > port.state.txWindow) {
      return fail("window-overrun", `${ids.length} TX descriptors with ${waiting} still waiting for another cell exceed the granted window of ${port.state.txWindow}`);
    }
    for (const id of ids) {
      if (this.deferred.isWaiting(port, id)) return fail("duplicate-id", `TX id ${id} is reused while it still waits for another cell`);
    }
    return ok(undefined);
  }

  /**
   * Trunk calls returned or failed (Cell): the TX they carried for CellCompletions ports complete now,
   * in a message of their own, ok or cell-unreachable. The caller flushes.
   */
  settleTickets(call: { readonly tickets: readonly number[]; readonly ok: boolean }): void {
    if (call.tickets.length === 0) return;
    const completed = new Set<SwitchPort>();
    for (const { port, id, status } of this.deferred.settle(call.tickets, call.ok)) {
      port.output?.completions.push(id, status);
      completed.add(port);
    }
    // Written now with anything held, lazy or not: the client may be waiting on them with a full window.
    for (const port of completed) {
      port.output?.releaseHeld();
      this.touched.add(port);
    }
  }

  /** One frame from a raw port: a member without MACs claims the source of its first frame (it cannot say HELLO). */
  rawFrame(port: SwitchPort, frame: Uint8Array): void {
    if (port.state.kind === "member" && port.state.macs.length === 0) this.claimSource(port, frame);
    rawPortSpoke(port.state.rawEgress);
    const batch = this.batch;
    batch.begin(false);
    batch.addFrame(frame);
    this.switchBatch(port, batch);
    this.touched.add(port);
    this.runServices();
    this.closeIfFlooding(port);
  }

  /** New credits: queued frames go out first, oldest first. A post the protocol forbids changes nothing. */
  postCredits(port: SwitchPort, count: number, bufferSize: number): Result<void, RxPostErrorCode> {
    const ledger = port.ledger as RxCreditLedger;
    const posted = ledger.post(count, bufferSize);
    if (!posted.ok) return posted;
    this.drainQueue(port, ledger);
    return ok(undefined);
  }

  /** A PONG from a descriptor port: if it answers the segment's PING, those bytes are read and queued frames may go. */
  pong(port: SwitchPort, seq: number): void {
    const ledger = port.ledger;
    if (ledger !== null && ledger.pong(seq)) this.drainQueue(port, ledger);
  }

  /** Sends the queued frames the port's credits (and read acknowledgements) now cover. */
  private drainQueue(port: SwitchPort, ledger: RxCreditLedger): void {
    const drained = ledger.drain();
    const output = port.output as NonNullable<SwitchPort["output"]>;
    for (let i = 0; i < drained.frames.length; i++) {
      const frame = drained.frames[i] as Uint8Array;
      const flags = drained.flags[i] as number;
      output.addRx(flags, frame);
      countTx(port, frame, flags);
    }
    for (const reason of drained.dropped) countDrop(port.state.counters, reason);
    port.touch("state");
    this.touched.add(port);
  }

  /**
   * A message from a descriptor port was applied. Under LazyCompletions, a message without TX records
   * is answered with the completions held so far (protocol.md §6.3 rule 2a).
   */
  endMessage(port: SwitchPort, hadTx: boolean): void {
    if (!hadTx && port.output !== null && port.output.heldIds > 0) {
      port.output.releaseHeld();
      this.touched.add(port);
    }
  }

  /** Queues a control record for the port's next message (held completions go first). */
  reply(port: SwitchPort, record: TunnelRecord): void {
    port.output?.add(record);
    this.touched.add(port);
  }

  /** Sends one message per touched descriptor port and reports each port's change to its sink. */
  flush(): void {
    for (const port of this.touched) {
      this.pingIfDue(port);
      port.output?.flush();
      const change = port.takeChange();
      if (change !== null) port.sink.changed(change);
    }
    this.touched.clear();
  }

  /**
   * Read acknowledgement (protocol.md §8.5): a PING after the RX of this event once enough is unacknowledged;
   * its seq is persisted with the port's credits.
   */
  private pingIfDue(port: SwitchPort): void {
    const seq = port.ledger?.pingDue() ?? 0;
    if (seq === 0) return;
    (port.output as NonNullable<SwitchPort["output"]>).add({ type: "ping", seq, timestamp: this.clock() });
    port.touch("state");
  }

  /** Sends what a port holds now, held completions included (before its socket is closed). */
  flushPort(port: SwitchPort): void {
    if (port.output === null) return;
    port.output.releaseHeld();
    port.output.flush();
  }

  // ---- control ------------------------------------------------------------------

  /** Replaces a port's receive filter. */
  setFilter(port: SwitchPort, filter: ReceiveFilter): ControlAnswer {
    if (filter.multicast.length > MAX_FILTER_MACS) {
      return { status: AckStatus.TooManyMacs, reason: `the multicast list holds at most ${MAX_FILTER_MACS} addresses` };
    }
    port.state.filter = { promiscuous: filter.promiscuous, allMulticast: filter.allMulticast, multicast: [...filter.multicast] };
    this.bridge.setFilter(port.id, port.state.filter);
    this.changed(port);
    return { status: AckStatus.Ok, reason: "filter set" };
  }

  /** Registers another MAC on the port; `allowed` is the token binding (null: any). */
  addMac(port: SwitchPort, mac: MacKey, allowed: readonly MacKey[] | null): ControlAnswer {
    const { state } = port;
    if (state.kind === "monitor") return { status: AckStatus.NotPermitted, reason: "a monitor port cannot own MACs" };
    if (state.macs.includes(mac)) return { status: AckStatus.Ok, reason: `${formatMac(mac)} is already registered` };
    if (state.macs.length >= MAX_MACS_PER_PORT) return { status: AckStatus.TooManyMacs, reason: `a port owns at most ${MAX_MACS_PER_PORT} MACs` };
    const refusal = macRefusal(allowed, [mac]);
    if (refusal !== null) return refusal;
    this.evictSquatters(port, [mac]);
    const added = this.bridge.addMac(port.id, mac, port.boundMacs?.includes(mac) === true);
    if (!added.ok) return { status: added.error.code === "mac-taken" ? AckStatus.MacTaken : AckStatus.InvalidMac, reason: added.error.message };
    state.macs.push(mac);
    this.changed(port);
    return { status: AckStatus.Ok, reason: `${formatMac(mac)} registered` };
  }

  /** Unregisters a MAC from the port. */
  removeMac(port: SwitchPort, mac: MacKey): ControlAnswer {
    const index = port.state.macs.indexOf(mac);
    if (index < 0) return { status: AckStatus.UnknownMac, reason: `${formatMac(mac)} is not registered on this port` };
    this.bridge.removeMac(port.id, mac);
    port.state.macs.splice(index, 1);
    this.changed(port);
    return { status: AckStatus.Ok, reason: `${formatMac(mac)} removed` };
  }

  // ---- maintenance and views ----------------------------------------------------

  /** Ages the forwarding table (the alarm calls this). */
  age(): void {
    this.bridge.ageOut();
  }

  /** When the next learned entry expires, if any. */
  nextAgingDeadline(): number | undefined {
    return this.bridge.nextAgingDeadline();
  }

  /** The forwarding table summary. */
  fdbSummary(): FdbSummary {
    return this.bridge.fdbSummary();
  }

  /** Whether a MAC is registered on some port (for resume: only free MACs come back). */
  macOwner(mac: MacKey): number | undefined {
    for (const port of this.ports.values()) if (port.open && port.state.macs.includes(mac)) return port.id;
    return undefined;
  }

  /**
   * MAC ownership: a MAC bound to `port`'s join token is its by right. An unbound port that registered
   * it (a squatter) is removed from the switch and told so through its sink (the platform closes it
   * with 4009); a port bound by its own token keeps what it holds (first come, first served).
   */
  private evictSquatters(port: SwitchPort, macs: readonly MacKey[]): void {
    const bound = port.boundMacs;
    if (bound === null) return;
    for (const mac of macs) {
      if (!bound.includes(mac)) continue;
      const holder = this.bridge.staticOwner(mac);
      const squatter = holder === undefined || holder === port.id ? undefined : this.ports.get(holder);
      if (squatter === undefined || squatter.boundMacs !== null || squatter.mode === "service") continue;
      this.detach(squatter.id);
      squatter.sink.evicted(CloseCode.MacTaken, `${formatMac(mac)} is bound to the join token of a port that just joined; this port held it without a binding`);
    }
  }

  // ---- the switching pass -------------------------------------------------------

  /** Forwards a batch from `port`, counts it, and delivers every copy. */
  private switchBatch(port: SwitchPort, batch: TxBatch): void {
    const out = this.outcome;
    this.ingressId = port.id;
    const admit = this.policerFor(port);
    const limits = this.policedLimits;
    this.bridge.forward(port.id, batch.frames, out, batch.marked > 0 ? batch.marks : null, admit, limits.bytesPerSecond !== null || limits.framesPerSecond !== null);
    this.policed = null;
    this.countIngress(port, batch);
    if (out.suppressed > 0) this.bump("suppressed", out.suppressed);
    const egress = out.egressPorts();
    for (let p = 0; p < egress.length; p++) {
      const dest = this.ports.get(egress[p] as number);
      if (dest !== undefined) this.deliverBatch(dest, out.deliveriesFor(dest.id), batch);
    }
  }

  /** The admit hook for a batch from `port` (null for services, which the switch bounds itself, and for unlimited ports). */
  /** Sets a port's own policing limits (join-token claims; null: the segment's), e.g. once its token is known. */
  setPortLimits(port: SwitchPort, limits: Partial<PolicerLimits> | null): void {
    port.limits = limits;
  }

  private policerFor(port: SwitchPort): AdmitFrame | null {
    if (port.mode === "service") return null;
    const segment = this.config.policer ?? NO_POLICING;
    const limits = port.limits === null ? segment : { ...segment, ...port.limits };
    if (limits.bytesPerSecond === null && limits.framesPerSecond === null && limits.floodFramesPerSecond === null) return null;
    this.policed = port;
    this.policedLimits = limits;
    this.policedNow = this.clock();
    port.state.policer ??= newPolicerState(limits, this.policedNow);
    return this.admit;
  }

  /** One frame of the policed batch: 0, or RateLimited / StormControl (the tokens stay in the port's state). */
  private policeFrame(bytes: number, flooded: boolean): number {
    const port = this.policed as SwitchPort;
    const state = port.state.policer as NonNullable<SwitchPortState["policer"]>;
    const verdict = police(state, this.policedLimits, bytes, flooded, this.policedNow);
    if (verdict === "ok") return 0;
    if (noteRefusal(state, this.policedNow)) this.flooding = port;
    return verdict === "rate-limited" ? DropReason.RateLimited : DropReason.StormControl;
  }

  /** Closes the port the last batch found flooding far past its limits (4029), after its completions. */
  private closeIfFlooding(port: SwitchPort): void {
    if (this.flooding !== port) return;
    this.flooding = null;
    this.flushPort(port);
    this.detach(port.id);
    port.sink.evicted(CloseCode.RateLimited, `more than ${MAX_REFUSED_PER_SECOND} frames in a second past this port's rate limit or storm control`);
  }

  /** Whether a raw port may be sent `bytes` more now (its bucket and silence bound, raw-egress.ts). */
  private admitRaw(port: SwitchPort, bytes: number): boolean {
    const limits = this.config.rawEgress ?? NO_POLICING;
    const now = this.clock();
    port.state.rawEgress ??= newRawEgressState(limits, now);
    return admitRawEgress(port.state.rawEgress, limits, bytes, now);
  }

  /** rx for every frame of the batch (dropped too), and each ingress drop by reason. */
  private countIngress(port: SwitchPort, batch: TxBatch): void {
    const counters = port.state.counters;
    const frames = batch.frames;
    let bytes = 0;
    for (let i = 0; i < frames.length; i++) bytes += (frames[i] as Uint8Array).length;
    counters.rxFrames += frames.length;
    counters.rxBytes += bytes;
    if (this.outcome.dropped > 0) {
      const verdicts = this.outcome.verdicts;
      for (let i = 0; i < verdicts.length; i++) {
        const verdict = verdicts[i] as number;
        if (verdict !== 0) countDrop(counters, verdict as DropReason);
      }
    }
    port.touch("counters");
  }

  /** Every copy of the batch for one destination, in ingress order. */
  private deliverBatch(dest: SwitchPort, deliveries: readonly number[], batch: TxBatch): void {
    const frames = batch.frames;
    const max = this.config.maxFrameSize;
    this.touched.add(dest);
    for (let d = 0; d < deliveries.length; d++) {
      const delivery = deliveries[d] as number;
      const index = deliveryIndex(delivery);
      const flags = deliveryFlag(delivery) & RX_FLAG_OF_DELIVERY;
      const header = batch.superHeader(index);
      this.deliveringIndex = index;
      if (header === null) {
        deliverFrame(dest, frames[index] as Uint8Array, flags, max, false, this.serviceCall);
      } else if (dest.gso) {
        deliverFrame(dest, frames[index] as Uint8Array, flags | RxFlag.VnetHeader, max, true, this.serviceCall, header);
      } else {
        const segments = batch.segmentsOf(index);
        // checkOffload accepted it at ingress, so it always cuts; count it as malformed if it ever does not.
        if (segments.length === 0) countDrop(dest.state.counters, DropReason.Malformed);
        for (const segment of segments) deliverFrame(dest, segment, flags, max, false, this.serviceCall);
      }
    }
  }

  /** A raw member registers the source MAC of its first frame (if usable and free) and is locked to it. */
  private claimSource(port: SwitchPort, frame: Uint8Array): void {
    if (frame.length < ETH_SOURCE + 6) return;
    const source = macKeyAt(frame, ETH_SOURCE);
    if (!isUsableUnicastMac(source) || !this.bridge.addMac(port.id, source).ok) return;
    port.state.macs.push(source);
    this.changed(port);
  }

  // ---- services -----------------------------------------------------------------

  /** A frame switched to a service port: counted as tx, then handed to the service. */
  private callService(port: SwitchPort, frame: Uint8Array): void {
    countTx(port, frame, 0);
    const service = port.service as ServicePort;
    service.deliver(frame, this.clock(), this.emitterFor(port));
  }

  /**
   * A frame switched to a trunk: counted as tx when the trunk's pending batch takes it, else rx-queue-full
   * (or, for a sender that waits, cell-unreachable while the peer is failing: counted by the carrier).
   * A mirror-only copy never holds up a completion.
   */
  private carryToTrunk(port: SwitchPort, frame: Uint8Array, flags: number): void {
    const carrier = this.carriers.get(port);
    if (carrier === undefined) {
      countDrop(port.state.counters, DropReason.RxQueueFull);
      return;
    }
    const sender = this.deferringFor;
    const ticket = sender !== null && (flags & RxFlag.Mirrored) === 0 ? this.ticketOf(sender, this.deliveringIndex) : NO_TICKET;
    const refusal = carrier.carry(this.ingressId, flags, frame, ticket);
    if (refusal === null) {
      countTx(port, frame, flags);
      if (ticket !== NO_TICKET) this.deferred.carried(ticket);
    } else if (refusal === "unreachable") {
      this.deferred.unreachable(ticket);
    } else {
      countDrop(port.state.counters, DropReason.RxQueueFull);
    }
  }

  /** The ticket of frame `index` of the batch being switched, opened on first use. */
  private ticketOf(sender: SwitchPort, index: number): number {
    const existing = this.batchTickets[index] ?? NO_TICKET;
    if (existing !== NO_TICKET) return existing;
    const ticket = this.deferred.open(sender, this.batch.ids[index] as number);
    this.batchTickets[index] = ticket;
    return ticket;
  }

  /** Sets a cell's ARP proxy (null: none): consulted for broadcasts from local ports, after the services. */
  setFloodAnswerer(answerer: FloodAnswerer | null): void {
    this.answerer = answerer;
    this.installInterceptor();
  }

  /** Hooks the services' intercept() and the flood answerer into the bridge's flood path (or removes the hook when there is none). */
  private installInterceptor(): void {
    const intercepting = this.services.filter((port) => port.service?.intercept !== undefined);
    const answerer = this.answerer;
    if (intercepting.length === 0 && answerer === null) {
      this.bridge.setBroadcastInterceptor(null);
      return;
    }
    this.bridge.setBroadcastInterceptor((frame, ingress) => {
      for (const port of intercepting) {
        if (port.id === ingress) continue;
        const service = port.service as ServicePort;
        if (service.intercept?.(frame, ingress, this.clock(), this.emitterFor(port)) === true) return true;
      }
      return answerer !== null && this.answerLocally(answerer, frame, ingress);
    });
  }

  /** The answerer's reply goes straight back to the asking port after the batch; a broadcast from a trunk was asked elsewhere. */
  private answerLocally(answerer: FloodAnswerer, frame: Uint8Array, ingress: number): boolean {
    const port = this.ports.get(ingress);
    if (port === undefined || port.mode === "trunk" || port.mode === "service") return false;
    const reply = answerer.answer(frame);
    if (reply === null) return false;
    this.answers.push({ port, frame: reply });
    return true;
  }

  /** Delivers the answerer's replies of the batch just switched, each to the port that asked. */
  private deliverAnswers(): void {
    if (this.answers.length === 0) return;
    const answers = this.answers;
    this.answers = [];
    for (const { port, frame } of answers) {
      if (!port.open) continue;
      deliverFrame(port, frame, 0, this.config.maxFrameSize, false, this.serviceCall);
      this.touched.add(port);
    }
  }

  /**
   * The EmitFrame for one call into a service: copies each frame for switching after the batch; past
   * MAX_SERVICE_FRAMES_PER_CALL frames it counts them received and dropped (`rate-limited`) on the service's port.
   */
  private emitterFor(port: SwitchPort): EmitFrame {
    let left = MAX_SERVICE_FRAMES_PER_CALL;
    return (frame) => {
      if (left-- > 0) {
        this.emitted.push({ port, frame: frame.slice() });
        return;
      }
      const counters = port.state.counters;
      counters.rxFrames++;
      counters.rxBytes += frame.length;
      countDrop(counters, DropReason.RateLimited);
    };
  }

  /**
   * Switches what services emitted, each service's frames as one batch from its port, after the batch
   * that caused them. What they emit in turn goes in the next round; after MAX_SERVICE_ROUNDS rounds the
   * rest is dropped (counted `rate-limited` on the emitting port), so services can never loop.
   */
  private runServices(): void {
    this.deliverAnswers();
    for (let round = 0; round < MAX_SERVICE_ROUNDS && this.emitted.length > 0; round++) {
      const pending = this.emitted;
      this.emitted = [];
      for (const port of this.services) {
        const batch = this.serviceBatch;
        batch.begin(false);
        for (const item of pending) if (item.port === port) batch.addFrame(item.frame);
        if (batch.length > 0 && port.open) this.switchBatch(port, batch);
      }
    }
    for (const { port, frame } of this.emitted) {
      const counters = port.state.counters;
      counters.rxFrames++;
      counters.rxBytes += frame.length;
      countDrop(counters, DropReason.RateLimited);
    }
    this.emitted = [];
  }

  // ---- counting -----------------------------------------------------------------

  private countFlushed(port: SwitchPort, frames: number, eviction: boolean): void {
    if (frames === 0) return;
    const drops = port.state.counters.drops;
    drops[DropReason.Flushed] = (drops[DropReason.Flushed] ?? 0) + frames;
    this.bump("flushed", frames);
    if (eviction) this.bump("flushedOnEviction", frames);
    port.touch("state");
    this.touched.add(port);
  }

  private bump(counter: keyof SwitchCounters, by: number): void {
    this.counters[counter] += by;
    this.countersChanged = true;
  }

  private changed(port: SwitchPort): void {
    port.touch("state");
    this.touched.add(port);
  }
}

/** Why these MACs may not be registered under a token binding (`allowed`, null: any), or null. */
export function macRefusal(allowed: readonly MacKey[] | null, macs: readonly MacKey[]): ControlAnswer | null {
  if (macs.length > MAX_MACS_PER_PORT) return { status: AckStatus.TooManyMacs, reason: `a port owns at most ${MAX_MACS_PER_PORT} MACs` };
  for (const mac of macs) {
    if (!isUsableUnicastMac(mac)) return { status: AckStatus.InvalidMac, reason: `${formatMac(mac)} is not a usable unicast MAC` };
    if (allowed !== null && !allowed.includes(mac)) return { status: AckStatus.Policy, reason: `${formatMac(mac)} is not among the MACs the join token allows` };
  }
  return null;
}
