/**
 * A cell's platform side (docs/cells.md §4): the pure Cell around the relay's
 * switch, and the trunk calls to its peers as Durable Object RPC. At the end
 * of every event (`pump`) the cell announces new registered MACs and its
 * filter, and sends each peer's pending batch if no call to it is in flight;
 * a returning call sends what piled up meanwhile. An idle trunk holds nothing
 * and costs nothing: the only timers are the retry of a call deferred by a
 * failure's backoff (at most one per cell, 100 ms to 10 s) and the deferred
 * write of the cell's snapshot (at most one, ≤ 1 s).
 *
 * A call refused whole (the peer is not a cell yet) is not retried from its
 * own answer: that loop was the `wrangler dev` hang of docs/cells.md §0.
 */
import type { CellApi, CellMembership, TrunkAnswer } from "../../contract/cell-api.ts";
import type { CellDescription } from "../../contract/segment-api.ts";
import { Cell, type CellSnapshot } from "../../datapath/cells/cell.ts";
import type { TrunkBatch } from "../../datapath/cells/trunk-records.ts";
import { formatMac, type MacKey } from "../../datapath/mac.ts";
import { CloseCode } from "../../datapath/tunnel/close-codes.ts";
import type { SegmentConfig } from "../config.ts";
import { IPAM_PORT_ID } from "../ipam-host.ts";
import type { SegmentRelay } from "../relay.ts";

/** Finds a peer cell's stub (a new one per call: a stub that threw must not be reused). */
export type PeerStub = (index: number) => Pick<CellApi, "trunk">;

/** Where a cell keeps its snapshot (docs/cells.md §0): null removes it. */
export interface SnapshotStore {
  load(): CellSnapshot | undefined;
  save(snapshot: CellSnapshot | null): void;
}

/**
 * Past this many routes from peers the snapshot is not stored (and an older one is removed): a restart
 * then waits for the peers' full announces, as without storage. One stored value stays small.
 */
export const MAX_STORED_ROUTES = 1024;
/**
 * At most one snapshot write per this many ms: a bridge port learning MAC after MAC makes every trunk
 * call carry new routes, and storage writes are billed. A change within the interval is stored by a
 * timer at its end (a restart before that restores a slightly older view, which the peers' full
 * announces then replace).
 */
export const SNAPSHOT_INTERVAL_MS = 1000;

export class CellHost {
  readonly cell: Cell;
  /** Set when the segment was deleted: calls still returning send nothing more. */
  private stopped = false;
  /** The pending retry of calls deferred by a failure's backoff. */
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  /** The cell's remoteVersion last stored, and when. */
  private storedVersion: number;
  private storedAt = -Infinity;
  private snapshotTimer: ReturnType<typeof setTimeout> | null = null;
  /** Cells 0..created−1 exist; the others (region placement's unused indexes) get no call until they are made. */
  private created: number;

  constructor(
    readonly membership: CellMembership,
    readonly epoch: number,
    private readonly relay: SegmentRelay,
    config: SegmentConfig,
    private readonly peer: PeerStub,
    private readonly store: SnapshotStore,
    private readonly clock: () => number = Date.now,
  ) {
    this.cell = new Cell({ index: membership.index, epoch, generation: membership.generation }, relay.switch, {
      maxLearned: config.learnLimitPerSegment, agingMs: config.agingSeconds * 1000, segmentQueueBytes: config.segmentQueueBytes,
      staticLost: (mac) => this.closeHolder(mac),
    }, clock);
    for (let index = 0; index < membership.cells; index++) if (index !== membership.index) this.cell.addPeer(index);
    this.created = membership.directory?.length ?? membership.cells;
    for (let index = this.created; index < membership.cells; index++) this.cell.peerNotYet(index);
    const snapshot = store.load();
    if (snapshot !== undefined) this.cell.restore(snapshot);
    this.storedVersion = this.cell.remoteVersion;
  }

  /** The home made cells up to `count − 1` (region placement): calls to them may go. */
  peersCreated(count: number): void {
    for (let index = this.created; index < count; index++) this.cell.peerExists(index);
    this.created = Math.max(this.created, count);
  }

  /** The alarm: remote learned routes past their lifetime go. */
  age(): void {
    this.cell.age();
    this.saveSnapshot();
  }

  /** Stores the peers' routes and filters when they changed (rare: joins, leaves, MAC moves, resets). */
  private saveSnapshot(): void {
    if (this.cell.remoteVersion === this.storedVersion) return;
    const now = this.clock();
    if (now - this.storedAt < SNAPSHOT_INTERVAL_MS) {
      this.snapshotTimer ??= setTimeout(() => {
        this.snapshotTimer = null;
        if (!this.stopped) this.saveSnapshot();
      }, this.storedAt + SNAPSHOT_INTERVAL_MS - now);
      return;
    }
    this.storedAt = now;
    this.storedVersion = this.cell.remoteVersion;
    const snapshot = this.cell.snapshot();
    this.store.save(snapshot.routes.length > MAX_STORED_ROUTES ? null : snapshot);
  }

  /** The segment was deleted: no more calls. */
  stop(): void {
    this.stopped = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.snapshotTimer !== null) clearTimeout(this.snapshotTimer);
    this.snapshotTimer = null;
  }

  /** End of an event: announce what changed, then make every call that is due. */
  pump(): void {
    if (this.stopped) return;
    this.cell.syncStatics(this.localStatics(), staticSeq(this.clock()));
    this.cell.syncArpBindings(this.relay.switch.port(IPAM_PORT_ID)?.service ?? null);
    this.cell.refreshFilter();
    for (const { peer, batch } of this.cell.take()) this.call(peer, batch);
    this.scheduleRetry();
  }

  /** Calls deferred by a failure's backoff go when it ends, even if no other event comes. */
  private scheduleRetry(): void {
    const due = this.cell.nextRetry();
    if (due === null || this.retryTimer !== null) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.pump();
    }, Math.max(0, due - this.clock()));
  }

  /** An incoming trunk call: applied, local ports' messages sent, and our own calls made. */
  receive(batch: TrunkBatch): TrunkAnswer {
    const received = this.cell.receive(batch);
    this.saveSnapshot();
    this.relay.switch.flush();
    this.pump();
    return received.ok ? { ok: true, reply: received.value } : { ok: false, code: received.error.code, message: received.error.message };
  }

  /** This cell for the admin API. */
  describe(): CellDescription {
    const trunks: CellDescription["trunks"] = [];
    for (let index = 0; index < this.created; index++) {
      const port = this.cell.trunkPort(index);
      const outbox = this.cell.outbox(index);
      if (port === undefined || outbox === undefined) continue;
      const { rxFrames, txFrames } = port.state.counters;
      const { calls, callFailures, backlogDrops, failedFrames, unreachableFrames } = outbox.counters;
      trunks.push({ peer: index, rxFrames, txFrames, calls, callFailures, backlogDrops, failedFrames, unreachableFrames });
    }
    return {
      index: this.membership.index, epoch: this.epoch, ports: this.relay.portCount, remoteRoutes: this.cell.routes.remoteCount,
      arpSuppressed: this.cell.arpSuppressed, trunks,
    };
  }

  private call(peer: number, batch: TrunkBatch): void {
    this.peer(peer).trunk(batch).then(
      (answer) => {
        if (!answer.ok) {
          // Not a cell (yet), or another generation: nothing more until it calls (no retry from here).
          this.cell.refused(peer);
          this.relay.switch.flush();
          return;
        }
        this.cell.completed(peer, answer.reply);
        this.saveSnapshot();
        // Completions that waited for this call (CellCompletions) go out now.
        this.relay.switch.flush();
        this.pump();
      },
      (error: unknown) => {
        this.cell.failed(peer, isOverloaded(error));
        this.relay.switch.flush();
        this.scheduleRetry();
      },
    );
  }

  /** A registered MAC of a port here lost to an earlier claim on another cell: that port is closed, as a second claimant within one cell is refused. */
  private closeHolder(mac: MacKey): void {
    for (const runtime of this.relay.runtimes()) {
      if (runtime.port.state.macs.includes(mac)) {
        this.relay.closePort(runtime, CloseCode.MacTaken, `${formatMac(mac)} is registered by a port on another cell of this segment`);
      }
    }
    this.relay.switch.flush();
  }

  /** Registered MACs of the cell's open client ports, and of its services (the home's IPAM service). */
  private localStatics(): Set<MacKey> {
    const macs = new Set<MacKey>();
    for (const port of this.relay.switch.allPorts()) {
      if (!port.open || port.mode === "trunk") continue;
      for (const mac of port.state.macs) macs.add(mac);
    }
    return macs;
  }
}

/**
 * The sequence number of a registered MAC claimed at `now`: earlier claims get higher numbers, so the
 * first port to register a MAC keeps it segment-wide, as within one cell (higher seq wins, RFC 7432 rules).
 * Claims by the home (docs/cells.md §5.2) would replace this; see the status in docs/cells.md.
 */
function staticSeq(now: number): number {
  return Number.MAX_SAFE_INTEGER - now;
}

/** Whether a stub error says the peer is overloaded (do not retry it at once). */
function isOverloaded(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { overloaded?: unknown }).overloaded === true;
}
