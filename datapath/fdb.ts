import { formatMac, isUsableUnicastMac, type MacKey } from "./mac.ts";
import { fail, ok, type Result } from "./result.ts";

/*
 * The forwarding database of one segment (Linux br_fdb.c, in miniature).
 *
 * Two kinds of entries:
 * - static: a MAC a port registered. VLAN-agnostic (it answers a lookup in any
 *   VLAN), never ages, and never moves by learning: a learned sighting of a
 *   static MAC on another port is a conflict, counted and ignored.
 * - learned: (MAC, VLAN) seen as a source on a bridge port. Ages out after
 *   `agingMs` without being seen, moves when seen on another port, and is
 *   bounded per port and per segment.
 *
 * Keying: a MAC is 48 bits and a VLAN id 12, so (mac, vlan) needs 60 bits and
 * would not fit a double's 53-bit integer range as one number; a string key
 * would allocate per lookup. Instead each VLAN has its own Map<MacKey, entry>,
 * with VLAN 0 (untagged and priority-tagged) held in a field so the common
 * case is one Map lookup and no allocation.
 *
 * Time is always passed in (`now`, in ms): the table never reads a clock, so
 * tests and the Durable Object decide what time it is.
 */

export const DEFAULT_AGING_MS = 300_000;
export const DEFAULT_LEARN_LIMIT_PER_PORT = 64;
export const DEFAULT_LEARN_LIMIT_PER_SEGMENT = 4096;

/** What `learn` did. Numbers, not objects, so the per-frame path allocates nothing. */
export const LearnOutcome = {
  /** Already known on this port: its age was reset. */
  Refreshed: 0,
  /** A new entry was created. */
  Learned: 1,
  /** The MAC was learned on another port and moved here. */
  Moved: 2,
  /** The MAC is registered (static) on this same port: nothing to learn. */
  Static: 3,
  /** The MAC is registered (static) on another port: not learned, counted as a conflict. */
  Conflict: 4,
  /** This port is at its learned-entry limit: not learned. */
  PortLimit: 5,
  /** The segment is at its learned-entry limit: not learned. */
  SegmentLimit: 6,
} as const;
export type LearnOutcome = (typeof LearnOutcome)[keyof typeof LearnOutcome];

export interface ForwardingTableConfig {
  agingMs: number;
  learnLimitPerPort: number;
  learnLimitPerSegment: number;
}

export const DEFAULT_FDB_CONFIG: Readonly<ForwardingTableConfig> = {
  agingMs: DEFAULT_AGING_MS,
  learnLimitPerPort: DEFAULT_LEARN_LIMIT_PER_PORT,
  learnLimitPerSegment: DEFAULT_LEARN_LIMIT_PER_SEGMENT,
};

/** One entry as shown by APIs. `ageMs` is null for static entries, which never age. */
export interface FdbEntryView {
  mac: string;
  vlan: number | null;
  port: number;
  static: boolean;
  ageMs: number | null;
}

export interface FdbSummary {
  learned: number;
  static: number;
  agingMs: number;
  learnLimitPerPort: number;
  learnLimitPerSegment: number;
  portLimitHits: number;
  segmentLimitHits: number;
  moves: number;
  conflicts: number;
  entries: FdbEntryView[];
}

interface LearnedEntry {
  port: number;
  lastSeen: number;
}

interface PortLearnState {
  learned: number;
  /** Per-port override of the table's learnLimitPerPort. */
  limit: number | undefined;
}

export class ForwardingTable {
  private config: ForwardingTableConfig;
  /** MAC → owning port. */
  private readonly statics = new Map<MacKey, number>();
  private readonly untagged = new Map<MacKey, LearnedEntry>();
  private readonly tagged = new Map<number, Map<MacKey, LearnedEntry>>();
  private readonly ports = new Map<number, PortLearnState>();
  private learnedTotal = 0;
  /** Learned MACs held elsewhere that count against learnLimitPerSegment too (other cells' learned routes). */
  private learnedElsewhere: () => number = () => 0;
  /**
   * A lower bound on the oldest `lastSeen` among learned entries (Infinity when
   * none). Refreshes only raise the true minimum, so the bound stays valid
   * without a scan per frame; `ageOut` recomputes it exactly.
   */
  private oldestSeen = Infinity;
  moves = 0;
  conflicts = 0;
  portLimitHits = 0;
  segmentLimitHits = 0;

  /** Creates an empty table; `config` defaults to 300 s aging, 64 per port, 4096 per segment. */
  constructor(config: ForwardingTableConfig = DEFAULT_FDB_CONFIG) {
    this.config = { ...config };
  }

  /** Replaces aging time and limits. Lower limits do not evict entries already learned; they stop new learning. */
  reconfigure(config: ForwardingTableConfig): void {
    this.config = { ...config };
  }

  /**
   * Makes learnLimitPerSegment count learned MACs held elsewhere as well: on a segment of several cells,
   * the learned routes other cells announced, so the limit holds for the segment, not per cell.
   */
  countLearnedElsewhere(count: () => number): void {
    this.learnedElsewhere = count;
  }

  /** Overrides the learned-entry limit for one port (`undefined` restores the table default). */
  setPortLimit(port: number, limit: number | undefined): void {
    this.portState(port).limit = limit;
  }

  /** Registers `mac` as a static entry of `port`, replacing any learned entries for it. */
  addStatic(mac: MacKey, port: number): Result<void, "mac-taken" | "invalid-mac"> {
    if (!isUsableUnicastMac(mac)) {
      return fail("invalid-mac", `${formatMac(mac)} is not a usable unicast address (multicast or all zeros)`);
    }
    const owner = this.statics.get(mac);
    if (owner !== undefined && owner !== port) {
      return fail("mac-taken", `${formatMac(mac)} is already registered by port ${owner}`);
    }
    this.forgetLearnedMac(mac);
    this.statics.set(mac, port);
    return ok(undefined);
  }

  /** Removes the static entry for `mac` if `port` owns it; returns whether one was removed. */
  removeStatic(mac: MacKey, port: number): boolean {
    if (this.statics.get(mac) !== port) return false;
    return this.statics.delete(mac);
  }

  /** The port that owns `mac` statically, or undefined. */
  staticOwner(mac: MacKey): number | undefined {
    return this.statics.get(mac);
  }

  /** The port `mac` is learned behind in any VLAN (untagged first), or undefined. */
  learnedPort(mac: MacKey): number | undefined {
    const untagged = this.untagged.get(mac);
    if (untagged !== undefined) return untagged.port;
    for (const table of this.tagged.values()) {
      const entry = table.get(mac);
      if (entry !== undefined) return entry.port;
    }
    return undefined;
  }

  /** Port for (mac, vlan): a static entry (any VLAN) first, then a learned one; undefined if unknown. */
  lookup(mac: MacKey, vlan: number): number | undefined {
    const owner = this.statics.get(mac);
    if (owner !== undefined) return owner;
    const table = vlan === 0 ? this.untagged : this.tagged.get(vlan);
    return table?.get(mac)?.port;
  }

  /** Records that `mac` was seen as a source on `port` in `vlan` at `now` (ms); returns what happened. */
  learn(mac: MacKey, vlan: number, port: number, now: number): LearnOutcome {
    const owner = this.statics.get(mac);
    if (owner !== undefined) return owner === port ? LearnOutcome.Static : this.conflict();
    const table = this.learnedTableFor(vlan);
    const entry = table.get(mac);
    if (entry === undefined) return this.insert(table, mac, port, now);
    if (entry.port === port) {
      entry.lastSeen = now;
      return LearnOutcome.Refreshed;
    }
    return this.move(entry, port, now);
  }

  /** Removes learned entries not seen for `agingMs` as of `now`; returns how many were removed. */
  ageOut(now: number): number {
    const cutoff = now - this.config.agingMs;
    let removed = removeWhere(this.untagged, (entry) => entry.lastSeen <= cutoff, this.onRemoved);
    for (const [vlan, table] of this.tagged) {
      removed += removeWhere(table, (entry) => entry.lastSeen <= cutoff, this.onRemoved);
      if (table.size === 0) this.tagged.delete(vlan);
    }
    this.oldestSeen = this.scanOldestSeen();
    return removed;
  }

  /** When the next learned entry may expire (ms), for alarm scheduling; never later than the true time, undefined if nothing can. */
  nextExpiry(): number | undefined {
    return this.learnedTotal === 0 ? undefined : this.oldestSeen + this.config.agingMs;
  }

  /** Removes every entry (static and learned) of `port`, e.g. when it detaches; returns how many. */
  flushPort(port: number): number {
    let removed = 0;
    for (const [mac, owner] of this.statics) {
      if (owner === port && this.statics.delete(mac)) removed++;
    }
    removed += removeWhere(this.untagged, (entry) => entry.port === port, this.onRemoved);
    for (const table of this.tagged.values()) removed += removeWhere(table, (entry) => entry.port === port, this.onRemoved);
    this.ports.delete(port);
    return removed;
  }

  /** Forgets the learned entry of (mac, vlan), if any (cells: another cell won the MAC); returns whether one was removed. */
  forget(mac: MacKey, vlan: number): boolean {
    const table = vlan === 0 ? this.untagged : this.tagged.get(vlan);
    const entry = table?.get(mac);
    if (table === undefined || entry === undefined) return false;
    table.delete(mac);
    this.onRemoved(entry);
    return true;
  }

  /** Number of learned entries on `port`. */
  learnedOn(port: number): number {
    return this.ports.get(port)?.learned ?? 0;
  }

  /** Counts and an entry list for APIs; `now` (ms) gives learned entries their age. */
  summary(now: number): FdbSummary {
    const entries: FdbEntryView[] = [];
    for (const [mac, port] of this.statics) entries.push({ mac: formatMac(mac), vlan: null, port, static: true, ageMs: null });
    pushLearned(entries, 0, this.untagged, now);
    for (const [vlan, table] of this.tagged) pushLearned(entries, vlan, table, now);
    return {
      learned: this.learnedTotal,
      static: this.statics.size,
      agingMs: this.config.agingMs,
      learnLimitPerPort: this.config.learnLimitPerPort,
      learnLimitPerSegment: this.config.learnLimitPerSegment,
      portLimitHits: this.portLimitHits,
      segmentLimitHits: this.segmentLimitHits,
      moves: this.moves,
      conflicts: this.conflicts,
      entries,
    };
  }

  /** Creates a learned entry if both limits allow. */
  private insert(table: Map<MacKey, LearnedEntry>, mac: MacKey, port: number, now: number): LearnOutcome {
    if (this.learnedTotal + this.learnedElsewhere() >= this.config.learnLimitPerSegment) {
      this.segmentLimitHits++;
      return LearnOutcome.SegmentLimit;
    }
    const state = this.portState(port);
    if (state.learned >= (state.limit ?? this.config.learnLimitPerPort)) {
      this.portLimitHits++;
      return LearnOutcome.PortLimit;
    }
    table.set(mac, { port, lastSeen: now });
    state.learned++;
    this.learnedTotal++;
    if (now < this.oldestSeen) this.oldestSeen = now;
    return LearnOutcome.Learned;
  }

  /** Moves a learned entry to `port` (a station moved, or a loop); the new port's limit still applies. */
  private move(entry: LearnedEntry, port: number, now: number): LearnOutcome {
    const state = this.portState(port);
    if (state.learned >= (state.limit ?? this.config.learnLimitPerPort)) {
      this.portLimitHits++;
      return LearnOutcome.PortLimit;
    }
    this.portState(entry.port).learned--;
    state.learned++;
    entry.port = port;
    entry.lastSeen = now;
    this.moves++;
    return LearnOutcome.Moved;
  }

  private conflict(): LearnOutcome {
    this.conflicts++;
    return LearnOutcome.Conflict;
  }

  /** The learned table of `vlan`, created on first use (allocation only on a VLAN's first learn). */
  private learnedTableFor(vlan: number): Map<MacKey, LearnedEntry> {
    if (vlan === 0) return this.untagged;
    let table = this.tagged.get(vlan);
    if (table === undefined) {
      table = new Map();
      this.tagged.set(vlan, table);
    }
    return table;
  }

  private portState(port: number): PortLearnState {
    let state = this.ports.get(port);
    if (state === undefined) {
      state = { learned: 0, limit: undefined };
      this.ports.set(port, state);
    }
    return state;
  }

  /** Drops learned entries of `mac` in every VLAN: a static registration supersedes them. */
  private forgetLearnedMac(mac: MacKey): void {
    removeWhere(this.untagged, (_entry, key) => key === mac, this.onRemoved);
    for (const table of this.tagged.values()) removeWhere(table, (_entry, key) => key === mac, this.onRemoved);
  }

  /** Bookkeeping for a removed learned entry (an arrow so it can be passed without binding). */
  private readonly onRemoved = (entry: LearnedEntry): void => {
    const state = this.ports.get(entry.port);
    if (state !== undefined) state.learned--;
    this.learnedTotal--;
  };

  private scanOldestSeen(): number {
    let oldest = Infinity;
    for (const entry of this.untagged.values()) oldest = Math.min(oldest, entry.lastSeen);
    for (const table of this.tagged.values()) for (const entry of table.values()) oldest = Math.min(oldest, entry.lastSeen);
    return oldest;
  }
}

/** Deletes entries matching `predicate` (deleting while iterating a Map is safe in JS); returns the count. */
function removeWhere(
  table: Map<MacKey, LearnedEntry>,
  predicate: (entry: LearnedEntry, mac: MacKey) => boolean,
  onRemoved: (entry: LearnedEntry) => void,
): number {
  let removed = 0;
  for (const [mac, entry] of table) {
    if (!predicate(entry, mac)) continue;
    table.delete(mac);
    onRemoved(entry);
    removed++;
  }
  return removed;
}

function pushLearned(entries: FdbEntryView[], vlan: number, table: Map<MacKey, LearnedEntry>, now: number): void {
  for (const [mac, entry] of table) {
    entries.push({ mac: formatMac(mac), vlan, port: entry.port, static: false, ageMs: now - entry.lastSeen });
  }
}
