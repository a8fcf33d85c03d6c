/** Revoked join-token ids a segment keeps at most; a revocation beyond it is refused (507 `revocation-list-full`). */
export const MAX_REVOKED_TOKENS = 10_000;
/** Expired entries one sweep deletes. */
const REVOCATION_SWEEP_PAGE = 256;

/** What adding a revocation did. */
export type RevocationOutcome = "revoked" | "already-revoked" | "full";

/**
 * The segment's revocation list (SQLite table `revoked_tokens`): token ids (`jti`) refused until
 * the token's own expiry, after which the entry is useless and the sweep deletes it. Bounded by
 * MAX_REVOKED_TOKENS entries.
 */
export class RevocationList {
  private ready = false;

  constructor(private readonly storage: DurableObjectStorage) {}

  /** Whether `jti` is revoked (an entry not yet expired). */
  has(jti: string, nowMs: number): boolean {
    return this.sql().exec("SELECT 1 FROM revoked_tokens WHERE jti = ? AND expires_at > ?", jti, nowMs).toArray().length > 0;
  }

  /** Revokes `jti` until `expiresAtMs` (an existing entry is extended, never shortened). */
  add(jti: string, expiresAtMs: number, nowMs: number): RevocationOutcome {
    const sql = this.sql();
    const existing = sql.exec<{ expires_at: number }>("SELECT expires_at FROM revoked_tokens WHERE jti = ?", jti).toArray()[0];
    if (existing !== undefined) {
      if (existing.expires_at < expiresAtMs) sql.exec("UPDATE revoked_tokens SET expires_at = ? WHERE jti = ?", expiresAtMs, jti);
      return "already-revoked";
    }
    if (this.count() >= MAX_REVOKED_TOKENS) {
      this.sweep(nowMs);
      if (this.count() >= MAX_REVOKED_TOKENS) return "full";
    }
    sql.exec("INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?)", jti, expiresAtMs);
    return "revoked";
  }

  /** Deletes at most a page of expired entries; returns how many. */
  sweep(nowMs: number): number {
    return this.sql().exec(
      "DELETE FROM revoked_tokens WHERE jti IN (SELECT jti FROM revoked_tokens WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)", nowMs, REVOCATION_SWEEP_PAGE,
    ).rowsWritten;
  }

  /** When the next entry expires, if any. */
  nextExpiry(): number | undefined {
    return this.sql().exec<{ next: number | null }>("SELECT MIN(expires_at) AS next FROM revoked_tokens").one().next ?? undefined;
  }

  count(): number {
    return this.sql().exec<{ entries: number }>("SELECT COUNT(*) AS entries FROM revoked_tokens").one().entries;
  }

  /** The segment's storage was erased (the table with it). */
  reset(): void {
    this.ready = false;
  }

  private sql(): SqlStorage {
    const { sql } = this.storage;
    if (!this.ready) {
      sql.exec("CREATE TABLE IF NOT EXISTS revoked_tokens (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)");
      sql.exec("CREATE INDEX IF NOT EXISTS revoked_tokens_by_expiry ON revoked_tokens (expires_at)");
      this.ready = true;
    }
    return sql;
  }
}
