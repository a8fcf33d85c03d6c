/**
 * Completions that wait for trunks (docs/protocol.md §6.3 rule 8, feature
 * CellCompletions): a TX from a port that negotiated the feature, switched to
 * a port on another cell of the segment, completes when every trunk call that
 * carries it has returned: ok, or `cell-unreachable` when one of them failed.
 *
 * One ticket per such TX. A trunk's outbox keeps the ticket beside each frame
 * it took and hands the tickets back when the call returns or fails, so a
 * ticket lives no longer than the call that carries it: the table is bounded
 * by the frames the trunks hold (pending and in flight), whatever a client
 * sends. The ids a port is waiting on still count as outstanding for its
 * window (rule 3).
 */
import { DropReason } from "./counters.ts";
import type { SwitchPort } from "./switch-port.ts";

/** No ticket: the frame's completion does not wait (the sender did not negotiate the feature, or a mirror copy). */
export const NO_TICKET = 0;

interface Ticket {
  readonly port: SwitchPort;
  readonly id: number;
  /** Trunk calls that carry the frame and have not returned. */
  waiting: number;
  failed: boolean;
}

/** A ticket whose calls have all returned: the id to complete on `port`, and its status. */
export interface SettledTicket {
  readonly port: SwitchPort;
  readonly id: number;
  readonly status: number;
}

export class DeferredCompletions {
  private readonly tickets = new Map<number, Ticket>();
  /** Per port, the TX ids whose completion waits for a trunk. */
  private readonly waitingIds = new Map<SwitchPort, Set<number>>();
  private next = 1;

  /** Tickets open now (tests, counters). */
  get size(): number {
    return this.tickets.size;
  }

  /** How many of `port`'s ids wait for a trunk. */
  waitingFor(port: SwitchPort): number {
    return this.waitingIds.get(port)?.size ?? 0;
  }

  /** Whether `id` of `port` waits for a trunk (reusing it would break rule 3). */
  isWaiting(port: SwitchPort, id: number): boolean {
    return this.waitingIds.get(port)?.has(id) === true;
  }

  /** Opens a ticket for TX `id` of `port` (before any trunk took the frame). */
  open(port: SwitchPort, id: number): number {
    const ticket = this.next;
    this.next = this.next >= 0x7fffffff ? 1 : this.next + 1;
    this.tickets.set(ticket, { port, id, waiting: 0, failed: false });
    return ticket;
  }

  /** A trunk took the frame: one more call to wait for. */
  carried(ticket: number): void {
    const entry = this.tickets.get(ticket);
    if (entry !== undefined) entry.waiting++;
  }

  /** A trunk could not take the frame because its peer is failing: the TX will complete `cell-unreachable`. */
  unreachable(ticket: number): void {
    const entry = this.tickets.get(ticket);
    if (entry !== undefined) entry.failed = true;
  }

  /**
   * The batch that opened `ticket` was switched; `verdict` is the frame's ingress verdict. Returns the
   * status to complete it with now, or null when it waits for trunk calls (its id is then held as waiting).
   */
  afterSwitch(ticket: number, verdict: number): number | null {
    const entry = this.tickets.get(ticket);
    if (entry === undefined) return verdict;
    if (entry.waiting > 0) {
      let ids = this.waitingIds.get(entry.port);
      if (ids === undefined) this.waitingIds.set(entry.port, (ids = new Set()));
      ids.add(entry.id);
      return null;
    }
    this.tickets.delete(ticket);
    return entry.failed ? DropReason.CellUnreachable : verdict;
  }

  /** Trunk calls returned (`ok`) or failed for these tickets; returns those now complete, for open ports. */
  settle(tickets: readonly number[], ok: boolean): SettledTicket[] {
    const done: SettledTicket[] = [];
    for (const ticket of tickets) {
      const entry = this.tickets.get(ticket);
      if (entry === undefined) continue;
      if (!ok) entry.failed = true;
      if (--entry.waiting > 0) continue;
      this.tickets.delete(ticket);
      const ids = this.waitingIds.get(entry.port);
      if (ids === undefined || !ids.delete(entry.id)) continue;
      if (ids.size === 0) this.waitingIds.delete(entry.port);
      if (entry.port.open) done.push({ port: entry.port, id: entry.id, status: entry.failed ? DropReason.CellUnreachable : 0 });
    }
    return done;
  }

  /** The port left: nothing of it is completed any more (its client failed its ids with `reset`, rule 7). */
  forget(port: SwitchPort): void {
    this.waitingIds.delete(port);
  }
}
