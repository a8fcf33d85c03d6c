/**
 * A Segment Durable Object's cell role (docs/cells.md §3): its membership
 * (index, cell count, generation, stored), its epoch (a new one whenever it
 * starts without sockets: its routes at peers are void), the trunk host, and
 * for the home cell the placement of joining ports (a fixed count in turn, or by region: §3.4) and the
 * fan-out of describe and delete. A segment of one cell has no membership: every method here is
 * then a no-op or answers "not active", so `cells: 1` takes today's path.
 */
import { cellObjectName, CELL_HINT_HEADER, PLACE_HEADER, REGION_HEADER, type CellLoad, type CellMembership, type CellResetOutcome } from "../../contract/cell-api.ts";
import { errorResponse } from "../../contract/http-error.ts";
import type { TokenPolicy } from "../../contract/port-request.ts";
import type { CellDescription, Env, PortInfo, SegmentApi, SegmentConfig, SegmentDescription } from "../../contract/segment-api.ts";
import { toHex } from "../handshake.ts";
import type { SegmentRelay } from "../relay.ts";
import { CellHost } from "./cell-host.ts";
import { PORT_IDS_PER_CELL } from "../../datapath/cells/port-ids.ts";
import type { CellSnapshot } from "../../datapath/cells/cell.ts";
import { TOKEN_EPOCH_KEY } from "../token-lifecycle.ts";
import { cellSlots, portsPerCell, regionPolicyOf } from "../config.ts";
import { isRegion, type Region } from "../../datapath/cells/region.ts";
import { placeByRegion, type RegionPolicy } from "../../datapath/cells/region-placement.ts";
import { segmentLimitRefusal, sumOverCells, type SegmentSummary } from "./segment-summary.ts";

const MEMBERSHIP_KEY = "cell-membership";
/** How long the home waits for one cell to take a revocation before it answers without that cell's count. */
const REVOKE_CALL_TIMEOUT_MS = 5_000;

/** `promise`, or a rejection after `ms` (the call itself goes on). */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
const EPOCH_KEY = "cell-epoch";
const NEXT_PLACE_KEY = "cell-next-place";
/** The peers' routes and filters as this cell last knew them (restored at a restart). */
const SNAPSHOT_KEY = "cell-snapshot";

export class CellPlacement {
  private membership: CellMembership | null;
  private host: CellHost | null = null;

  constructor(private readonly ctx: DurableObjectState, private readonly env: Env) {
    this.membership = ctx.storage.kv.get<CellMembership>(MEMBERSHIP_KEY) ?? null;
  }

  /** Whether this object is a cell of a segment with more than one. */
  get active(): boolean {
    return this.membership !== null && this.membership.cells > 1;
  }

  /** Added to the segment's port counter: cell i's ids never meet another cell's. */
  get portIdBase(): number {
    return this.active ? (this.membership as CellMembership).index * PORT_IDS_PER_CELL : 0;
  }

  /**
   * The constructor ran: a new epoch. Without sockets nothing of this cell survived (a reset); after a
   * hibernation its ports did, but its routes from peers are in memory only, so it starts over too: at
   * its first event it sends each peer a full announce under the new epoch, and each peer answers with
   * its own (docs/cells.md §5.5; the design keeps routes in storage instead, not done yet).
   */
  started(): void {
    if (this.membership === null) return;
    this.ctx.storage.kv.put(EPOCH_KEY, (this.ctx.storage.kv.get<number>(EPOCH_KEY) ?? 0) + 1);
  }

  /**
   * The home's settings changed: a segment that has cells now becomes (or stays) cell 0 of them, and
   * the cells that exist get the new settings.
   */
  async configured(segment: string, config: SegmentConfig): Promise<void> {
    const cells = cellSlots(config.cells);
    if (cells <= 1 && this.membership === null) return;
    const previous = this.membership === null ? 1 : this.cellCount();
    const generation = this.membership?.generation ?? toHex(crypto.getRandomValues(new Uint8Array(16)));
    // Region placement starts with the home alone; its directory grows as placement makes cells.
    const directory = regionPolicyOf(config.cells) === null ? {} : { directory: this.membership?.directory ?? [null] };
    this.adopt({ segment, index: 0, cells, generation, ...directory });
    // The other cells get the new settings (an existing segment's cells; a new one's are made by placement).
    for (let index = 1; index < Math.min(previous, cells); index++) await this.stub(index).adoptCell(this.membershipFor(index), config);
  }

  /** The membership the home gives cell `index`: its own, with that index and the home's token epoch. */
  private membershipFor(index: number): CellMembership {
    return { ...(this.membership as CellMembership), index, ...this.tokenEpoch() };
  }

  /** Cells that exist: every index of a fixed count, or those region placement made so far. */
  private cellCount(): number {
    const membership = this.membership as CellMembership;
    return membership.directory?.length ?? membership.cells;
  }

  /** The home's token epoch, for the cells it configures. */
  private tokenEpoch(): { tokenEpoch?: string } {
    const epoch = this.ctx.storage.kv.get<string>(TOKEN_EPOCH_KEY);
    return epoch === undefined ? {} : { tokenEpoch: epoch };
  }

  /**
   * Whether this object runs the segment's services (the IPAM service: DHCP, ARP proxy, DNS): a
   * single-cell segment or the home. Other cells reach the home's services over their trunks, so a
   * segment has one lease table however many cells it has (docs/cells.md §0).
   */
  get runsServices(): boolean {
    return this.membership === null || this.membership.index === 0;
  }

  /** Whether this object keeps the segment's idle TTL: a single-cell segment or the home, never another cell. */
  get keepsTtl(): boolean {
    return this.membership === null || this.membership.index === 0;
  }

  /** The home asks every other cell whether it has ports (for the idle TTL). */
  async othersIdle(): Promise<boolean> {
    for (let index = 1; index < this.cellCount(); index++) {
      const remote = await this.stub(index).describeCell();
      if (remote !== null && remote.ports.length > 0) return false;
    }
    return true;
  }

  /**
   * Stores the membership; the trunk host is rebuilt with it on next use. A region directory only grows
   * (the home's pushes may arrive out of order): the longer one is kept, and its new cells may be called.
   */
  adopt(incoming: CellMembership): void {
    const known = this.membership?.directory;
    const membership = known !== undefined && incoming.directory !== undefined && known.length > incoming.directory.length ? { ...incoming, directory: known } : incoming;
    this.ctx.storage.kv.put(MEMBERSHIP_KEY, membership);
    if (this.ctx.storage.kv.get<number>(EPOCH_KEY) === undefined) this.ctx.storage.kv.put(EPOCH_KEY, 1);
    const changed = this.membership === null || this.membership.cells !== membership.cells || this.membership.index !== membership.index;
    this.membership = membership;
    if (changed) this.host = null;
    else if (membership.directory !== undefined) this.host?.peersCreated(membership.directory.length);
  }

  /** The trunk host around the relay (built once per instance), or null for a single-cell segment. */
  hostFor(relay: SegmentRelay, config: SegmentConfig): CellHost | null {
    if (!this.active) return null;
    if (this.host === null) {
      const membership = this.membership as CellMembership;
      const epoch = this.ctx.storage.kv.get<number>(EPOCH_KEY) ?? 1;
      const kv = this.ctx.storage.kv;
      this.host = new CellHost(membership, epoch, relay, config, (index) => this.stub(index), {
        load: () => kv.get<CellSnapshot>(SNAPSHOT_KEY),
        save: (snapshot) => (snapshot === null ? kv.delete(SNAPSHOT_KEY) : kv.put(SNAPSHOT_KEY, snapshot)),
      });
    }
    return this.host;
  }

  /** The alarm: remote learned routes past their lifetime go (nothing for a single-cell segment). */
  age(relay: SegmentRelay | null, config: SegmentConfig | undefined): void {
    if (!this.active || relay === null || config === undefined) return;
    this.hostFor(relay, config)?.age();
  }

  /** End of an event: trunk announcements and calls (nothing for a single-cell segment). */
  pump(relay: SegmentRelay | null, config: SegmentConfig | undefined): void {
    if (!this.active || relay === null || config === undefined) return;
    this.hostFor(relay, config)?.pump();
  }

  /**
   * The home admits and places a joining port (docs/api.md, "Segments of several cells"). It asks every
   * other cell made so far for its live load (one call each, in parallel: joins are rare) and refuses
   * the join when the segment's ports across all cells reach `maxPorts` (503) or the token's own ports
   * reach its `maxPorts` (403). Then it picks the hinted cell (`?cell=`) if it exists, else the least
   * loaded cell (a fixed count; ties in turn) or by the client's region. For another cell it adopts
   * that cell (creating it on first use, with its location hint) and answers the Worker with an
   * internal 307 naming it; for itself it answers null and accepts the socket as today. No
   * reservations: joins racing through the home may pass a limit by the joins in flight.
   */
  async placeElsewhere(request: Request, config: SegmentConfig, here: CellLoad, token: TokenPolicy | null): Promise<Response | null> {
    if ((this.membership as CellMembership).index !== 0) return null;
    const loads = await this.loads(here, token?.id ?? null);
    const refusal = segmentLimitRefusal(loads, config.maxPorts, token, (this.membership as CellMembership).segment);
    if (refusal !== null) return errorResponse(refusal);
    const hint = request.headers.get(CELL_HINT_HEADER);
    const policy = regionPolicyOf(config.cells);
    const ports = new Map([...loads].map(([index, load]) => [index, load?.ports ?? Infinity]));
    const target = policy === null
      ? { cell: this.pickLeastLoaded(hint, ports), created: false }
      : this.pickByRegion(hint, request.headers.get(REGION_HEADER), policy, portsPerCell(config), ports);
    if (target.cell === 0) return null;
    await this.stub(target.cell).adoptCell(this.membershipFor(target.cell), config);
    if (target.created) await this.announceDirectory(target.cell, config);
    const locationHint = this.regionOfCell(target.cell);
    return new Response(null, { status: 307, headers: { [PLACE_HEADER]: JSON.stringify(locationHint === null ? { cell: target.cell } : { cell: target.cell, locationHint }) } });
  }

  /**
   * Every made cell's load (the home's is `here`): a cell not adopted yet (a fixed count's cell that
   * never had a port) is empty; null for a cell whose call failed.
   */
  private async loads(here: CellLoad, tokenId: string | null): Promise<Map<number, CellLoad | null>> {
    const others = Array.from({ length: this.cellCount() - 1 }, (_, i) => i + 1);
    const answers = await Promise.all(others.map(async (index) => {
      try {
        return (await this.stub(index).cellLoad(tokenId)) ?? { ports: 0, tokenPorts: 0 };
      } catch {
        return null;
      }
    }));
    return new Map<number, CellLoad | null>([[0, here], ...others.map((index, i): [number, CellLoad | null] => [index, answers[i] ?? null])]);
  }

  /** A fixed count: the hinted cell if valid, else the least loaded that answered, ties broken in turn. */
  private pickLeastLoaded(hint: string | null, ports: ReadonlyMap<number, number>): number {
    const cells = this.cellCount();
    const asked = hint === null ? NaN : Number(hint);
    if (Number.isInteger(asked) && asked >= 0 && asked < cells) return asked;
    const next = this.ctx.storage.kv.get<number>(NEXT_PLACE_KEY) ?? 0;
    this.ctx.storage.kv.put(NEXT_PLACE_KEY, next + 1);
    let best = next % cells;
    for (let step = 0; step < cells; step++) {
      const index = (next + step) % cells;
      if ((ports.get(index) ?? Infinity) < (ports.get(best) ?? Infinity)) best = index;
    }
    return best;
  }

  /**
   * Region placement (docs/cells.md §3.4): the hinted cell if it exists, else `placeByRegion` over the
   * cells' live port counts. A new cell enters the directory before this returns, so a concurrent join
   * sees it.
   */
  private pickByRegion(hint: string | null, header: string | null, policy: RegionPolicy, capacity: number, ports: ReadonlyMap<number, number>): { cell: number; created: boolean } {
    const asked = hint === null ? NaN : Number(hint);
    if (Number.isInteger(asked) && asked >= 0 && asked < this.cellCount()) return { cell: asked, created: false };
    const region = isRegion(header) ? header : null;
    const choice = placeByRegion(region, this.directory().map((cellRegion, index) => ({ index, region: cellRegion, ports: ports.get(index) ?? 0 })), policy, capacity);
    if ("cell" in choice) return { cell: choice.cell, created: false };
    this.adopt({ ...(this.membership as CellMembership), directory: [...this.directory(), choice.region] });
    return { cell: choice.create, created: true };
  }

  /** Region placement's directory: each made cell's location hint (the home's is null). */
  private directory(): Array<Region | null> {
    return (this.membership as CellMembership).directory ?? [null];
  }

  /**
   * The home made cell `made`: every other cell gets the longer directory, so it may call the new cell
   * and keeps it across a restart. A cell that misses this learns of the new one when that one calls it.
   */
  private async announceDirectory(made: number, config: SegmentConfig): Promise<void> {
    const others = Array.from({ length: this.cellCount() }, (_, index) => index).filter((index) => index !== 0 && index !== made);
    await Promise.all(others.map((index) => this.stub(index).adoptCell(this.membershipFor(index), config).catch(() => undefined)));
  }

  /** The location hint cell `index` was made with (region placement), or null. */
  private regionOfCell(index: number): Region | null {
    return this.membership?.directory?.[index] ?? null;
  }

  /**
   * The home's describe with every cell's ports (each with its `cell`), per-cell counters, and the
   * segment's counters, forwarding table and queued bytes summed over its cells.
   */
  async describeAll(local: SegmentDescription): Promise<SegmentDescription> {
    const membership = this.membership as CellMembership;
    const ports: PortInfo[] = local.ports.map((port) => ({ ...port, cell: membership.index }));
    const cells: CellDescription[] = this.host === null ? [] : [this.host.describe()];
    const parts: SegmentSummary[] = [local];
    for (let index = 1; index < this.cellCount() && membership.index === 0; index++) {
      const remote = await this.stub(index).describeCell();
      if (remote === null) continue;
      ports.push(...remote.ports.map((port) => ({ ...port, cell: index })));
      cells.push(remote.cell);
      parts.push(remote);
    }
    // Region placement: each cell's location hint, from the home's directory.
    const withRegions = membership.directory === undefined ? cells : cells.map((cell) => ({ ...cell, region: this.regionOfCell(cell.index) }));
    return { ...local, ...sumOverCells(parts), ports, cells: withRegions };
  }

  /** This cell's view for the home's describe (null for a single-cell segment). */
  describeLocal(relay: SegmentRelay, config: SegmentConfig): CellDescription | null {
    return this.hostFor(relay, config)?.describe() ?? null;
  }

  /**
   * The home resets cell `index` of its segment (dev mode, for tests): the cell's instance aborts as a
   * crash would. `abortSelf` resets the home itself (index 0); then this call never returns.
   */
  async resetCell(index: number, abortSelf: () => never): Promise<CellResetOutcome> {
    const membership = this.membership;
    if (!this.active || membership === null || membership.index !== 0) {
      return { ok: false, code: "not-cells", message: "this segment runs as one Durable Object: it has no cells to reset" };
    }
    if (!Number.isInteger(index) || index < 0 || index >= this.cellCount()) {
      return { ok: false, code: "invalid-cell", message: `cell must be an index 0..${this.cellCount() - 1}; got ${index}` };
    }
    if (index === 0) abortSelf();
    try {
      await this.stub(index).abortCell();
    } catch {
      // The cell aborted while answering: that is the reset.
    }
    return { ok: true };
  }

  /**
   * The home revokes token `jti` on every other cell: each keeps the revocation (its own joins are placed
   * by the home, which refuses the token, but a cell checks again) and closes the token's ports it
   * holds. Returns the ports they closed; a cell that cannot be reached within 5 s, or that could not
   * take the revocation (its list full), is skipped: its ports with the token stay open until they close
   * or the token expires, and joins with it are refused by the home anyway.
   */
  async revokeOnOthers(jti: string): Promise<number> {
    const membership = this.membership;
    if (membership === null || membership.index !== 0 || !this.active) return 0;
    const others = Array.from({ length: this.cellCount() - 1 }, (_, i) => i + 1);
    const closed = await Promise.all(others.map(async (index): Promise<number> => {
      const outcome = await withTimeout(this.stub(index).revokeToken(jti).then((answer) => (answer?.ok === true ? answer.portsClosed : 0)), REVOKE_CALL_TIMEOUT_MS).catch(() => 0);
      return outcome;
    }));
    return closed.reduce((sum, count) => sum + count, 0);
  }

  /** The home deletes every other cell; returns the ports they closed. */
  async destroyOthers(): Promise<number> {
    const membership = this.membership;
    if (membership === null || membership.index !== 0) return 0;
    let closed = 0;
    for (let index = 1; index < this.cellCount(); index++) closed += (await this.stub(index).destroy())?.portsClosed ?? 0;
    return closed;
  }

  /** The segment was wiped (storage already erased). */
  forget(): void {
    this.host?.stop();
    this.membership = null;
    this.host = null;
  }

  /** A cell's stub; under region placement it carries the cell's hint, so whichever `get()` is first places it. */
  private stub(index: number): DurableObjectStub<SegmentApi> {
    const locationHint = this.regionOfCell(index);
    const name = cellObjectName((this.membership as CellMembership).segment, index);
    return locationHint === null ? this.env.SEGMENTS.getByName(name) : this.env.SEGMENTS.getByName(name, { locationHint });
  }
}
