// Control requests in flight (stats, set-filter, add/remove MAC, ping): each waits
// for the record with its sequence number, or fails with an error when the
// connection that carried it is lost.
import type { AckRecord, PongRecord, StatsReplyRecord } from "../../datapath/tunnel/records.ts";
import { SessionError } from "./errors.ts";

/** A record that answers a request. */
export type ControlReply = AckRecord | StatsReplyRecord | PongRecord;

interface Waiter {
  resolve: (reply: ControlReply) => void;
  reject: (error: SessionError) => void;
}

/** Requests by sequence number. */
export class ControlRequests {
  private readonly waiting = new Map<number, Waiter>();
  private nextSeq = 1;

  /** A fresh sequence number (u32, wrapping). */
  seq(): number {
    const seq = this.nextSeq;
    this.nextSeq = (this.nextSeq + 1) >>> 0;
    return seq;
  }

  /** Waits for the reply to `seq`. */
  wait(seq: number): Promise<ControlReply> {
    return new Promise((resolve, reject) => this.waiting.set(seq, { resolve, reject }));
  }

  /** Hands `reply` to its request; a reply nobody waits for (a flush PING's PONG) is ignored. */
  settle(reply: ControlReply): void {
    const waiter = this.waiting.get(reply.seq);
    if (waiter === undefined) return;
    this.waiting.delete(reply.seq);
    waiter.resolve(reply);
  }

  /** Fails every request in flight with `error` (the connection that carried them is gone). */
  failAll(error: SessionError): void {
    const waiters = [...this.waiting.values()];
    this.waiting.clear();
    for (const waiter of waiters) waiter.reject(error);
  }
}
