import {
  addressOfReverseName, DNS_CLASS_IN, DNS_PORT, DnsOpcode, DnsRcode, DnsType, emitDnsResponse, parseDnsQuery, type DnsAnswer, type DnsQuery,
} from "../dns.ts";
import {
  DHCP_CLIENT_PORT, DHCP_SERVER_PORT, DhcpMessageType, DhcpOp, emitDhcp, parseDhcp, type DhcpRepr,
} from "../dhcp.ts";
import { checkEthernetFrame, ETH_HEADER_LEN } from "../ethernet.ts";
import {
  ArpOperation, buildArpFrame, buildIcmpEchoFrame, buildUdpFrame, checkIcmpEcho, checkIpv4Packet, checkUdpDatagram,
  ETHERTYPE_ARP, ETHERTYPE_IPV4, IcmpEchoType, IPV4_BROADCAST, IPV4_PROTOCOL_ICMP, IPV4_PROTOCOL_UDP, type Ipv4Address, type Ipv4Packet,
} from "../inet.ts";
import { BROADCAST_MAC, macKeyAt, writeMac, type MacKey } from "../mac.ts";
import type { EmitFrame, ServicePort } from "../service-port.ts";
import { arpRequestIn, proxyArpReply, type ArpBindings } from "./arp-proxy.ts";
import { isHostLabel, type IpamSettings } from "./config.ts";
import { clientKeyOf, LeaseTable, type LeaseClient } from "./lease-table.ts";

/*
 * The IPAM service: a port of the segment switch (datapath/service-port.ts) that is a DHCPv4
 * server (RFC 2131), an ARP proxy for the addresses it leased or reserved, and an authoritative
 * DNS server for `<hostname>.<domain>` and the subnet's in-addr.arpa names. It answers from its
 * own MAC and address (`settings.server`); it never throws on input: every frame it cannot use
 * is dropped and counted.
 */

/** Counters of the service, by what happened to the frames it saw. */
export interface IpamCounters {
  dhcpReceived: number;
  /** DHCP messages that failed to parse (bad magic, options past the end, ...). */
  dhcpMalformed: number;
  /** Well-formed DHCP messages not served: replies, relayed (giaddr set), chaddr ≠ Ethernet source, other servers' business. */
  dhcpIgnored: number;
  offers: number;
  acks: number;
  naks: number;
  releases: number;
  declines: number;
  informs: number;
  /** DISCOVERs left unanswered because no address was free. */
  poolExhausted: number;
  dnsQueries: number;
  dnsMalformed: number;
  dnsAnswered: number;
  dnsNxdomain: number;
  dnsRefused: number;
  /** ARP requests for the service's own address answered. */
  arpReplies: number;
  /** ARP broadcasts answered on an owner's behalf instead of being flooded. */
  arpSuppressed: number;
  echoReplies: number;
  /** Frames for the service that were not ARP, DHCP, DNS or ping, or were malformed below those (IPv4, UDP). */
  framesIgnored: number;
}

/** TTL of the DNS answers: how stale a name may be in a cache after its lease changed. */
export const DNS_TTL_SECONDS = 30;
/** Leases are swept for expiry at most this often (each sweep walks the table once). */
const SWEEP_INTERVAL_MS = 1000;
/** The service's MAC unless given: 02:ed:1a followed by the low three octets of its address. */
const SERVICE_MAC_PREFIX = 0x02ed1a000000;

/** The MAC a service with address `server` uses by default. */
export function defaultServiceMac(server: Ipv4Address): MacKey {
  return SERVICE_MAC_PREFIX + (server & 0xffffff);
}

function zeroCounters(): IpamCounters {
  return {
    dhcpReceived: 0, dhcpMalformed: 0, dhcpIgnored: 0, offers: 0, acks: 0, naks: 0, releases: 0, declines: 0, informs: 0, poolExhausted: 0,
    dnsQueries: 0, dnsMalformed: 0, dnsAnswered: 0, dnsNxdomain: 0, dnsRefused: 0, arpReplies: 0, arpSuppressed: 0, echoReplies: 0, framesIgnored: 0,
  };
}

/** What the handlers need of a received IPv4/UDP frame. */
interface Received {
  sourceMac: MacKey;
  ip: Ipv4Packet;
  sourcePort: number;
  payload: Uint8Array;
}

export class IpamService implements ServicePort {
  readonly name = "ipam";
  readonly macs: readonly Uint8Array[];
  readonly mac: MacKey;
  readonly leases: LeaseTable;
  readonly counters: IpamCounters = zeroCounters();
  private lastSweepMs = -Infinity;
  /** Set by every frame the service counts (deliver, an answered intercept); taken by the host that stores them. */
  private countersChanged = false;

  constructor(readonly settings: IpamSettings, mac: MacKey = defaultServiceMac(settings.server)) {
    this.mac = mac;
    const bytes = new Uint8Array(6);
    writeMac(mac, bytes, 0);
    this.macs = [bytes];
    this.leases = new LeaseTable(settings);
  }

  /** Whether leases changed since the last call (persist `exportState()` then). */
  takeDirty(): boolean {
    return this.leases.takeDirty();
  }

  /** Forces the next `takeDirty()` to be true (after a reconfiguration dropped leases). */
  markDirty(): void {
    this.leases.markDirty();
  }

  exportState(): ReturnType<LeaseTable["exportState"]> {
    return this.leases.exportState();
  }

  /** Restores stored leases (see LeaseTable.importState); returns how many were skipped. */
  importState(state: unknown, nowMs: number): number {
    return this.leases.importState(state, nowMs);
  }

  /**
   * Carries on counting from `stored` (the counters of an earlier service of this segment, or what
   * storage kept of them): each field that is a non-negative integer is taken; anything else is ignored.
   */
  restoreCounters(stored: unknown): void {
    if (typeof stored !== "object" || stored === null) return;
    const fields = stored as Record<string, unknown>;
    for (const key of Object.keys(this.counters) as Array<keyof IpamCounters>) {
      const value = fields[key];
      if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) this.counters[key] = value;
    }
  }

  /** Whether a counter may have changed since the last call (every frame delivered or answered counts one). */
  takeCountersChanged(): boolean {
    const changed = this.countersChanged;
    this.countersChanged = false;
    return changed;
  }

  /** Ends expired leases and quarantines now (the service also does it by itself, at most once a second). */
  sweep(nowMs: number): void {
    this.lastSweepMs = nowMs;
    this.leases.expire(nowMs);
  }

  deliver(frame: Uint8Array, nowMs: number, emit: EmitFrame): void {
    this.countersChanged = true;
    if (nowMs - this.lastSweepMs >= SWEEP_INTERVAL_MS) this.sweep(nowMs);
    const ethernet = checkEthernetFrame(frame);
    // Services serve untagged frames only: a tagged frame belongs to a VLAN the service is not on.
    if (!ethernet.ok || ethernet.value.isTagged()) {
      this.counters.framesIgnored++;
      return;
    }
    const type = ethernet.value.etherType();
    if (type === ETHERTYPE_ARP) this.onArpForService(frame, emit);
    else if (type === ETHERTYPE_IPV4) this.onIpv4(frame, nowMs, emit);
    else this.counters.framesIgnored++;
  }

  /**
   * ARP proxy: answers a broadcast ARP request for an address leased (bound) or reserved on
   * behalf of its owner, so the request need not be flooded. Never answers probes (sender IP
   * 0.0.0.0, RFC 5227), gratuitous ARP (sender IP = target IP), or an owner asking about itself.
   */
  intercept(frame: Uint8Array, _ingressPortId: number, nowMs: number, emit: EmitFrame): boolean {
    if (!this.settings.arpProxy) return false;
    if (nowMs - this.lastSweepMs >= SWEEP_INTERVAL_MS) this.sweep(nowMs);
    const reply = proxyArpReply(frame, (ip) => this.leases.ownerOf(ip), this.mac);
    if (reply === null) return false;
    emit(reply);
    this.counters.arpSuppressed++;
    this.countersChanged = true;
    return true;
  }

  /** What the ARP proxy answers for, for the other cells of a segment (docs/cells.md §0 item 12): null when the proxy is off. */
  arpBindings(): ArpBindings | null {
    return this.settings.arpProxy ? { serviceMac: this.mac, addresses: this.leases.bindings() } : null;
  }

  /** Changes whenever `arpBindings()` may have (the bound leases or reservations changed), so it need not be built to tell. */
  get arpBindingsVersion(): number {
    return this.settings.arpProxy ? this.leases.version : -1;
  }

  private onArpForService(frame: Uint8Array, emit: EmitFrame): void {
    const request = arpRequestIn(frame);
    if (request === undefined || request.targetIp !== this.settings.server) {
      this.counters.framesIgnored++;
      return;
    }
    emit(buildArpFrame(
      { destination: macKeyAt(frame, 6), source: this.mac },
      { operation: ArpOperation.Reply, senderMac: this.mac, senderIp: this.settings.server, targetMac: request.senderMac, targetIp: request.senderIp },
    ));
    this.counters.arpReplies++;
  }

  private onIpv4(frame: Uint8Array, nowMs: number, emit: EmitFrame): void {
    const checked = checkIpv4Packet(frame.subarray(ETH_HEADER_LEN));
    if (!checked.ok || checked.value.isFragment()) {
      this.counters.framesIgnored++;
      return;
    }
    const ip = checked.value;
    const sourceMac = macKeyAt(frame, 6);
    if (ip.protocol() === IPV4_PROTOCOL_ICMP && ip.destination() === this.settings.server) {
      this.onPing(sourceMac, ip, emit);
      return;
    }
    if (ip.protocol() !== IPV4_PROTOCOL_UDP) {
      this.counters.framesIgnored++;
      return;
    }
    const udp = checkUdpDatagram(ip.payload(), ip.source(), ip.destination());
    if (!udp.ok) {
      this.counters.framesIgnored++;
      return;
    }
    const received: Received = { sourceMac, ip, sourcePort: udp.value.sourcePort(), payload: udp.value.payload() };
    const port = udp.value.destinationPort();
    const toServer = ip.destination() === this.settings.server;
    if (port === DHCP_SERVER_PORT && (toServer || ip.destination() === IPV4_BROADCAST)) this.onDhcp(received, nowMs, emit);
    else if (port === DNS_PORT && toServer && this.settings.dns) this.onDns(received, emit);
    else this.counters.framesIgnored++;
  }

  private onPing(sourceMac: MacKey, ip: Ipv4Packet, emit: EmitFrame): void {
    const echo = checkIcmpEcho(ip.payload());
    if (!echo.ok || echo.value.type() !== IcmpEchoType.Request) {
      this.counters.framesIgnored++;
      return;
    }
    emit(buildIcmpEchoFrame(
      { destination: sourceMac, source: this.mac },
      { source: this.settings.server, destination: ip.source() },
      { type: IcmpEchoType.Reply, identifier: echo.value.identifier(), sequence: echo.value.sequence(), data: echo.value.data() },
    ));
    this.counters.echoReplies++;
  }

  // ---- DHCP ----------------------------------------------------------------------------

  private onDhcp(received: Received, nowMs: number, emit: EmitFrame): void {
    this.counters.dhcpReceived++;
    const parsed = parseDhcp(received.payload);
    if (!parsed.ok) {
      this.counters.dhcpMalformed++;
      return;
    }
    const request = parsed.value;
    // Relay agents are not served (the service answers its own link), and a client may only
    // speak for the MAC it sends from: otherwise one port could lease the pool under made-up MACs.
    if (request.op !== DhcpOp.Request || request.giaddr !== 0 || request.clientMac !== received.sourceMac) {
      this.counters.dhcpIgnored++;
      return;
    }
    const client: LeaseClient = {
      key: clientKeyOf(request.clientMac, request.clientId), mac: request.clientMac, hostname: hostLabelOf(request.hostName),
    };
    const ours = request.serverId === undefined || request.serverId === this.settings.server;
    switch (request.messageType) {
      case DhcpMessageType.Discover: return this.onDiscover(request, client, nowMs, emit);
      case DhcpMessageType.Request: return this.onRequest(request, client, nowMs, emit);
      case DhcpMessageType.Decline:
        if (ours && request.requestedIp !== undefined && this.leases.decline(client.key, request.requestedIp, nowMs)) this.counters.declines++;
        else this.counters.dhcpIgnored++;
        return;
      case DhcpMessageType.Release:
        if (ours && this.leases.release(client.key, request.ciaddr)) this.counters.releases++;
        else this.counters.dhcpIgnored++;
        return;
      case DhcpMessageType.Inform:
        if (request.ciaddr === 0) this.counters.dhcpIgnored++;
        else this.reply(request, DhcpMessageType.Ack, 0, client, emit, false);
        return;
      default:
        this.counters.dhcpIgnored++;
    }
  }

  private onDiscover(request: DhcpRepr, client: LeaseClient, nowMs: number, emit: EmitFrame): void {
    const offered = this.leases.offer(client, request.requestedIp, nowMs);
    if (!offered.ok) {
      this.counters.poolExhausted++;
      return;
    }
    this.reply(request, DhcpMessageType.Offer, offered.value, client, emit, true);
  }

  /**
   * REQUEST in its three forms (RFC 2131 §4.3.2): SELECTING names a server (ours: bind the
   * requested address; another: forget our offer); INIT-REBOOT asks for an address without a
   * server id; RENEWING/REBINDING carry the address in ciaddr. A free address in the pool is
   * granted even without a record of the client (the table may have been lost); a taken, foreign
   * or quarantined one gets a NAK so the client starts over at once.
   */
  private onRequest(request: DhcpRepr, client: LeaseClient, nowMs: number, emit: EmitFrame): void {
    if (request.serverId !== undefined && request.serverId !== this.settings.server) {
      const held = this.leases.leaseOfClient(client.key);
      if (held?.state === "offered") this.leases.release(client.key, held.ip);
      this.counters.dhcpIgnored++;
      return;
    }
    const ip = request.requestedIp ?? request.ciaddr;
    if (ip === 0) {
      this.counters.dhcpIgnored++;
      return;
    }
    const bound = this.leases.bind(client, ip, this.settings.leaseSeconds, nowMs);
    if (!bound.ok) {
      this.nak(request, bound.error.message, emit);
      return;
    }
    this.reply(request, DhcpMessageType.Ack, ip, client, emit, true);
  }

  private nak(request: DhcpRepr, message: string, emit: EmitFrame): void {
    const repr: DhcpRepr = {
      op: DhcpOp.Reply, messageType: DhcpMessageType.Nak, xid: request.xid, broadcast: request.broadcast,
      ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, clientMac: request.clientMac,
      serverId: this.settings.server, message: message.slice(0, 200), ...(request.clientId === undefined ? {} : { clientId: request.clientId }),
    };
    // A NAK is broadcast (RFC 2131 §4.3.2): the client may not have the address it thinks it has.
    this.send(repr, BROADCAST_MAC, IPV4_BROADCAST, emit);
    this.counters.naks++;
  }

  /** Sends an OFFER or ACK for `yiaddr` (0 for an INFORM's ACK) with the configured options. */
  private reply(request: DhcpRepr, type: DhcpMessageType, yiaddr: Ipv4Address, client: LeaseClient, emit: EmitFrame, withLease: boolean): void {
    const s = this.settings;
    const lease = s.leaseSeconds;
    const hostName = this.leases.leaseOfClient(client.key)?.hostname ?? undefined;
    const repr: DhcpRepr = {
      op: DhcpOp.Reply, messageType: type, xid: request.xid, broadcast: request.broadcast,
      ciaddr: request.ciaddr, yiaddr, siaddr: 0, giaddr: 0, clientMac: request.clientMac,
      serverId: s.server, subnetMask: s.mask, domainName: s.domain,
      ...(withLease ? { leaseSeconds: lease, renewalSeconds: Math.floor(lease / 2), rebindingSeconds: Math.floor((lease * 7) / 8) } : {}),
      ...(s.router === null ? {} : { routers: [s.router] }),
      ...(s.dns ? { dnsServers: [s.server] } : {}),
      ...(hostName === undefined || !withLease ? {} : { hostName }),
      ...(request.clientId === undefined ? {} : { clientId: request.clientId }),
    };
    // RFC 2131 §4.1: to ciaddr when the client has one; broadcast when it asked; else to yiaddr at chaddr.
    if (request.ciaddr !== 0) this.send(repr, request.clientMac, request.ciaddr, emit);
    else if (request.broadcast) this.send(repr, BROADCAST_MAC, IPV4_BROADCAST, emit);
    else this.send(repr, request.clientMac, yiaddr, emit);
    if (type === DhcpMessageType.Offer) this.counters.offers++;
    else if (withLease) this.counters.acks++;
    else this.counters.informs++;
  }

  private send(repr: DhcpRepr, destinationMac: MacKey, destination: Ipv4Address, emit: EmitFrame): void {
    emit(buildUdpFrame(
      { destination: destinationMac, source: this.mac },
      { source: this.settings.server, destination },
      { sourcePort: DHCP_SERVER_PORT, destinationPort: DHCP_CLIENT_PORT, payload: emitDhcp(repr) },
    ));
  }

  // ---- DNS -----------------------------------------------------------------------------

  private onDns(received: Received, emit: EmitFrame): void {
    this.counters.dnsQueries++;
    const parsed = parseDnsQuery(received.payload);
    if (!parsed.ok) {
      this.counters.dnsMalformed++;
      return;
    }
    const query = parsed.value;
    const { rcode, answers } = this.resolve(query);
    if (rcode === DnsRcode.NxDomain) this.counters.dnsNxdomain++;
    else if (rcode === DnsRcode.Refused) this.counters.dnsRefused++;
    else this.counters.dnsAnswered++;
    const response = emitDnsResponse(query, { rcode, authoritative: rcode !== DnsRcode.Refused && rcode !== DnsRcode.NotImp, answers });
    emit(buildUdpFrame(
      { destination: received.sourceMac, source: this.mac },
      { source: this.settings.server, destination: received.ip.source() },
      { sourcePort: DNS_PORT, destinationPort: received.sourcePort, payload: response },
    ));
  }

  /**
   * The answer to one question. Authoritative for `<domain>` and the subnet's reverse names:
   * a known name gets its record (or no record, NOERROR, for another type such as AAAA, so a
   * resolver asking A and AAAA together still succeeds); an unknown name there is NXDOMAIN.
   * Any other name is REFUSED: there is no recursion, and REFUSED sends a stub resolver on to
   * its next server instead of caching a false "does not exist".
   */
  private resolve(query: DnsQuery): { rcode: DnsRcode; answers: DnsAnswer[] } {
    if (query.opcode !== DnsOpcode.Query) return { rcode: DnsRcode.NotImp, answers: [] };
    if (query.class !== DNS_CLASS_IN) return { rcode: DnsRcode.Refused, answers: [] };
    const { domain } = this.settings;
    if (query.name === domain) return { rcode: DnsRcode.NoError, answers: [] };
    if (query.name.endsWith(`.${domain}`)) {
      const label = query.name.slice(0, -domain.length - 1);
      const address = label.includes(".") ? undefined : this.leases.addressOfName(label);
      if (address === undefined) return { rcode: DnsRcode.NxDomain, answers: [] };
      const answers: DnsAnswer[] = query.type === DnsType.A ? [{ type: DnsType.A, ttl: DNS_TTL_SECONDS, address }] : [];
      return { rcode: DnsRcode.NoError, answers };
    }
    const address = addressOfReverseName(query.name);
    if (address === undefined || ((address & this.settings.mask) >>> 0) !== this.settings.network) return { rcode: DnsRcode.Refused, answers: [] };
    const name = this.leases.nameOfAddress(address);
    if (name === undefined) return { rcode: DnsRcode.NxDomain, answers: [] };
    const answers: DnsAnswer[] = query.type === DnsType.PTR ? [{ type: DnsType.PTR, ttl: DNS_TTL_SECONDS, name: `${name}.${domain}` }] : [];
    return { rcode: DnsRcode.NoError, answers };
  }
}

/**
 * The DNS label a client's option 12 may become: lower case, its first label only, characters
 * other than letters, digits and hyphens turned into hyphens, at most 63; null if nothing usable.
 */
export function hostLabelOf(hostName: string | undefined): string | null {
  if (hostName === undefined) return null;
  const label = (hostName.split(".")[0] ?? "").toLowerCase().replace(/[^a-z0-9-]/g, "-").slice(0, 63).replace(/^-+|-+$/g, "");
  return isHostLabel(label) ? label : null;
}
