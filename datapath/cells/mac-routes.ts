/**
 * MAC reachability between the cells of one segment (docs/cells.md §5): which
 * cell owns a MAC, decided by announcements with sequence numbers, after the
 * MAC mobility rules of RFC 7432 §15 (EVPN):
 *
 *   - an update from the same origin replaces its older route, whatever the seq;
 *   - otherwise the higher seq wins; equal seq: the lower cell index wins;
 *   - a static (registered) route beats a learned one; static MACs move only by
 *     a higher seq granted by the home (a resume on another cell);
 *   - a cell that learns locally a MAC it has a remote route for announces it
 *     with that route's seq + 1; a cell whose own route loses drops it;
 *   - a MAC whose owner changes MOVE_LIMIT times within MOVE_WINDOW_MS is frozen:
 *     its current owner stays and its routes are ignored until the freeze ends;
 *   - a new epoch of an origin (it reset) voids every route from it;
 *   - remote learned routes expire 1.5 × aging after their last announcement.
 *
 * The table is pure: the clock is passed in, nothing is sent. The cell applies
 * the outcomes (forget a local learned entry, close a superseded port).
 */
import type { MacKey } from "../mac.ts";

/** The VLAN of a static route: it answers in every VLAN, as a registered MAC does in the fdb. */
export const ANY_VLAN = 0xffff;
/** RFC 7432 §15.1 defaults: N moves within M seconds make a MAC a duplicate. */
export const MOVE_LIMIT = 5;
export const MOVE_WINDOW_MS = 180_000;
/** Remote learned routes live this many aging periods after their last announcement. */
export const REMOTE_EXPIRY_FACTOR = 1.5;

export type RouteKind = "learned" | "static";

/** One announcement (trunk record mac-route, 0x41). */
export interface MacRoute {
  mac: MacKey;
  /** VLAN of a learned route; ANY_VLAN for a static one. */
  vlan: number;
  kind: RouteKind;
  seq: number;
  /** Index of the cell that holds the MAC. */
  origin: number;
}

/** What applying an announcement did. */
export const RouteOutcome = {
  /** Installed or replaced: unicast to the MAC now goes to the origin. */
  Installed: "installed",
  /** Lost to the route in place (lower seq, or equal seq from a higher index). */
  Stale: "stale",
  /** A learned route for a MAC registered (static) here or elsewhere: ignored. */
  Conflict: "conflict",
  /** The MAC is frozen after too many moves. */
  Frozen: "frozen",
  /** The table is full of remote learned routes. */
  Limit: "limit",
  /** Installed, and it supersedes this cell's own route: the caller forgets its local entry. */
  LocalLost: "local-lost",
} as const;
export type RouteOutcome = (typeof RouteOutcome)[keyof typeof RouteOutcome];

export interface MacRouteLimits {
  /** Remote learned routes held at most (the segment's learnLimitPerSegment). */
  maxLearned: number;
  /** The segment's aging time; remote learned routes expire after REMOTE_EXPIRY_FACTOR × this. */
  agingMs: number;
}

/** Counters of the route table (admin API: per cell). */
export interface MacRouteCounters {
  installed: number;
  stale: number;
  conflicts: number;
  routeLimitHits: number;
  macFlaps: number;
  withdrawn: number;
  expired: number;
}

interface Entry extends MacRoute {
  /** Learned remote routes: when they expire (ms); Infinity for static and local routes. */
  expiresAt: number;
}

interface MoveHistory {
  times: number[];
  frozenUntil: number;
}

export class MacRouteTable {
  readonly counters: MacRouteCounters = { installed: 0, stale: 0, conflicts: 0, routeLimitHits: 0, macFlaps: 0, withdrawn: 0, expired: 0 };
  /** Per VLAN (ANY_VLAN for static), MAC → the winning route, own routes included. */
  private readonly tables = new Map<number, Map<MacKey, Entry>>();
  /** The newest epoch seen from each origin. */
  private readonly epochs = new Map<number, number>();
  private readonly moves = new Map<MacKey, MoveHistory>();
  /**
   * Per MAC, the best static route that lost to the one in place. Announcements from different cells
   * are not ordered, so a claim can arrive before the withdraw of the claim it lost to; when that
   * withdraw comes, the runner-up takes over instead of leaving the MAC without a route.
   */
  private readonly runnersUp = new Map<MacKey, MacRoute>();
  private remoteLearned = 0;

  constructor(readonly self: number, private limits: MacRouteLimits) {}

  reconfigure(limits: MacRouteLimits): void {
    this.limits = { ...limits };
  }

  /** The cell holding `mac` in `vlan` (static first), or undefined; this cell's own index for its own routes. */
  owner(mac: MacKey, vlan: number): number | undefined {
    const fixed = this.tables.get(ANY_VLAN)?.get(mac);
    if (fixed !== undefined) return fixed.origin;
    return this.tables.get(vlan)?.get(mac)?.origin;
  }

  /** The route in place for (mac, vlan) of that kind, if any. */
  route(mac: MacKey, vlan: number): Readonly<MacRoute> | undefined {
    return this.tables.get(vlan)?.get(mac);
  }

  /**
   * This cell learned `mac` locally (a bridge port): returns the route to announce (seq one above any
   * remote route for it), or null if a static route owns the MAC, or the MAC is frozen (not announced).
   */
  learnLocal(mac: MacKey, vlan: number, now: number): MacRoute | null {
    if (this.tables.get(ANY_VLAN)?.has(mac) === true) {
      this.counters.conflicts++;
      return null;
    }
    if (this.frozen(mac, now)) return null;
    const current = this.tables.get(vlan)?.get(mac);
    if (current?.origin === this.self) return { ...current };
    const route: MacRoute = { mac, vlan, kind: "learned", seq: current === undefined ? 0 : current.seq + 1, origin: this.self };
    this.put(route, Infinity, current, now);
    return { ...route };
  }

  /** This cell registered `mac` on a port with the seq the home granted: returns the route to announce. */
  claimLocal(mac: MacKey, seq: number, now: number): MacRoute {
    const route: MacRoute = { mac, vlan: ANY_VLAN, kind: "static", seq, origin: this.self };
    this.put(route, Infinity, this.tables.get(ANY_VLAN)?.get(mac), now);
    return { ...route };
  }

  /** This cell forgot its own route (aged out, port closed): returns the withdraw to send, or null if it held none. */
  releaseLocal(mac: MacKey, vlan: number): MacRoute | null {
    const table = this.tables.get(vlan);
    const entry = table?.get(mac);
    if (table === undefined || entry === undefined || entry.origin !== this.self) return null;
    table.delete(mac);
    return { mac: entry.mac, vlan: entry.vlan, kind: entry.kind, seq: entry.seq, origin: entry.origin };
  }

  /** Applies a peer's announcement (RFC 7432 §15 rules above). */
  apply(route: MacRoute, now: number): RouteOutcome {
    if (route.origin === this.self) return this.count(RouteOutcome.Stale);
    if (this.frozen(route.mac, now)) return RouteOutcome.Frozen;
    if (route.kind === "learned" && this.tables.get(ANY_VLAN)?.has(route.mac) === true) return this.count(RouteOutcome.Conflict);
    const current = this.tables.get(route.vlan)?.get(route.mac);
    if (current !== undefined && current.origin !== route.origin && !wins(route, current)) {
      if (route.kind === "static") this.keepRunnerUp(route);
      return this.count(RouteOutcome.Stale);
    }
    const isNew = current === undefined || current.origin === this.self;
    if (route.kind === "learned" && isNew && this.remoteLearned >= this.limits.maxLearned) return this.count(RouteOutcome.Limit);
    const expiresAt = route.kind === "learned" ? now + REMOTE_EXPIRY_FACTOR * this.limits.agingMs : Infinity;
    this.put(route, expiresAt, current, now);
    this.counters.installed++;
    const lost = current?.origin === this.self || (route.kind === "static" && this.dropLocalLearned(route.mac));
    return lost ? RouteOutcome.LocalLost : RouteOutcome.Installed;
  }

  /** A peer withdrew its route; only the origin's own route at that seq or older goes (a static runner-up then takes over). Returns whether one went. */
  withdraw(mac: MacKey, vlan: number, seq: number, origin: number, now: number): boolean {
    const table = this.tables.get(vlan);
    const entry = table?.get(mac);
    const runnerUp = this.runnersUp.get(mac);
    if (runnerUp?.origin === origin && vlan === ANY_VLAN) this.runnersUp.delete(mac);
    if (table === undefined || entry === undefined || entry.origin !== origin || entry.origin === this.self || entry.seq > seq) return false;
    this.remove(table, mac, entry);
    this.counters.withdrawn++;
    if (vlan === ANY_VLAN && runnerUp !== undefined && runnerUp.origin !== origin) {
      this.runnersUp.delete(mac);
      this.put(runnerUp, Infinity, undefined, now);
    }
    return true;
  }

  /** The newest epoch seen from `origin`, if any. */
  epochOf(origin: number): number | undefined {
    return this.epochs.get(origin);
  }

  /**
   * A peer showed `epoch`: a newer one than seen before means it reset, and every route from it is void.
   * Returns how many routes went (0 for the same or an older epoch, or the first sighting of this origin).
   */
  observeEpoch(origin: number, epoch: number): number {
    const known = this.epochs.get(origin);
    if (known !== undefined && epoch <= known) return 0;
    this.epochs.set(origin, epoch);
    return known === undefined ? 0 : this.dropOrigin(origin);
  }

  /** Forgets every route from `origin` (it reset, or left the segment); returns how many. */
  dropOrigin(origin: number): number {
    for (const [mac, route] of this.runnersUp) if (route.origin === origin) this.runnersUp.delete(mac);
    let removed = 0;
    for (const table of this.tables.values()) {
      for (const [mac, entry] of table) {
        if (entry.origin !== origin) continue;
        this.remove(table, mac, entry);
        removed++;
      }
    }
    return removed;
  }

  /** Removes remote learned routes past their lifetime; returns how many. */
  expire(now: number): number {
    let removed = 0;
    for (const [vlan, table] of this.tables) {
      if (vlan === ANY_VLAN) continue;
      for (const [mac, entry] of table) {
        if (entry.expiresAt > now) continue;
        this.remove(table, mac, entry);
        removed++;
      }
    }
    this.counters.expired += removed;
    for (const [mac, history] of this.moves) {
      const last = history.times[history.times.length - 1] ?? 0;
      if (history.frozenUntil <= now && now - last >= MOVE_WINDOW_MS) this.moves.delete(mac);
    }
    return removed;
  }

  /** This cell's own routes (for a full announce to a new or reset peer). */
  localRoutes(): MacRoute[] {
    const out: MacRoute[] = [];
    for (const table of this.tables.values()) {
      for (const entry of table.values()) {
        if (entry.origin === this.self) out.push({ mac: entry.mac, vlan: entry.vlan, kind: entry.kind, seq: entry.seq, origin: entry.origin });
      }
    }
    return out;
  }

  /** Routes held from other cells with their expiry (ms; null: never), and the epoch seen from each cell: what a restart restores. */
  remoteState(): { routes: Array<MacRoute & { expiresAt: number | null }>; epochs: Array<[number, number]> } {
    const routes: Array<MacRoute & { expiresAt: number | null }> = [];
    for (const table of this.tables.values()) {
      for (const entry of table.values()) {
        if (entry.origin === this.self) continue;
        routes.push({ mac: entry.mac, vlan: entry.vlan, kind: entry.kind, seq: entry.seq, origin: entry.origin, expiresAt: Number.isFinite(entry.expiresAt) ? entry.expiresAt : null });
      }
    }
    return { routes, epochs: [...this.epochs] };
  }

  /** Puts back what `remoteState` gave (into an empty table, at a restart); routes expired by `now` stay out. */
  restoreRemote(state: { routes: ReadonlyArray<MacRoute & { expiresAt: number | null }>; epochs: ReadonlyArray<[number, number]> }, now: number): void {
    for (const [origin, epoch] of state.epochs) this.epochs.set(origin, epoch);
    for (const { expiresAt, ...route } of state.routes) {
      if (route.origin === this.self || (expiresAt !== null && expiresAt <= now)) continue;
      if (route.kind === "learned" && this.remoteLearned >= this.limits.maxLearned) continue;
      this.put(route, expiresAt ?? Infinity, this.tables.get(route.vlan)?.get(route.mac), now);
    }
  }

  /** Learned routes held from other cells (bridge ports' MACs there). */
  get remoteLearnedCount(): number {
    return this.remoteLearned;
  }

  /** Routes held from other cells. */
  get remoteCount(): number {
    let count = 0;
    for (const table of this.tables.values()) for (const entry of table.values()) if (entry.origin !== this.self) count++;
    return count;
  }

  private keepRunnerUp(route: MacRoute): void {
    const kept = this.runnersUp.get(route.mac);
    if (kept === undefined || kept.origin === route.origin || wins(route, kept)) this.runnersUp.set(route.mac, { ...route });
  }

  private put(route: MacRoute, expiresAt: number, current: Entry | undefined, now: number): void {
    let table = this.tables.get(route.vlan);
    if (table === undefined) {
      table = new Map();
      this.tables.set(route.vlan, table);
    }
    if (current !== undefined) this.remove(table, route.mac, current);
    if (current !== undefined && current.origin !== route.origin) this.noteMove(route.mac, now);
    table.set(route.mac, { mac: route.mac, vlan: route.vlan, kind: route.kind, seq: route.seq, origin: route.origin, expiresAt });
    if (route.kind === "learned" && route.origin !== this.self) this.remoteLearned++;
  }

  private remove(table: Map<MacKey, Entry>, mac: MacKey, entry: Entry): void {
    table.delete(mac);
    if (entry.kind === "learned" && entry.origin !== this.self) this.remoteLearned--;
  }

  /** A static route arrived: this cell's own learned entries of that MAC (any VLAN) lose. */
  private dropLocalLearned(mac: MacKey): boolean {
    let dropped = false;
    for (const [vlan, table] of this.tables) {
      if (vlan === ANY_VLAN) continue;
      const entry = table.get(mac);
      if (entry?.origin !== this.self) continue;
      table.delete(mac);
      dropped = true;
    }
    return dropped;
  }

  /** Counts an owner change; the MOVE_LIMIT-th within MOVE_WINDOW_MS freezes the MAC for the expiry time. */
  private noteMove(mac: MacKey, now: number): void {
    let history = this.moves.get(mac);
    if (history === undefined) {
      history = { times: [], frozenUntil: 0 };
      this.moves.set(mac, history);
    }
    const times = history.times.filter((time) => now - time < MOVE_WINDOW_MS);
    times.push(now);
    history.times = times;
    if (times.length >= MOVE_LIMIT) {
      history.frozenUntil = now + REMOTE_EXPIRY_FACTOR * this.limits.agingMs;
      history.times = [];
      this.counters.macFlaps++;
    }
  }

  private frozen(mac: MacKey, now: number): boolean {
    const history = this.moves.get(mac);
    if (history === undefined) return false;
    if (history.frozenUntil > now) return true;
    if (history.times.length === 0 || now - (history.times[history.times.length - 1] as number) >= MOVE_WINDOW_MS) this.moves.delete(mac);
    return false;
  }

  private count(outcome: RouteOutcome): RouteOutcome {
    if (outcome === RouteOutcome.Stale) this.counters.stale++;
    else if (outcome === RouteOutcome.Conflict) this.counters.conflicts++;
    else if (outcome === RouteOutcome.Limit) this.counters.routeLimitHits++;
    return outcome;
  }
}

/** Whether `candidate` beats `current` from another origin: static over learned, then higher seq, then lower index. */
function wins(candidate: MacRoute, current: MacRoute): boolean {
  if (candidate.kind !== current.kind) return candidate.kind === "static";
  if (candidate.seq !== current.seq) return candidate.seq > current.seq;
  return candidate.origin < current.origin;
}
