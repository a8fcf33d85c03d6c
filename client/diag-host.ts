// A tiny IPv4 host on a segment, behind `edgelan ping`: it answers ARP and
// ICMP echo for its own address, resolves a target with ARP and measures echo
// round trips. It sees only a FramePort, so tests wire two hosts together
// directly and the CLI adapts a Session to it. Wire formats live in datapath/inet.ts.
import { checkEthernetFrame, frameIsTagged } from "../datapath/ethernet.ts";
import {
  ArpOperation, buildArpFrame, buildIcmpEchoFrame, checkArpPacket, checkIcmpEcho, checkIpv4Packet, ETHERTYPE_ARP, ETHERTYPE_IPV4,
  formatIpv4, ICMP_ECHO_HEADER_LEN, IcmpEchoType, IPV4_MIN_HEADER_LEN, IPV4_PROTOCOL_ICMP, parseIpv4, type ArpPacket, type Ipv4Address,
  type Ipv4Packet,
} from "../datapath/inet.ts";
import { BROADCAST_MAC, formatMac, isUsableUnicastMac, type MacKey } from "../datapath/mac.ts";

/** Where the host's frames go and come from; one call per batch in both directions. */
export interface FramePort {
  send(frames: readonly Uint8Array[]): void;
  onFrames(handler: (frames: Uint8Array[]) => void): void;
}

export interface DiagHostOptions {
  /** The host's own unicast MAC (normally one of the port's `welcome.macs`). */
  mac: MacKey;
  /** The host's own IPv4 address, dotted quad. */
  ip: string;
  /** Monotonic clock in milliseconds; defaults to `performance.now()`. */
  now?: () => number;
}

export interface ResolveOptions {
  /** ARP requests to send before giving up; default 3. */
  attempts?: number;
  /** Milliseconds between requests (and after the last one); default 1000. */
  intervalMs?: number;
}

export interface PingOptions {
  /** Echo requests to send (1..65535). */
  count: number;
  /** Milliseconds between requests. */
  intervalMs: number;
  /** Milliseconds to wait for each reply before counting it lost. */
  timeoutMs: number;
  /** Echo data bytes (0..1472); default 56, like ping(8). */
  payloadBytes?: number;
  /** ARP resolution settings for the target. */
  resolve?: ResolveOptions;
  /** Called for each matched reply, in arrival order. */
  onReply?: (seq: number, rttMs: number) => void;
}

export interface PingSummary {
  target: string;
  transmitted: number;
  received: number;
  /** (transmitted − received) / transmitted × 100. */
  lossPercent: number;
  /** Round-trip times of the replies received, in arrival order. */
  rttsMs: number[];
  /** The statistics below are null when no reply arrived. */
  minMs: number | null;
  avgMs: number | null;
  maxMs: number | null;
  /** Median (nearest rank). */
  p50Ms: number | null;
}

/** Everything the host did or refused, so a run can be explained after the fact. */
export interface DiagHostCounters {
  framesReceived: number;
  framesSent: number;
  /** Frames not for this host or not understood: wrong MAC, tagged, other EtherTypes or protocols, malformed, unmatched. */
  framesIgnored: number;
  /** The subset of `framesIgnored` dropped for an IPv4 header or ICMP checksum that did not verify. */
  checksumErrors: number;
  arpRequestsSent: number;
  arpRequestsAnswered: number;
  arpRepliesReceived: number;
  echoRequestsSent: number;
  echoRequestsAnswered: number;
  echoRepliesMatched: number;
  /** Echo replies for no outstanding request: late (after the timeout), duplicated, or with altered data. */
  echoRepliesUnmatched: number;
}

export type DiagErrorCode = "invalid-ipv4" | "invalid-mac" | "invalid-option" | "own-address" | "arp-timeout" | "closed";

/** A failure of the diagnostic host with a code a program can switch on. */
export class DiagError extends Error {
  constructor(
    readonly code: DiagErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "DiagError";
  }
}

const DEFAULT_ARP_ATTEMPTS = 3;
const DEFAULT_ARP_INTERVAL_MS = 1000;
const DEFAULT_PAYLOAD_BYTES = 56;
/** Largest echo data that fits a 1500-byte IPv4 packet (1500 − 20 − 8). */
const MAX_PAYLOAD_BYTES = 1500 - IPV4_MIN_HEADER_LEN - ICMP_ECHO_HEADER_LEN;
const MAX_PING_COUNT = 0xffff;

type Timer = ReturnType<typeof setTimeout>;

interface ArpWaiter {
  resolve(mac: MacKey): void;
  reject(error: DiagError): void;
}

interface OutstandingEcho {
  sentAt: number;
  data: Uint8Array;
  onReply(rttMs: number): void;
}

export class DiagHost {
  readonly counters: DiagHostCounters = {
    framesReceived: 0,
    framesSent: 0,
    framesIgnored: 0,
    checksumErrors: 0,
    arpRequestsSent: 0,
    arpRequestsAnswered: 0,
    arpRepliesReceived: 0,
    echoRequestsSent: 0,
    echoRequestsAnswered: 0,
    echoRepliesMatched: 0,
    echoRepliesUnmatched: 0,
  };
  readonly mac: MacKey;
  readonly ip: Ipv4Address;

  private readonly now: () => number;
  private readonly neighbors = new Map<Ipv4Address, MacKey>();
  private readonly arpWaiters = new Map<Ipv4Address, Set<ArpWaiter>>();
  /** Outstanding echo requests keyed by `identifier << 16 | sequence`. */
  private readonly outstanding = new Map<number, OutstandingEcho>();
  private readonly timers = new Set<Timer>();
  /** Rejecters of every unsettled resolve/ping, so close() can settle them. */
  private readonly cancellers = new Set<(error: DiagError) => void>();
  private nextIdentifier: number;
  private ipIdentification = 0;
  private closed = false;

  /**
   * Attaches a host to `port`. Throws a DiagError for an unparsable IP or a MAC
   * that is not usable unicast.
   */
  constructor(
    private readonly port: FramePort,
    options: DiagHostOptions,
  ) {
    const ip = parseIpv4(options.ip);
    if (!ip.ok) throw new DiagError("invalid-ipv4", ip.error.message);
    if (!isUsableUnicastMac(options.mac)) {
      throw new DiagError("invalid-mac", `host MAC ${formatMac(options.mac)} must be a non-zero unicast address`);
    }
    this.ip = ip.value;
    this.mac = options.mac;
    this.now = options.now ?? (() => performance.now());
    // Distinct identifiers keep concurrent pingers on one segment apart.
    this.nextIdentifier = Math.floor(Math.random() * 0x10000);
    port.onFrames((frames) => this.receive(frames));
  }

  /**
   * Finds the MAC of `targetIp` with ARP: answers from the neighbor cache, else
   * broadcasts a request every `intervalMs` up to `attempts` times. Rejects
   * with `arp-timeout` when no reply came within `attempts × intervalMs`.
   */
  resolve(targetIp: string, options: ResolveOptions = {}): Promise<MacKey> {
    const attempts = options.attempts ?? DEFAULT_ARP_ATTEMPTS;
    const intervalMs = options.intervalMs ?? DEFAULT_ARP_INTERVAL_MS;
    try {
      this.checkOpen();
      requireInteger("attempts", attempts, 1, 1000);
      requireInteger("intervalMs", intervalMs, 0, 3_600_000);
      return this.resolveAddress(this.targetAddress(targetIp), attempts, intervalMs);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Resolves `targetIp`, then sends `count` echo requests `intervalMs` apart
   * and waits up to `timeoutMs` for each reply. Resolves with the summary once
   * every request was answered or timed out; rejects if ARP fails or the host closes.
   */
  async ping(targetIp: string, options: PingOptions): Promise<PingSummary> {
    this.checkOpen();
    const payloadBytes = options.payloadBytes ?? DEFAULT_PAYLOAD_BYTES;
    requireInteger("count", options.count, 1, MAX_PING_COUNT);
    requireInteger("intervalMs", options.intervalMs, 0, 3_600_000);
    requireInteger("timeoutMs", options.timeoutMs, 1, 3_600_000);
    requireInteger("payloadBytes", payloadBytes, 0, MAX_PAYLOAD_BYTES);
    const target = this.targetAddress(targetIp);
    const resolveOptions = options.resolve ?? {};
    const targetMac = await this.resolveAddress(
      target,
      resolveOptions.attempts ?? DEFAULT_ARP_ATTEMPTS,
      resolveOptions.intervalMs ?? DEFAULT_ARP_INTERVAL_MS,
    );
    // close() may have run while resolution was pending on a cached answer.
    this.checkOpen();
    const identifier = this.nextIdentifier;
    this.nextIdentifier = (this.nextIdentifier + 1) & 0xffff;
    const data = echoData(payloadBytes);

    return new Promise<PingSummary>((resolve, reject) => {
      const rtts: number[] = [];
      const keys = new Set<number>();
      let transmitted = 0;
      let settled = false;

      const finish = (): void => {
        if (settled || transmitted < options.count || keys.size > 0) return;
        settled = true;
        this.cancellers.delete(cancel);
        resolve(summarize(formatIpv4(target), transmitted, rtts));
      };
      const cancel = (error: DiagError): void => {
        if (settled) return;
        settled = true;
        for (const key of keys) this.outstanding.delete(key);
        reject(error);
      };
      this.cancellers.add(cancel);

      const sendNext = (): void => {
        if (settled) return;
        const sequence = (transmitted + 1) & 0xffff;
        const key = echoKey(identifier, sequence);
        const timeout = this.schedule(options.timeoutMs, () => {
          // Lost: forget it, so a late reply counts as unmatched.
          this.outstanding.delete(key);
          keys.delete(key);
          finish();
        });
        keys.add(key);
        this.outstanding.set(key, {
          sentAt: this.now(),
          data,
          onReply: (rttMs) => {
            this.cancelTimer(timeout);
            keys.delete(key);
            rtts.push(rttMs);
            options.onReply?.(sequence, rttMs);
            finish();
          },
        });
        transmitted++;
        this.counters.echoRequestsSent++;
        this.transmit([
          buildIcmpEchoFrame(
            { destination: targetMac, source: this.mac },
            { source: this.ip, destination: target, identification: this.nextIpIdentification() },
            { type: IcmpEchoType.Request, identifier, sequence, data },
          ),
        ]);
        if (transmitted < options.count) this.schedule(options.intervalMs, sendNext);
      };
      sendNext();
    });
  }

  /** Stops every timer, rejects unsettled resolves and pings with `closed`, and ignores frames from now on. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    const error = new DiagError("closed", "the diagnostic host was closed");
    for (const cancel of [...this.cancellers]) cancel(error);
    this.cancellers.clear();
    this.arpWaiters.clear();
    this.outstanding.clear();
  }

  /** Handles one batch from the port; replies go out as one batch. */
  private receive(frames: Uint8Array[]): void {
    if (this.closed) return;
    const replies: Uint8Array[] = [];
    for (const frame of frames) {
      this.counters.framesReceived++;
      if (!this.receiveFrame(frame, replies)) this.counters.framesIgnored++;
    }
    if (replies.length > 0) this.transmit(replies);
  }

  /** Handles one frame; returns false if it was ignored. Replies are appended to `replies`. */
  private receiveFrame(bytes: Uint8Array, replies: Uint8Array[]): boolean {
    const checked = checkEthernetFrame(bytes);
    if (!checked.ok) return false;
    const frame = checked.value;
    const destination = frame.destination();
    // This host is untagged and has one address; it never hears itself.
    if (destination !== this.mac && destination !== BROADCAST_MAC) return false;
    if (frame.source() === this.mac || frameIsTagged(bytes)) return false;
    switch (frame.etherType()) {
      case ETHERTYPE_ARP: {
        const arp = checkArpPacket(frame.payload());
        return arp.ok && this.receiveArp(arp.value, replies);
      }
      case ETHERTYPE_IPV4: {
        const ip = checkIpv4Packet(frame.payload());
        if (!ip.ok) {
          if (ip.error.code === "bad-checksum") this.counters.checksumErrors++;
          return false;
        }
        return this.receiveIpv4(ip.value, frame.source(), replies);
      }
      default:
        return false;
    }
  }

  /** Answers requests for this host's address and learns senders that talk to it (RFC 826, simplified). */
  private receiveArp(arp: ArpPacket, replies: Uint8Array[]): boolean {
    if (arp.targetIp() !== this.ip) return false;
    const senderMac = arp.senderMac();
    const senderIp = arp.senderIp();
    // An ARP probe (sender 0.0.0.0) asks without claiming an address; answer, learn nothing.
    if (senderIp !== 0 && isUsableUnicastMac(senderMac)) this.learn(senderIp, senderMac);
    if (arp.operation() === ArpOperation.Reply) {
      this.counters.arpRepliesReceived++;
      return true;
    }
    this.counters.arpRequestsAnswered++;
    replies.push(
      buildArpFrame(
        { destination: senderMac, source: this.mac },
        { operation: ArpOperation.Reply, senderMac: this.mac, senderIp: this.ip, targetMac: senderMac, targetIp: senderIp },
      ),
    );
    return true;
  }

  /** Answers echo requests to this host and matches echo replies; anything else is ignored. */
  private receiveIpv4(ip: Ipv4Packet, sourceMac: MacKey, replies: Uint8Array[]): boolean {
    if (ip.destination() !== this.ip || ip.isFragment() || ip.protocol() !== IPV4_PROTOCOL_ICMP) return false;
    const checked = checkIcmpEcho(ip.payload());
    if (!checked.ok) {
      if (checked.error.code === "bad-checksum") this.counters.checksumErrors++;
      return false;
    }
    const echo = checked.value;
    if (echo.type() === IcmpEchoType.Request) {
      this.counters.echoRequestsAnswered++;
      // Reply to the frame's sender directly, as a host with a fresh neighbor entry would.
      replies.push(
        buildIcmpEchoFrame(
          { destination: sourceMac, source: this.mac },
          { source: this.ip, destination: ip.source(), identification: this.nextIpIdentification() },
          { type: IcmpEchoType.Reply, identifier: echo.identifier(), sequence: echo.sequence(), data: echo.data() },
        ),
      );
      return true;
    }
    const key = echoKey(echo.identifier(), echo.sequence());
    const pending = this.outstanding.get(key);
    if (pending === undefined || !sameBytes(pending.data, echo.data())) {
      this.counters.echoRepliesUnmatched++;
      return false;
    }
    this.outstanding.delete(key);
    this.counters.echoRepliesMatched++;
    pending.onReply(Math.max(0, this.now() - pending.sentAt));
    return true;
  }

  /** Resolves from the cache or by ARP; see `resolve`. */
  private resolveAddress(target: Ipv4Address, attempts: number, intervalMs: number): Promise<MacKey> {
    const cached = this.neighbors.get(target);
    if (cached !== undefined) return Promise.resolve(cached);
    return new Promise<MacKey>((resolve, reject) => {
      let sent = 0;
      let timer: Timer | null = null;
      let waiters = this.arpWaiters.get(target);
      if (waiters === undefined) {
        waiters = new Set();
        this.arpWaiters.set(target, waiters);
      }
      const waiterSet = waiters;
      const settle = (): void => {
        if (timer !== null) this.cancelTimer(timer);
        waiterSet.delete(waiter);
        if (waiterSet.size === 0 && this.arpWaiters.get(target) === waiterSet) this.arpWaiters.delete(target);
        this.cancellers.delete(waiter.reject);
      };
      const waiter: ArpWaiter = {
        resolve: (mac) => {
          settle();
          resolve(mac);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      };
      waiterSet.add(waiter);
      this.cancellers.add(waiter.reject);

      const attempt = (): void => {
        if (sent === attempts) {
          waiter.reject(
            new DiagError(
              "arp-timeout",
              `no ARP reply from ${formatIpv4(target)} after ${attempts} request${attempts === 1 ? "" : "s"} ` +
                `${intervalMs} ms apart: no host on the segment answers for that address`,
            ),
          );
          return;
        }
        sent++;
        this.counters.arpRequestsSent++;
        this.transmit([
          buildArpFrame(
            { destination: BROADCAST_MAC, source: this.mac },
            { operation: ArpOperation.Request, senderMac: this.mac, senderIp: this.ip, targetMac: 0, targetIp: target },
          ),
        ]);
        // The send may have been answered synchronously; then the waiter is gone.
        if (waiterSet.has(waiter)) timer = this.schedule(intervalMs, attempt);
      };
      attempt();
    });
  }

  /** Records a neighbor and settles everyone waiting for it. */
  private learn(ip: Ipv4Address, mac: MacKey): void {
    this.neighbors.set(ip, mac);
    const waiters = this.arpWaiters.get(ip);
    if (waiters === undefined) return;
    for (const waiter of [...waiters]) waiter.resolve(mac);
  }

  /** Parses a target address, refusing this host's own. */
  private targetAddress(text: string): Ipv4Address {
    const parsed = parseIpv4(text);
    if (!parsed.ok) throw new DiagError("invalid-ipv4", parsed.error.message);
    if (parsed.value === this.ip) {
      throw new DiagError("own-address", `${text} is the diagnostic host's own address; pick another host on the segment`);
    }
    return parsed.value;
  }

  private transmit(frames: Uint8Array[]): void {
    this.counters.framesSent += frames.length;
    this.port.send(frames);
  }

  private nextIpIdentification(): number {
    const id = this.ipIdentification;
    this.ipIdentification = (id + 1) & 0xffff;
    return id;
  }

  /** A tracked timeout; close() clears whatever is still pending. */
  private schedule(ms: number, callback: () => void): Timer {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) callback();
    }, ms);
    this.timers.add(timer);
    return timer;
  }

  private cancelTimer(timer: Timer): void {
    clearTimeout(timer);
    this.timers.delete(timer);
  }

  private checkOpen(): void {
    if (this.closed) throw new DiagError("closed", "the diagnostic host was closed");
  }
}

/** Builds the summary from the RTTs received; statistics are null without replies. */
export function summarize(target: string, transmitted: number, rttsMs: number[]): PingSummary {
  const received = rttsMs.length;
  const lossPercent = transmitted === 0 ? 0 : ((transmitted - received) / transmitted) * 100;
  if (received === 0) {
    return { target, transmitted, received, lossPercent, rttsMs: [], minMs: null, avgMs: null, maxMs: null, p50Ms: null };
  }
  const sorted = [...rttsMs].sort((a, b) => a - b);
  const sum = sorted.reduce((total, rtt) => total + rtt, 0);
  return {
    target,
    transmitted,
    received,
    lossPercent,
    rttsMs: [...rttsMs],
    minMs: sorted[0] as number,
    avgMs: sum / received,
    maxMs: sorted[received - 1] as number,
    p50Ms: sorted[Math.ceil(received / 2) - 1] as number,
  };
}

function requireInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new DiagError("invalid-option", `${name} ${value} must be an integer from ${min} to ${max}`);
  }
}

/** Echo data like ping(8)'s pattern: byte i is i mod 256. */
function echoData(length: number): Uint8Array {
  const data = new Uint8Array(length);
  for (let i = 0; i < length; i++) data[i] = i & 0xff;
  return data;
}

function echoKey(identifier: number, sequence: number): number {
  return identifier * 0x10000 + sequence;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
