/**
 * Ingress policing for one port: token buckets for bytes/s and frames/s (fair sharing) and a
 * separate bucket for flooded frames (broadcast/multicast/unknown-unicast storm control).
 *
 * Buckets are plain data so a port's policer state rides in its socket attachment across
 * hibernation. Time comes from the caller (`nowMs`), so the rules are testable without clocks.
 * A bucket refills continuously at `rate` tokens per second up to `burst`; a frame is admitted
 * only if every bucket that applies to it has the tokens, and then takes them from all of them
 * (a refused frame takes nothing, so a flood cannot starve the port's own later unicast).
 */

/** One bucket's plain-data state. */
export interface BucketState {
  tokens: number;
  updatedMs: number;
}

/** A rate and the burst it allows; `rate` null means unlimited. */
export interface Rate {
  readonly rate: number | null;
  readonly burst: number;
}

/** A port's policing limits (segment defaults, overridden by join-token claims). */
export interface PolicerLimits {
  /** Bytes per second the port may send (frame bytes, headers included); null = unlimited. */
  readonly bytesPerSecond: number | null;
  /** Frames per second the port may send; null = unlimited. */
  readonly framesPerSecond: number | null;
  /** Flooded frames per second (broadcast, multicast, unknown unicast); null = no storm control. */
  readonly floodFramesPerSecond: number | null;
  /** Seconds of traffic at full rate a bucket holds (its burst). */
  readonly burstSeconds: number;
}

/** Defaults: no byte or frame limit, storm control at 1,000 flooded frames/s with a 1 s burst. */
export const DEFAULT_POLICER_LIMITS: Readonly<PolicerLimits> = {
  bytesPerSecond: null,
  framesPerSecond: null,
  floodFramesPerSecond: 1_000,
  burstSeconds: 1,
};

/** Why the policer refused a frame. */
export type PolicerVerdict = "ok" | "rate-limited" | "storm-control";

/** A port's three buckets, and its refusals in the current one-second window. */
export interface PolicerState {
  bytes: BucketState;
  frames: BucketState;
  flood: BucketState;
  /** Frames refused since `windowMs` (absent in older state: 0). */
  refused?: number;
  windowMs?: number;
}

/**
 * Frames a port may have refused by its policer within one second before the segment closes it (4029):
 * a port that keeps sending this far past its limits costs the segment's one thread its work per frame
 * (decode, checks, completions) for nothing, at the expense of every other port.
 */
export const MAX_REFUSED_PER_SECOND = 10_000;

/** Counts one refused frame; true when the port passed MAX_REFUSED_PER_SECOND in the current window. */
export function noteRefusal(state: PolicerState, nowMs: number): boolean {
  if (state.windowMs === undefined || nowMs - state.windowMs >= 1000) {
    state.windowMs = nowMs;
    state.refused = 0;
  }
  state.refused = (state.refused ?? 0) + 1;
  return state.refused > MAX_REFUSED_PER_SECOND;
}

/** Fresh buckets, full (a port may burst at once after joining). */
export function newPolicerState(limits: PolicerLimits, nowMs: number): PolicerState {
  const full = (rate: number | null): BucketState => ({ tokens: burstOf(rate, limits.burstSeconds), updatedMs: nowMs });
  return { bytes: full(limits.bytesPerSecond), frames: full(limits.framesPerSecond), flood: full(limits.floodFramesPerSecond) };
}

/** A bucket's capacity: a rate's worth of `burstSeconds`, and never less than one unit. */
function burstOf(rate: number | null, burstSeconds: number): number {
  return rate === null ? Infinity : Math.max(1, rate * burstSeconds);
}

/** Refills `bucket` for the time since its last update (time never runs backwards here). */
function refill(bucket: BucketState, rate: number | null, burstSeconds: number, nowMs: number): void {
  if (rate === null) return;
  const elapsedMs = Math.max(0, nowMs - bucket.updatedMs);
  bucket.tokens = Math.min(burstOf(rate, burstSeconds), bucket.tokens + (rate * elapsedMs) / 1000);
  bucket.updatedMs = Math.max(bucket.updatedMs, nowMs);
}

/**
 * Decides whether the port may send one frame of `bytes` bytes now; `flooded` is true for a frame
 * the switch will flood. Takes the tokens when it admits the frame.
 */
export function police(state: PolicerState, limits: PolicerLimits, bytes: number, flooded: boolean, nowMs: number): PolicerVerdict {
  const { burstSeconds } = limits;
  refill(state.bytes, limits.bytesPerSecond, burstSeconds, nowMs);
  refill(state.frames, limits.framesPerSecond, burstSeconds, nowMs);
  if (state.bytes.tokens < bytes || state.frames.tokens < 1) return "rate-limited";
  if (flooded) {
    refill(state.flood, limits.floodFramesPerSecond, burstSeconds, nowMs);
    if (state.flood.tokens < 1) return "storm-control";
    state.flood.tokens -= 1;
  }
  state.bytes.tokens -= bytes;
  state.frames.tokens -= 1;
  return "ok";
}

/** Problems with limits given by an admin or a token, as messages for a 400. */
export function checkPolicerLimits(limits: Partial<Record<keyof PolicerLimits, unknown>>): string[] {
  const problems: string[] = [];
  for (const key of ["bytesPerSecond", "framesPerSecond", "floodFramesPerSecond"] as const) {
    const value = limits[key];
    if (value === undefined || value === null) continue;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) problems.push(`${key} must be a positive integer or null`);
  }
  const burst = limits.burstSeconds;
  if (burst !== undefined && (typeof burst !== "number" || !Number.isFinite(burst) || burst < 0.01 || burst > 60)) {
    problems.push("burstSeconds must be a number from 0.01 to 60");
  }
  return problems;
}
