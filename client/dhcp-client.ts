/**
 * A DHCPv4 client state machine (RFC 2131 §4.4) over raw Ethernet frames, for an agent that
 * sits on a session's frame path (`edgelan join --dhcp`): INIT → SELECTING (DISCOVER) →
 * REQUESTING (REQUEST) → BOUND, RENEWING at T1 (unicast to the server), REBINDING at T2
 * (broadcast), back to INIT when the lease expires or a NAK arrives; RELEASE on stop.
 *
 * It has no clock and no I/O of its own (as smoltcp's DHCP socket): the owner passes `nowMs`,
 * delivers every frame it receives with `receive`, calls `tick` at the deadline `tick` returns,
 * and gets frames to send through `send` and lease changes through `onEvent`. Not implemented:
 * the ARP conflict probe before using an address (so DECLINE is never sent), relay agents,
 * and INIT-REBOOT (a restarted agent asks afresh; a server that remembers it offers the same address).
 */
import {
  DHCP_CLIENT_PORT, DHCP_SERVER_PORT, DhcpMessageType, DhcpOp, DhcpOption, emitDhcp, parseDhcp, type DhcpRepr,
} from "../datapath/dhcp.ts";
import { checkEthernetFrame, ETH_HEADER_LEN } from "../datapath/ethernet.ts";
import {
  buildUdpFrame, checkIpv4Packet, checkUdpDatagram, ETHERTYPE_IPV4, IPV4_BROADCAST, IPV4_PROTOCOL_UDP, type Ipv4Address,
} from "../datapath/inet.ts";
import { BROADCAST_MAC, macKeyAt, writeMac, type MacKey } from "../datapath/mac.ts";

export type DhcpClientState = "init" | "selecting" | "requesting" | "bound" | "renewing" | "rebinding" | "stopped";

/** What a server granted. Times are seconds from `acquiredAtMs`. */
export interface DhcpLease {
  address: Ipv4Address;
  prefixLength: number;
  routers: Ipv4Address[];
  dnsServers: Ipv4Address[];
  domain: string | null;
  server: Ipv4Address;
  /** Where unicast renewals go: the Ethernet source of the ACK. */
  serverMac: MacKey;
  leaseSeconds: number;
  renewalSeconds: number;
  rebindingSeconds: number;
  acquiredAtMs: number;
}

export type DhcpClientEvent =
  | { kind: "bound"; lease: DhcpLease; previous: DhcpLease | null }
  | { kind: "lost"; lease: DhcpLease; reason: "nak" | "expired" | "released" };

export interface DhcpClientOptions {
  mac: MacKey;
  /** Sent as option 12, so the server can name this host in its DNS. */
  hostname?: string;
  send: (frame: Uint8Array) => void;
  onEvent: (event: DhcpClientEvent) => void;
  /** Source of transaction ids; Math.random unless given (tests pass a fixed one). */
  random?: () => number;
}

/** First retransmission delay; doubled per retry up to MAX_RETRY_MS (RFC 2131 §4.1 suggests 4, 8, 16, 32, 64 s). */
const FIRST_RETRY_MS = 4000;
const MAX_RETRY_MS = 64_000;
/** REQUESTs sent for one OFFER before starting over with a DISCOVER. */
const MAX_REQUESTS = 4;
/** Shortest wait between renewal or rebinding retransmissions (RFC 2131 §4.4.5 says 60 s; short test leases need less). */
const MIN_RENEW_RETRY_MS = 2000;
const PARAMETERS = [DhcpOption.SubnetMask, DhcpOption.Router, DhcpOption.DnsServer, DhcpOption.DomainName, DhcpOption.LeaseTime, DhcpOption.RenewalTime, DhcpOption.RebindingTime];

export class DhcpClient {
  private current: DhcpClientState = "init";
  private xid = 0;
  private attempt = 0;
  private deadlineMs = 0;
  private offer: { address: Ipv4Address; server: Ipv4Address } | null = null;
  private lease: DhcpLease | null = null;
  private readonly clientId: Uint8Array;
  private readonly random: () => number;

  constructor(private readonly options: DhcpClientOptions) {
    this.random = options.random ?? Math.random;
    // Option 61 as RFC 2132 §9.14 suggests for Ethernet: type 1 followed by the MAC.
    this.clientId = new Uint8Array(7);
    this.clientId[0] = 1;
    writeMac(options.mac, this.clientId, 1);
  }

  get state(): DhcpClientState {
    return this.current;
  }

  /** The lease held now, if any. */
  get currentLease(): DhcpLease | null {
    return this.lease;
  }

  /** Starts (or restarts) with a DISCOVER; returns the next deadline. */
  start(nowMs: number): number {
    this.current = "selecting";
    this.newExchange();
    this.offer = null;
    this.sendDiscover();
    return this.retryAt(nowMs);
  }

  /**
   * Acts on time: retransmits, moves to RENEWING at T1, REBINDING at T2, INIT at expiry.
   * Returns the next deadline (ms), or undefined once stopped.
   */
  tick(nowMs: number): number | undefined {
    if (this.current === "stopped" || this.current === "init") return undefined;
    if (nowMs < this.deadlineMs) return this.deadlineMs;
    switch (this.current) {
      case "selecting":
        this.sendDiscover();
        return this.retryAt(nowMs);
      case "requesting":
        if (this.attempt >= MAX_REQUESTS) return this.start(nowMs);
        this.sendSelectingRequest();
        return this.retryAt(nowMs);
      default:
        return this.onLeaseTimer(nowMs);
    }
  }

  /** Takes any frame from the segment; acts on DHCP replies to this client's transaction, ignores the rest. */
  receive(frame: Uint8Array, nowMs: number): number | undefined {
    const reply = this.replyIn(frame);
    if (reply === undefined) return this.tick(nowMs);
    const { repr, sourceMac } = reply;
    if (this.current === "selecting" && repr.messageType === DhcpMessageType.Offer && repr.serverId !== undefined && repr.yiaddr !== 0) {
      this.offer = { address: repr.yiaddr, server: repr.serverId };
      this.current = "requesting";
      this.attempt = 0;
      this.sendSelectingRequest();
      return this.retryAt(nowMs);
    }
    const waiting = this.current === "requesting" || this.current === "renewing" || this.current === "rebinding";
    if (!waiting) return this.tick(nowMs);
    if (repr.messageType === DhcpMessageType.Ack && repr.yiaddr !== 0) return this.bind(repr, sourceMac, nowMs);
    if (repr.messageType === DhcpMessageType.Nak) {
      this.drop("nak");
      return this.start(nowMs);
    }
    return this.tick(nowMs);
  }

  /** Gives the lease back (RELEASE, unicast to the server) and stops for good. */
  release(): void {
    const lease = this.lease;
    this.current = "stopped";
    if (lease === null) return;
    this.newExchange();
    this.sendTo(lease.serverMac, lease.address, lease.server, {
      ...this.request(DhcpMessageType.Release), ciaddr: lease.address, serverId: lease.server,
    });
    this.drop("released");
    this.current = "stopped";
  }

  private onLeaseTimer(nowMs: number): number {
    const lease = this.lease as DhcpLease;
    const t2 = lease.acquiredAtMs + lease.rebindingSeconds * 1000;
    const end = lease.acquiredAtMs + lease.leaseSeconds * 1000;
    if (nowMs >= end) {
      this.drop("expired");
      return this.start(nowMs);
    }
    if (nowMs >= t2) {
      if (this.current !== "rebinding") this.newExchange();
      this.current = "rebinding";
      this.sendTo(BROADCAST_MAC, lease.address, IPV4_BROADCAST, { ...this.request(DhcpMessageType.Request), ciaddr: lease.address });
      this.deadlineMs = Math.min(end, nowMs + Math.max(MIN_RENEW_RETRY_MS, (end - nowMs) / 2));
      return this.deadlineMs;
    }
    if (this.current === "bound") this.newExchange();
    this.current = "renewing";
    this.sendTo(lease.serverMac, lease.address, lease.server, { ...this.request(DhcpMessageType.Request), ciaddr: lease.address });
    this.deadlineMs = Math.min(t2, nowMs + Math.max(MIN_RENEW_RETRY_MS, (t2 - nowMs) / 2));
    return this.deadlineMs;
  }

  private bind(ack: DhcpRepr, sourceMac: MacKey, nowMs: number): number {
    const lease = this.leaseFrom(ack, sourceMac, nowMs);
    const previous = this.lease;
    this.lease = lease;
    this.current = "bound";
    this.deadlineMs = nowMs + lease.renewalSeconds * 1000;
    this.options.onEvent({ kind: "bound", lease, previous });
    return this.deadlineMs;
  }

  /** The lease an ACK grants; T1 and T2 default to 1/2 and 7/8 of the lease (RFC 2131 §4.4.5). */
  private leaseFrom(ack: DhcpRepr, sourceMac: MacKey, nowMs: number): DhcpLease {
    const leaseSeconds = ack.leaseSeconds ?? 3600;
    const rebinding = Math.min(ack.rebindingSeconds ?? Math.floor((leaseSeconds * 7) / 8), leaseSeconds);
    return {
      address: ack.yiaddr,
      prefixLength: prefixLengthOf(ack.subnetMask ?? classfulMask(ack.yiaddr)),
      routers: ack.routers ?? [],
      dnsServers: ack.dnsServers ?? [],
      domain: ack.domainName ?? null,
      server: ack.serverId ?? this.offer?.server ?? 0,
      serverMac: sourceMac,
      leaseSeconds,
      renewalSeconds: Math.min(ack.renewalSeconds ?? Math.floor(leaseSeconds / 2), rebinding),
      rebindingSeconds: rebinding,
      acquiredAtMs: nowMs,
    };
  }

  private drop(reason: "nak" | "expired" | "released"): void {
    const lease = this.lease;
    this.lease = null;
    this.current = "init";
    if (lease !== null) this.options.onEvent({ kind: "lost", lease, reason });
  }

  private newExchange(): void {
    this.xid = Math.floor(this.random() * 0x1_0000_0000) >>> 0;
    this.attempt = 0;
  }

  /** Next retransmission: 4 s, 8 s, 16 s ... up to 64 s. */
  private retryAt(nowMs: number): number {
    this.deadlineMs = nowMs + Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** this.attempt);
    this.attempt++;
    return this.deadlineMs;
  }

  private request(messageType: DhcpMessageType): DhcpRepr {
    return {
      op: DhcpOp.Request, messageType, xid: this.xid, broadcast: false, ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0,
      clientMac: this.options.mac, clientId: this.clientId,
      ...(messageType === DhcpMessageType.Release ? {} : { parameterList: PARAMETERS }),
      ...(this.options.hostname === undefined || messageType === DhcpMessageType.Release ? {} : { hostName: this.options.hostname }),
    };
  }

  private sendDiscover(): void {
    this.sendTo(BROADCAST_MAC, 0, IPV4_BROADCAST, this.request(DhcpMessageType.Discover));
  }

  private sendSelectingRequest(): void {
    const offer = this.offer as { address: Ipv4Address; server: Ipv4Address };
    this.sendTo(BROADCAST_MAC, 0, IPV4_BROADCAST, { ...this.request(DhcpMessageType.Request), serverId: offer.server, requestedIp: offer.address });
  }

  private sendTo(destinationMac: MacKey, source: Ipv4Address, destination: Ipv4Address, repr: DhcpRepr): void {
    this.options.send(buildUdpFrame(
      { destination: destinationMac, source: this.options.mac },
      { source, destination },
      { sourcePort: DHCP_CLIENT_PORT, destinationPort: DHCP_SERVER_PORT, payload: emitDhcp(repr) },
    ));
  }

  /** The DHCP reply to this client's current transaction in `frame`, or undefined. */
  private replyIn(frame: Uint8Array): { repr: DhcpRepr; sourceMac: MacKey } | undefined {
    const ethernet = checkEthernetFrame(frame);
    if (!ethernet.ok || ethernet.value.isTagged() || ethernet.value.etherType() !== ETHERTYPE_IPV4) return undefined;
    const ip = checkIpv4Packet(frame.subarray(ETH_HEADER_LEN));
    if (!ip.ok || ip.value.protocol() !== IPV4_PROTOCOL_UDP || ip.value.isFragment()) return undefined;
    const udp = checkUdpDatagram(ip.value.payload(), ip.value.source(), ip.value.destination());
    if (!udp.ok || udp.value.destinationPort() !== DHCP_CLIENT_PORT) return undefined;
    const parsed = parseDhcp(udp.value.payload());
    if (!parsed.ok || parsed.value.op !== DhcpOp.Reply || parsed.value.xid !== this.xid || parsed.value.clientMac !== this.options.mac) return undefined;
    return { repr: parsed.value, sourceMac: macKeyAt(frame, 6) };
  }
}

/** Leading one bits of a netmask (a non-contiguous mask counts up to its first zero). */
export function prefixLengthOf(mask: Ipv4Address): number {
  let length = 0;
  while (length < 32 && ((mask >>> (31 - length)) & 1) === 1) length++;
  return length;
}

/** The mask of an address's class, for a server that sends no option 1. */
function classfulMask(address: Ipv4Address): Ipv4Address {
  if (address >>> 31 === 0) return 0xff000000;
  if (address >>> 30 === 2) return 0xffff0000;
  return 0xffffff00;
}
