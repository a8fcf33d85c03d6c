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

/** How long a session can be resumed after its socket went away without BYE. */
export const RESUME_GRACE_MS = 10 * 60 * 1000;
const PREFIX = "session:";

/**
 * Resumable sessions in the segment's storage. A client that lost its socket
 * (relay restart, network blip) presents session id + token in its next HELLO
 * and gets its port id back; a stale socket of the same session is replaced.
 */
export class SessionStore {
  constructor(private readonly storage: DurableObjectStorage) {}

  /** The session with this id if it exists, its token matches and it has not expired. */
  async verify(sessionId: string, token: string, now: number): Promise<StoredSession | undefined> {
    const stored = await this.storage.get<StoredSession>(PREFIX + sessionId);
    if (stored === undefined || stored.expiresAt < now) return undefined;
    return (await constantTimeEqual(stored.token, token)) ? stored : undefined;
  }

  /** Records (or refreshes) a session; the write is not awaited, the output gate orders it before replies. */
  save(sessionId: string, session: StoredSession): void {
    void this.storage.put(PREFIX + sessionId, session);
  }

  /** Forgets a session (after BYE, or when replaced). */
  forget(sessionId: string): void {
    void this.storage.delete(PREFIX + sessionId);
  }

  /** Deletes expired sessions; returns how many. */
  async sweep(now: number): Promise<number> {
    const all = await this.storage.list<StoredSession>({ prefix: PREFIX });
    const expired = [...all].filter(([, session]) => session.expiresAt < now).map(([key]) => key);
    if (expired.length > 0) await this.storage.delete(expired);
    return expired.length;
  }
}
