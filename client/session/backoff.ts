// Reconnect delays: exponential backoff with jitter, reset by a successful handshake.

export interface BackoffPolicy {
  /** First delay's ceiling in ms. */
  initialMs: number;
  /** Largest ceiling in ms. */
  maxMs: number;
  /** A number in [0, 1). */
  random: () => number;
}

/** The delays of successive reconnect attempts: each drawn from [ceiling/2, ceiling), the ceiling doubling up to maxMs. */
export class Backoff {
  private attempt = 0;

  constructor(private readonly policy: BackoffPolicy) {}

  /** Attempts counted since the last success (1 after the first next()). */
  get attempts(): number {
    return this.attempt;
  }

  /** The delay before the next attempt; counts the attempt. */
  next(): number {
    const ceiling = Math.min(this.policy.maxMs, this.policy.initialMs * 2 ** this.attempt);
    this.attempt++;
    return ceiling / 2 + this.policy.random() * (ceiling / 2);
  }

  /** A handshake succeeded: the next failure starts from the initial delay again. */
  reset(): void {
    this.attempt = 0;
  }
}
