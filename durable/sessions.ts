import { constantTimeEqual } from "../contract/secrets.ts";
import type { ReceiveFilter } from "../datapath/bridge.ts";
import type { PortCountersData } from "../datapath/counters.ts";
import type { MacKey } from "../datapath/mac.ts";
import type { PortKind } from "../datapath/port-kind.ts";

/** What a resumable session keeps in storage between connections. */
export interface StoredSession {
  token: string;
  portId: number;
  kind: PortKind;
  macs: MacKey[];
  /** The receive filter and counters as the port left them; a resume keeps both (protocol.md §11.3). */
  filter?: ReceiveFilter;
  counters?: PortCountersData;
  expiresAt: number;
}

/**
 * How long a session can be resumed after its socket went away without BYE (protocol.md §11.3).
 * A connected session's row has the same lease, renewed by the alarm every RESUME_LEASE_RENEW_MS,
 * so after a relay crash (no close event) a row outlives its socket by at most this grace.
 */
export const RESUME_GRACE_MS = 10 * 60 * 1000;
/** How often the alarm renews the rows of connected sessions and sweeps expired ones. */
export const RESUME_LEASE_RENEW_MS = RESUME_GRACE_MS / 2;
/** Expired rows one sweep deletes; more wait for the next alarm (which then comes soon). */
export const SESSION_SWEEP_PAGE = 256;
/** Rows a segment keeps per allowed port (2 × maxPorts); beyond it, the row that expires first is evicted. */
export const SESSION_ROWS_PER_PORT = 2;

/** Rows of an older layout (KV keys `session:<id>`), deleted by the sweep a page at a time. */
const LEGACY_PREFIX = "session:";

/**
 * Resumable sessions in the segment's SQLite storage (table `resume_sessions`, indexed by expiry).
 * A client that lost its socket (relay restart, network blip) presents session id + token in its
 * next HELLO and gets its port id back; a stale socket of the same session is replaced.
 * Bounded: at most `maxRows` rows (the row expiring first is evicted), and the sweep deletes
 * at most SESSION_SWEEP_PAGE rows per run.
 */
export class SessionStore {
  /** Rows kept at most; the segment sets it to SESSION_ROWS_PER_PORT × maxPorts. */
  maxRows = SESSION_ROWS_PER_PORT * 64;
  private ready = false;

  constructor(private readonly storage: DurableObjectStorage) {}

  /** The session with this id if it exists, its token matches and it has not expired. */
  async verify(sessionId: string, token: string, now: number): Promise<StoredSession | undefined> {
    const row = this.sql().exec<{ body: string }>("SELECT body FROM resume_sessions WHERE id = ? AND expires_at >= ?", sessionId, now).toArray()[0];
    if (row === undefined) return undefined;
    const stored = JSON.parse(row.body) as StoredSession;
    return (await constantTimeEqual(stored.token, token)) ? stored : undefined;
  }

  /** Rows evicted by the `maxRows` bound since the segment last read this (it counts them). */
  evicted = 0;

  /** Records (or refreshes) a session; a new row beyond `maxRows` evicts the rows that expire first. */
  save(sessionId: string, session: StoredSession): void {
    const sql = this.sql();
    sql.exec("INSERT OR REPLACE INTO resume_sessions (id, expires_at, body) VALUES (?, ?, ?)", sessionId, session.expiresAt, JSON.stringify(session));
    const excess = this.count() - this.maxRows;
    if (excess > 0) {
      this.evicted += sql.exec(
        "DELETE FROM resume_sessions WHERE id IN (SELECT id FROM resume_sessions WHERE id != ? ORDER BY expires_at LIMIT ?)", sessionId, excess,
      ).rowsWritten;
    }
  }

  /** Moves the expiry of these sessions' rows to `expiresAt` (connected sessions, renewed by the alarm). */
  renew(sessionIds: readonly string[], expiresAt: number): void {
    const sql = this.sql();
    for (const id of sessionIds) sql.exec("UPDATE resume_sessions SET expires_at = ? WHERE id = ?", expiresAt, id);
  }

  /** Forgets a session (after BYE, or when the segment closed its port). */
  forget(sessionId: string): void {
    this.sql().exec("DELETE FROM resume_sessions WHERE id = ?", sessionId);
  }

  /** Deletes at most SESSION_SWEEP_PAGE expired rows (and as many rows of the older KV layout); returns how many. */
  sweep(now: number): number {
    const deleted = this.sql().exec(
      "DELETE FROM resume_sessions WHERE id IN (SELECT id FROM resume_sessions WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)", now, SESSION_SWEEP_PAGE,
    ).rowsWritten;
    const legacy = [...this.storage.kv.list({ prefix: LEGACY_PREFIX, limit: SESSION_SWEEP_PAGE })].map(([key]) => key);
    for (const key of legacy) this.storage.kv.delete(key);
    return deleted + legacy.length;
  }

  /** When the next row expires (so the alarm can sweep it), if any. */
  nextExpiry(): number | undefined {
    const row = this.sql().exec<{ next: number | null }>("SELECT MIN(expires_at) AS next FROM resume_sessions").one();
    return row.next ?? undefined;
  }

  /** Rows stored. */
  count(): number {
    return this.sql().exec<{ rows: number }>("SELECT COUNT(*) AS rows FROM resume_sessions").one().rows;
  }

  /** The segment's storage was erased (the table with it). */
  reset(): void {
    this.ready = false;
  }

  private sql(): SqlStorage {
    const { sql } = this.storage;
    if (!this.ready) {
      sql.exec("CREATE TABLE IF NOT EXISTS resume_sessions (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, body TEXT NOT NULL)");
      sql.exec("CREATE INDEX IF NOT EXISTS resume_sessions_by_expiry ON resume_sessions (expires_at)");
      this.ready = true;
    }
    return sql;
  }
}
