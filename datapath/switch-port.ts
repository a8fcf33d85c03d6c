/**
 * A port of the segment switch: what it negotiated, its RX credits and queue,
 * its outgoing messages, its counters, and the sink through which it reaches
 * the platform. The persistent part is `state`, plain data the durable layer
 * stores in the socket attachment; everything else is rebuilt from it.
 */
import type { ReceiveFilter } from "./bridge.ts";
import type { PortCountersData } from "./counters.ts";
import { DEFAULT_MAX_FRAME_SIZE } from "./ethernet.ts";
import type { MacKey } from "./mac.ts";
import type { PolicerLimits, PolicerState } from "./policer.ts";
import type { RawEgressState } from "./raw-egress.ts";
import { PortOutput } from "./port-output.ts";
import type { PortKind } from "./port-kind.ts";
import type { ServicePort } from "./service-port.ts";
import { Feature } from "./tunnel/constants.ts";
import type { RxCreditLedger, RxCreditState } from "./tunnel/rx-credits.ts";

/** How a port speaks: ring descriptors (`edgelan.v1`), one raw frame per message, a service inside the segment, or a trunk to another cell. */
export type SwitchPortMode = "descriptor" | "raw" | "service" | "trunk";

/** Everything of a port the switch needs again after an eviction: plain data (structured clone), small. */
export interface SwitchPortState {
  kind: PortKind;
  macs: MacKey[];
  filter: ReceiveFilter;
  /** Granted feature bits (descriptor ports; 0 before WELCOME). */
  features: number;
  /** Granted TX window (descriptor ports; 0 before WELCOME). */
  txWindow: number;
  credits: RxCreditState | null;
  counters: PortCountersData;
  /** Completion runs held under LazyCompletions, flat [firstId, count, status, …]. */
  heldCompletions: number[];
  /** Ingress token buckets (rate limit, storm control); absent until the port first sends. */
  policer?: PolicerState;
  /** A raw port's egress bound (raw-egress.ts); absent until the segment first sends it a frame. */
  rawEgress?: RawEgressState;
}

/** What a port's state change needs from the platform: "state" now (credits, queue, MACs, filter), "counters" soon. */
export type PortChange = "state" | "counters";

/** How the switch reaches the platform for one port. Never a socket: the durable layer implements it. */
export interface PortSink {
  /** A finished message (descriptor port) or one frame (raw port). The sink may keep the bytes. Returns false if refused (closing). */
  send(bytes: Uint8Array): boolean;
  /** The port's `state` changed; called at most once per port per `SegmentSwitch.flush()`. */
  changed(change: PortChange): void;
  /**
   * The switch removed the port: close its socket with this code and reason. 4009: it held a MAC
   * without a token binding and the MAC's token holder arrived (docs/datapath.md "MAC ownership");
   * 4029: it kept sending far past its rate limits (policer.ts MAX_REFUSED_PER_SECOND).
   */
  evicted(code: number, reason: string): void;
}

const CHANGE_NONE = 0;
const CHANGE_COUNTERS = 1;
const CHANGE_STATE = 2;

export class SwitchPort {
  /** RX credits and queue (descriptor ports once open). */
  ledger: RxCreditLedger | null = null;
  /** Outgoing messages (descriptor ports). */
  readonly output: PortOutput | null;
  /** Whether the bridge knows the port (it switches frames). */
  open = false;
  /** Own untagged frame limit: DEFAULT_MAX_FRAME_SIZE without LargeFrames, else Infinity (the segment's). */
  frameCap = Infinity;
  /** Whether tagged frames may be sent and delivered (Vlan, or a raw or service port). */
  vlan = true;
  /** Whether the port takes super-frames with their virtio-net header (Gso). */
  gso = false;
  /** True when frameCap or vlan can refuse a frame the segment accepts: egress then checks each frame. */
  restricted = false;
  /** Per-port policing limits that override the segment's, field by field (join-token claims); null: the segment's. */
  limits: Partial<PolicerLimits> | null = null;
  /** MACs the port's join token binds it to (they are its by right), or null when unbound. */
  boundMacs: readonly MacKey[] | null = null;
  private change = CHANGE_NONE;

  constructor(
    readonly id: number,
    readonly mode: SwitchPortMode,
    readonly state: SwitchPortState,
    readonly sink: PortSink,
    readonly service: ServicePort | null = null,
  ) {
    this.output = mode === "descriptor" ? new PortOutput((message) => sink.send(message)) : null;
    this.applyFeatures();
  }

  /** Derives limits and output rules from `state.features` (raw and service ports take everything the segment does). */
  applyFeatures(): void {
    const { features } = this.state;
    if (this.mode !== "descriptor") return;
    this.frameCap = (features & Feature.LargeFrames) !== 0 ? Infinity : DEFAULT_MAX_FRAME_SIZE;
    this.vlan = (features & Feature.Vlan) !== 0;
    this.gso = (features & Feature.Gso) !== 0;
    this.restricted = this.frameCap !== Infinity || !this.vlan;
    this.output?.configure(features, this.state.txWindow);
  }

  /** Largest untagged frame the port may send and receive, given the segment's maximum. */
  maxFrameSize(segmentMax: number): number {
    return Math.min(segmentMax, this.frameCap);
  }

  /** Notes a change for the next flush ("state" outranks "counters"). */
  touch(change: PortChange): void {
    const level = change === "state" ? CHANGE_STATE : CHANGE_COUNTERS;
    if (level > this.change) this.change = level;
  }

  /** The pending change, cleared; held lazy completions that changed count as a counters-like change. */
  takeChange(): PortChange | null {
    if (this.output !== null && this.output.takeHeldChanged()) this.touch("counters");
    const change = this.change;
    this.change = CHANGE_NONE;
    return change === CHANGE_STATE ? "state" : change === CHANGE_COUNTERS ? "counters" : null;
  }

  /** Refreshes the parts of `state` kept live elsewhere (credits, held completions) and returns it. */
  snapshot(): SwitchPortState {
    if (this.ledger !== null) this.state.credits = this.ledger.state();
    if (this.output !== null) this.state.heldCompletions = this.output.heldRuns();
    return this.state;
  }
}
