// Two bystander ports on the attacked segment that ping each other throughout: A sends a
// stamped frame to B every interval, B echoes it back, A records the round trip. Loss is a
// ping whose echo never came back (counted after a drain at the end), or any ping sent while
// a bystander's socket was closed.
import { readStamp, stampedFrame } from "./frames.ts";
import { DescriptorPort } from "./wire.ts";

export const BYSTANDER_A = 0x02_00_00_00_0b_01;
export const BYSTANDER_B = 0x02_00_00_00_0b_02;

export interface PingFigures {
  sent: number;
  answered: number;
  lost: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export class Bystanders {
  private seq = 0;
  private readonly sentAt = new Map<number, number>();
  /** Round trips measured, by ping sequence number (a window takes those below its cutoff). */
  private rtts: Array<{ seq: number; ms: number }> = [];
  /** First sequence number of the current window, and pings the window could not send (a socket closed, window full). */
  private windowStart = 0;
  private unsent = 0;
  private timer: ReturnType<typeof setInterval> | null = null;

  private constructor(readonly a: DescriptorPort, readonly b: DescriptorPort) {
    b.onRx = (frame) => {
      const stamp = readStamp(frame);
      if (stamp === null || stamp.echo) return;
      if (b.outstanding < b.txWindow) b.sendTx([stampedFrame(BYSTANDER_A, BYSTANDER_B, { ...stamp, echo: true })]);
    };
    a.onRx = (frame) => {
      const stamp = readStamp(frame);
      if (stamp === null || !stamp.echo) return;
      const sentAt = this.sentAt.get(stamp.seq);
      if (sentAt === undefined) return;
      this.sentAt.delete(stamp.seq);
      this.rtts.push({ seq: stamp.seq, ms: performance.now() - sentAt });
    };
  }

  /** Joins both bystanders to `segment` (open joins) with plenty of credit. */
  static async join(wsBase: string, segment: string): Promise<Bystanders> {
    const options = { credits: 8192, bufferSize: 2048, txWindow: 1024, rxQueue: 1024 };
    const a = await DescriptorPort.join(wsBase, segment, { ...options, macs: [BYSTANDER_A] });
    const b = await DescriptorPort.join(wsBase, segment, { ...options, macs: [BYSTANDER_B] });
    return new Bystanders(a, b);
  }

  /** Starts pinging every `intervalMs`. */
  start(intervalMs: number): void {
    this.timer = setInterval(() => this.ping(), intervalMs);
  }

  private ping(): void {
    if (this.a.closed !== null || this.b.closed !== null || this.a.outstanding >= this.a.txWindow) {
      this.unsent++;
      return;
    }
    const seq = this.seq++;
    const now = performance.now();
    this.sentAt.set(seq, now);
    this.a.sendTx([stampedFrame(BYSTANDER_B, BYSTANDER_A, { echo: false, seq, sentAt: now })]);
  }

  /**
   * Closes the current measuring window: waits up to `drainMs` for outstanding echoes, then reports
   * and starts a new window. Pings still unanswered after the drain are lost.
   */
  async window(drainMs: number): Promise<PingFigures> {
    const cutoff = this.seq;
    const unsent = this.unsent;
    this.unsent = 0;
    const deadline = Date.now() + drainMs;
    while (Date.now() < deadline && [...this.sentAt.keys()].some((seq) => seq < cutoff)) await new Promise((r) => setTimeout(r, 50));
    let lost = unsent;
    for (const seq of [...this.sentAt.keys()]) {
      if (seq < cutoff) {
        this.sentAt.delete(seq);
        lost++;
      }
    }
    const sorted = this.rtts.filter((r) => r.seq < cutoff).map((r) => r.ms).sort((x, y) => x - y);
    this.rtts = this.rtts.filter((r) => r.seq >= cutoff);
    const figures: PingFigures = {
      sent: cutoff - this.windowStart + unsent, answered: sorted.length, lost,
      p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), maxMs: sorted.at(-1) ?? NaN,
    };
    this.windowStart = cutoff;
    return figures;
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  close(): void {
    this.stop();
    this.a.close();
    this.b.close();
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}
