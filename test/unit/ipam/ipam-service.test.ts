import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DhcpMessageType, DhcpOp, emitDhcp, parseDhcp, type DhcpRepr } from "../../../datapath/dhcp.ts";
import { DnsRcode, DnsType, encodeDnsName } from "../../../datapath/dns.ts";
import { readU16BE } from "../../../datapath/bytes.ts";
import { ETH_HEADER_LEN } from "../../../datapath/ethernet.ts";
import {
  ArpOperation, buildArpFrame, buildIcmpEchoFrame, buildUdpFrame, checkArpPacket, checkIpv4Packet, checkUdpDatagram, IcmpEchoType,
} from "../../../datapath/inet.ts";
import { checkDhcpConfig, ipamSettings, type DhcpConfig } from "../../../datapath/ipam/config.ts";
import { IpamService } from "../../../datapath/ipam/ipam-service.ts";
import { macKeyAt } from "../../../datapath/mac.ts";
import { hex, toHex } from "../tunnel/hex.ts";

// The IPAM service as the switch sees it: frames in through deliver()/intercept(), frames out
// through emit. Segment 10.44.0.0/24, router .1, service at .254 (MAC 02:ed:1a:2c:00:fe),
// pool .100-.109, db reserved at .10 for 02:00:00:00:00:d0.

const SERVER = 0x0a2c00fe;
const SERVICE_MAC = 0x02ed1a2c00fe;
const BROADCAST = 0xffff_ffff_ffff;
const ip = (host: number): number => 0x0a2c0000 + host;
const macOf = (n: number): number => 0x020000000100 + n;

function service(overrides: Partial<DhcpConfig> = {}): IpamService {
  const config = checkDhcpConfig({
    subnet: "10.44.0.0/24", range: ["10.44.0.100", "10.44.0.109"], router: "10.44.0.1", domain: "lab.lan", leaseSeconds: 600,
    reservations: [{ mac: "02:00:00:00:00:d0", ip: "10.44.0.10", hostname: "db" }], ...overrides,
  });
  if (!config.ok) throw new Error(config.error.message);
  return new IpamService(ipamSettings(config.value));
}

function request(n: number, type: DhcpMessageType, fields: Partial<DhcpRepr> = {}): DhcpRepr {
  return { op: DhcpOp.Request, messageType: type, xid: 0x1000 + n, broadcast: false, ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, clientMac: macOf(n), ...fields };
}

/** A client's DHCP message in a frame: from its MAC (or `sourceMac`), to the broadcast address unless it has one. */
function dhcpFrame(repr: DhcpRepr, sourceMac = repr.clientMac): Uint8Array {
  const unicast = repr.ciaddr !== 0;
  return buildUdpFrame(
    { destination: unicast ? SERVICE_MAC : BROADCAST, source: sourceMac },
    { source: repr.ciaddr, destination: unicast ? SERVER : 0xffffffff },
    { sourcePort: 68, destinationPort: 67, payload: emitDhcp(repr) },
  );
}

function deliver(svc: IpamService, frame: Uint8Array, now = 0): Uint8Array[] {
  const out: Uint8Array[] = [];
  svc.deliver(frame, now, (f) => out.push(f.slice()));
  return out;
}

interface Reply { ethDst: number; ethSrc: number; ipSrc: number; ipDst: number; ports: [number, number]; payload: Uint8Array }

function udpReply(frame: Uint8Array | undefined): Reply {
  if (frame === undefined) throw new Error("no reply");
  const packet = checkIpv4Packet(frame.subarray(ETH_HEADER_LEN));
  if (!packet.ok) throw new Error(packet.error.message);
  const udp = checkUdpDatagram(packet.value.payload(), packet.value.source(), packet.value.destination());
  if (!udp.ok) throw new Error(udp.error.message);
  return {
    ethDst: macKeyAt(frame, 0), ethSrc: macKeyAt(frame, 6), ipSrc: packet.value.source(), ipDst: packet.value.destination(),
    ports: [udp.value.sourcePort(), udp.value.destinationPort()], payload: udp.value.payload(),
  };
}

function dhcpReply(frames: Uint8Array[]): DhcpRepr & { reply: Reply } {
  expect(frames.length).toBe(1);
  const reply = udpReply(frames[0]);
  expect(reply.ports).toEqual([67, 68]);
  expect(reply.ethSrc).toBe(SERVICE_MAC);
  expect(reply.ipSrc).toBe(SERVER);
  const parsed = parseDhcp(reply.payload);
  if (!parsed.ok) throw new Error(parsed.error.message);
  return { ...parsed.value, reply };
}

/** DISCOVER then REQUEST; returns the ACK. */
function lease(svc: IpamService, n: number, fields: Partial<DhcpRepr> = {}, now = 0): DhcpRepr & { reply: Reply } {
  const offer = dhcpReply(deliver(svc, dhcpFrame(request(n, DhcpMessageType.Discover, fields)), now));
  return dhcpReply(deliver(svc, dhcpFrame(request(n, DhcpMessageType.Request, { ...fields, serverId: SERVER, requestedIp: offer.yiaddr })), now));
}

describe("IPAM service: DHCP", () => {
  it("DISCOVER → OFFER → REQUEST → ACK with every configured option, client identifier echoed", () => {
    const svc = service();
    const clientId = hex("01 02 00 00 00 01 01");
    const offer = dhcpReply(deliver(svc, dhcpFrame(request(1, DhcpMessageType.Discover, { clientId }))));
    expect(offer).toMatchObject({
      op: DhcpOp.Reply, messageType: DhcpMessageType.Offer, xid: 0x1001, clientMac: macOf(1),
      serverId: SERVER, subnetMask: 0xffffff00, routers: [ip(1)], dnsServers: [SERVER], domainName: "lab.lan",
      leaseSeconds: 600, renewalSeconds: 300, rebindingSeconds: 525, clientId,
    });
    expect(offer.yiaddr).toBeGreaterThanOrEqual(ip(100));
    expect(offer.yiaddr).toBeLessThanOrEqual(ip(109));
    // No broadcast flag: the reply goes to the offered address at the client's MAC.
    expect(offer.reply).toMatchObject({ ethDst: macOf(1), ipDst: offer.yiaddr });
    const ack = dhcpReply(deliver(svc, dhcpFrame(request(1, DhcpMessageType.Request, { clientId, serverId: SERVER, requestedIp: offer.yiaddr }))));
    expect(ack).toMatchObject({ messageType: DhcpMessageType.Ack, yiaddr: offer.yiaddr, leaseSeconds: 600 });
    expect(svc.leases.leaseOf(offer.yiaddr)).toMatchObject({ state: "bound", client: "id:01020000000101" });
    expect(svc.counters).toMatchObject({ offers: 1, acks: 1, dhcpReceived: 2 });
    expect(svc.takeDirty()).toBe(true);
  });

  it("honours the broadcast flag: OFFER and ACK to ff:ff:ff:ff:ff:ff and 255.255.255.255", () => {
    const svc = service();
    const ack = lease(svc, 2, { broadcast: true });
    expect(ack.reply).toMatchObject({ ethDst: BROADCAST, ipDst: 0xffffffff });
  });

  it("renews (ciaddr set, unicast to it) and keeps the address; rebinding likewise", () => {
    const svc = service();
    const first = lease(svc, 3);
    const renewed = dhcpReply(deliver(svc, dhcpFrame(request(3, DhcpMessageType.Request, { ciaddr: first.yiaddr })), 300_000));
    expect(renewed).toMatchObject({ messageType: DhcpMessageType.Ack, yiaddr: first.yiaddr });
    expect(renewed.reply).toMatchObject({ ethDst: macOf(3), ipDst: first.yiaddr });
    expect(svc.leases.leaseOf(first.yiaddr)?.expiresAtMs).toBe(300_000 + 600_000);
  });

  it("NAKs (broadcast) a request for an address another client holds", () => {
    const svc = service();
    const first = lease(svc, 4);
    const nak = dhcpReply(deliver(svc, dhcpFrame(request(5, DhcpMessageType.Request, { requestedIp: first.yiaddr }))));
    expect(nak).toMatchObject({ messageType: DhcpMessageType.Nak, yiaddr: 0, serverId: SERVER });
    expect(nak.message).toMatch(/held by another client/);
    expect(nak.reply).toMatchObject({ ethDst: BROADCAST, ipDst: 0xffffffff });
    expect(svc.counters.naks).toBe(1);
  });

  it("grants INIT-REBOOT for a free address in the pool (the table may have been lost), NAKs one outside", () => {
    const svc = service();
    expect(dhcpReply(deliver(svc, dhcpFrame(request(6, DhcpMessageType.Request, { requestedIp: ip(107) }))))).toMatchObject({ messageType: DhcpMessageType.Ack, yiaddr: ip(107) });
    expect(dhcpReply(deliver(svc, dhcpFrame(request(7, DhcpMessageType.Request, { requestedIp: 0x0a2d0005 }))))).toMatchObject({ messageType: DhcpMessageType.Nak });
  });

  it("forgets its offer when the client selects another server, without a reply", () => {
    const svc = service();
    const offer = dhcpReply(deliver(svc, dhcpFrame(request(8, DhcpMessageType.Discover))));
    expect(deliver(svc, dhcpFrame(request(8, DhcpMessageType.Request, { serverId: ip(2), requestedIp: ip(77) })))).toEqual([]);
    expect(svc.leases.leaseOf(offer.yiaddr)).toBeUndefined();
  });

  it("RELEASE returns the address; DECLINE quarantines it", () => {
    const svc = service();
    const a = lease(svc, 9).yiaddr;
    expect(deliver(svc, dhcpFrame(request(9, DhcpMessageType.Release, { ciaddr: a, serverId: SERVER })))).toEqual([]);
    expect(svc.leases.leaseOf(a)).toBeUndefined();
    const b = lease(svc, 10).yiaddr;
    deliver(svc, dhcpFrame(request(10, DhcpMessageType.Decline, { requestedIp: b, serverId: SERVER })));
    expect(svc.leases.quarantined).toBe(1);
    expect(svc.counters).toMatchObject({ releases: 1, declines: 1 });
  });

  it("answers INFORM with the options but no address and no lease time", () => {
    const svc = service();
    const ack = dhcpReply(deliver(svc, dhcpFrame(request(11, DhcpMessageType.Inform, { ciaddr: ip(50) }))));
    expect(ack).toMatchObject({ messageType: DhcpMessageType.Ack, yiaddr: 0, routers: [ip(1)], dnsServers: [SERVER] });
    expect(ack.leaseSeconds).toBeUndefined();
    expect(ack.reply.ipDst).toBe(ip(50));
    expect(svc.counters.informs).toBe(1);
  });

  it("gives a reserved MAC its fixed address and name", () => {
    const svc = service();
    const reserved = request(0, DhcpMessageType.Discover, { clientMac: 0x0200000000d0 });
    const offer = dhcpReply(deliver(svc, dhcpFrame(reserved)));
    expect(offer).toMatchObject({ yiaddr: ip(10), hostName: "db" });
    const ack = dhcpReply(deliver(svc, dhcpFrame({ ...reserved, messageType: DhcpMessageType.Request, serverId: SERVER, requestedIp: ip(10) })));
    expect(ack).toMatchObject({ yiaddr: ip(10), hostName: "db" });
  });

  it("ignores messages whose chaddr is not the Ethernet source, relayed ones and replies", () => {
    const svc = service();
    expect(deliver(svc, dhcpFrame(request(12, DhcpMessageType.Discover), macOf(99)))).toEqual([]);
    expect(deliver(svc, dhcpFrame(request(12, DhcpMessageType.Discover, { giaddr: ip(1) })))).toEqual([]);
    expect(deliver(svc, dhcpFrame({ ...request(12, DhcpMessageType.Offer), op: DhcpOp.Reply }))).toEqual([]);
    expect(svc.counters.dhcpIgnored).toBe(3);
  });

  it("drops and counts malformed DHCP, IPv4 and UDP; never throws on garbage", () => {
    const svc = service();
    const frame = dhcpFrame(request(13, DhcpMessageType.Discover));
    const badMagic = frame.slice();
    badMagic[ETH_HEADER_LEN + 20 + 8 + 236] = 0;
    // Fix the UDP checksum to 0 ("none") so only the DHCP layer is wrong.
    badMagic[ETH_HEADER_LEN + 26] = 0;
    badMagic[ETH_HEADER_LEN + 27] = 0;
    expect(deliver(svc, badMagic)).toEqual([]);
    expect(svc.counters.dhcpMalformed).toBe(1);
    const badUdp = frame.slice();
    badUdp[ETH_HEADER_LEN + 40] = (badUdp[ETH_HEADER_LEN + 40] as number) ^ 0xff;
    expect(deliver(svc, badUdp)).toEqual([]);
    expect(svc.counters.framesIgnored).toBe(1);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), fc.integer({ min: 0, max: 399 }), (noise, at) => {
      const mangled = frame.slice();
      mangled.set(noise.subarray(0, Math.max(0, mangled.length - at)), Math.min(at, mangled.length));
      deliver(svc, mangled);
      deliver(svc, noise);
      svc.intercept(noise, 1, 0, () => undefined);
    }), { numRuns: 3000 });
  });

  it("cannot be exhausted by DISCOVERs from random MACs: offers are held 10 s, at most 64, and expire", () => {
    const svc = new IpamService(ipamSettings((checkDhcpConfig({ subnet: "10.44.0.0/22", server: "10.44.0.254", range: ["10.44.1.0", "10.44.2.255"] }) as { ok: true; value: DhcpConfig }).value));
    for (let n = 0; n < 500; n++) deliver(svc, dhcpFrame(request(1000 + n, DhcpMessageType.Discover)), n);
    expect([...svc.leases.entries()].length).toBe(64);
    // Ten seconds later a real client still gets an address, and the offers are gone.
    const ack = lease(svc, 1, {}, 11_000);
    expect(ack.messageType).toBe(DhcpMessageType.Ack);
    expect([...svc.leases.entries()].length).toBe(1);
  });

  it("one MAC cycling client identifiers holds one lease; REQUESTs for made-up chaddrs lease nothing", () => {
    const svc = service();
    for (let i = 0; i < 50; i++) lease(svc, 20, { clientId: Uint8Array.of(0xff, i, 0, 0, 0, 0, 0) }, i);
    expect([...svc.leases.entries()]).toHaveLength(1);
    for (let i = 0; i < 50; i++) {
      deliver(svc, dhcpFrame(request(100 + i, DhcpMessageType.Request, { requestedIp: ip(100 + (i % 10)) }), macOf(21)));
    }
    expect([...svc.leases.entries()]).toHaveLength(1);
    expect(svc.counters.dhcpIgnored).toBe(50);
  });

  it("exports leases for storage and imports them into a new service", () => {
    const svc = service();
    const a = lease(svc, 14, { hostName: "web" }).yiaddr;
    const restored = service();
    expect(restored.importState(JSON.parse(JSON.stringify(svc.exportState())), 1000)).toBe(0);
    expect(restored.leases.addressOfName("web")).toBe(a);
    const renewed = dhcpReply(deliver(restored, dhcpFrame(request(14, DhcpMessageType.Request, { ciaddr: a })), 2000));
    expect(renewed).toMatchObject({ messageType: DhcpMessageType.Ack, yiaddr: a });
  });
});

function arpRequest(senderMac: number, senderIp: number, targetIp: number): Uint8Array {
  return buildArpFrame({ destination: BROADCAST, source: senderMac }, { operation: ArpOperation.Request, senderMac, senderIp, targetMac: 0, targetIp });
}

function intercept(svc: IpamService, frame: Uint8Array): { answered: boolean; frames: Uint8Array[] } {
  const frames: Uint8Array[] = [];
  const answered = svc.intercept(frame, 1, 0, (f) => frames.push(f.slice()));
  return { answered, frames };
}

describe("IPAM service: ARP", () => {
  it("answers ARP for its own address", () => {
    const svc = service();
    const [reply] = deliver(svc, arpRequest(macOf(1), ip(101), SERVER));
    const arp = checkArpPacket((reply as Uint8Array).subarray(ETH_HEADER_LEN));
    expect(arp.ok && arp.value.repr()).toEqual({ operation: ArpOperation.Reply, senderMac: SERVICE_MAC, senderIp: SERVER, targetMac: macOf(1), targetIp: ip(101) });
  });

  it("proxies for a bound lease: replies with the owner's MAC from the service's MAC and suppresses the flood", () => {
    const svc = service();
    const owner = lease(svc, 1).yiaddr;
    const { answered, frames } = intercept(svc, arpRequest(macOf(2), ip(102), owner));
    expect(answered).toBe(true);
    const reply = frames[0] as Uint8Array;
    expect(toHex(reply.subarray(0, 12))).toBe("02 00 00 00 01 02 02 ed 1a 2c 00 fe");
    const arp = checkArpPacket(reply.subarray(ETH_HEADER_LEN));
    expect(arp.ok && arp.value.repr()).toEqual({ operation: ArpOperation.Reply, senderMac: macOf(1), senderIp: owner, targetMac: macOf(2), targetIp: ip(102) });
    expect(svc.counters.arpSuppressed).toBe(1);
  });

  it("proxies for a reservation, not for unknown or offered-only addresses", () => {
    const svc = service();
    expect(intercept(svc, arpRequest(macOf(2), ip(102), ip(10))).answered).toBe(true);
    expect(intercept(svc, arpRequest(macOf(2), ip(102), ip(50))).answered).toBe(false);
    const offered = dhcpReply(deliver(svc, dhcpFrame(request(3, DhcpMessageType.Discover)))).yiaddr;
    expect(intercept(svc, arpRequest(macOf(2), ip(102), offered)).answered).toBe(false);
  });

  it("never answers duplicate-address probes, gratuitous ARP, or an owner asking about itself", () => {
    const svc = service();
    const owner = lease(svc, 1).yiaddr;
    expect(intercept(svc, arpRequest(macOf(2), 0, owner))).toEqual({ answered: false, frames: [] });
    expect(intercept(svc, arpRequest(macOf(1), owner, owner))).toEqual({ answered: false, frames: [] });
    expect(intercept(svc, arpRequest(macOf(1), ip(3), owner))).toEqual({ answered: false, frames: [] });
    expect(svc.counters.arpSuppressed).toBe(0);
  });

  it("does nothing with arpProxy off", () => {
    const svc = service({ arpProxy: false });
    lease(svc, 1);
    expect(intercept(svc, arpRequest(macOf(2), ip(102), ip(10))).answered).toBe(false);
  });
});

function dnsQuery(id: number, name: string, type: number): Uint8Array {
  const question = new Uint8Array([...hex(`${id.toString(16).padStart(4, "0")} 01 00 00 01 00 00 00 00 00 00`), ...encodeDnsName(name), 0, type, 0, 1]);
  return buildUdpFrame({ destination: SERVICE_MAC, source: macOf(1) }, { source: ip(101), destination: SERVER }, { sourcePort: 40000, destinationPort: 53, payload: question });
}

function dnsAnswer(svc: IpamService, name: string, type: number): { rcode: number; flags: number; answers: number; rdata: Uint8Array } {
  const [frame] = deliver(svc, dnsQuery(7, name, type));
  const reply = udpReply(frame);
  expect(reply.ports).toEqual([53, 40000]);
  expect(reply.ipDst).toBe(ip(101));
  const flags = readU16BE(reply.payload, 2);
  const answers = readU16BE(reply.payload, 6);
  // The first answer follows the question (name labels, type, class); its rdata follows 12 bytes of header.
  let at = 12;
  while (reply.payload[at] !== 0) at += 1 + (reply.payload[at] as number);
  const answer = at + 5;
  const rdata = answers > 0 ? reply.payload.subarray(answer + 12, answer + 12 + readU16BE(reply.payload, answer + 10)) : new Uint8Array(0);
  return { rcode: flags & 0xf, flags, answers, rdata };
}

describe("IPAM service: DNS", () => {
  it("resolves a lease's client hostname and a reservation's name (A), and their addresses back (PTR)", () => {
    const svc = service();
    const web = lease(svc, 1, { hostName: "Web.example" }).yiaddr;
    expect(dnsAnswer(svc, "web.lab.lan", DnsType.A)).toMatchObject({ rcode: DnsRcode.NoError, answers: 1, rdata: Uint8Array.of(10, 44, 0, web & 0xff) });
    expect(dnsAnswer(svc, "db.lab.lan", DnsType.A)).toMatchObject({ rcode: DnsRcode.NoError, answers: 1, rdata: Uint8Array.of(10, 44, 0, 10) });
    const ptr = dnsAnswer(svc, `${web & 0xff}.0.44.10.in-addr.arpa`, DnsType.PTR);
    expect(ptr).toMatchObject({ rcode: DnsRcode.NoError, answers: 1 });
    expect(toHex(ptr.rdata)).toBe(toHex(encodeDnsName("web.lab.lan")));
    // AA set, RA clear: authoritative, no recursion.
    expect(ptr.flags & 0x0480).toBe(0x0400);
  });

  it("says NOERROR without records for another type, NXDOMAIN for unknown names in its zones, REFUSED outside", () => {
    const svc = service();
    lease(svc, 1, { hostName: "web" });
    expect(dnsAnswer(svc, "web.lab.lan", DnsType.AAAA)).toMatchObject({ rcode: DnsRcode.NoError, answers: 0 });
    expect(dnsAnswer(svc, "nobody.lab.lan", DnsType.A)).toMatchObject({ rcode: DnsRcode.NxDomain, answers: 0 });
    expect(dnsAnswer(svc, "77.0.44.10.in-addr.arpa", DnsType.PTR)).toMatchObject({ rcode: DnsRcode.NxDomain });
    expect(dnsAnswer(svc, "example.com", DnsType.A)).toMatchObject({ rcode: DnsRcode.Refused });
    expect(dnsAnswer(svc, "1.1.1.1.in-addr.arpa", DnsType.PTR)).toMatchObject({ rcode: DnsRcode.Refused });
    expect(svc.counters).toMatchObject({ dnsQueries: 5, dnsAnswered: 1, dnsNxdomain: 2, dnsRefused: 2 });
  });

  it("forgets a name when its lease is released", () => {
    const svc = service();
    const web = lease(svc, 1, { hostName: "web" }).yiaddr;
    deliver(svc, dhcpFrame(request(1, DhcpMessageType.Release, { ciaddr: web, serverId: SERVER })));
    expect(dnsAnswer(svc, "web.lab.lan", DnsType.A).rcode).toBe(DnsRcode.NxDomain);
  });

  it("drops malformed queries and ignores DNS when dns is off", () => {
    const svc = service();
    const bad = buildUdpFrame({ destination: SERVICE_MAC, source: macOf(1) }, { source: ip(101), destination: SERVER }, { sourcePort: 1, destinationPort: 53, payload: hex("00 01 81 00") });
    expect(deliver(svc, bad)).toEqual([]);
    expect(svc.counters.dnsMalformed).toBe(1);
    expect(deliver(service({ dns: false }), dnsQuery(1, "db.lab.lan", DnsType.A))).toEqual([]);
  });

  it("answers ping on its address", () => {
    const svc = service();
    const echo = buildIcmpEchoFrame({ destination: SERVICE_MAC, source: macOf(1) }, { source: ip(101), destination: SERVER }, { type: IcmpEchoType.Request, identifier: 9, sequence: 1, data: hex("61 62") });
    const [reply] = deliver(svc, echo);
    expect(reply?.[ETH_HEADER_LEN + 20]).toBe(IcmpEchoType.Reply);
    expect(svc.counters.echoReplies).toBe(1);
  });
});

describe("counters across a restart (durable/ipam-host.ts stores them)", () => {
  it("says a counter may have changed after each frame it was given, once", () => {
    const fresh = service();
    expect(fresh.takeCountersChanged()).toBe(false);
    fresh.deliver(new Uint8Array(10), 0, () => undefined);
    expect(fresh.counters.framesIgnored).toBe(1);
    expect(fresh.takeCountersChanged()).toBe(true);
    expect(fresh.takeCountersChanged()).toBe(false);
  });

  it("a new service counts on from stored counters; fields that are not non-negative integers are ignored", () => {
    const woken = service();
    woken.restoreCounters({ acks: 7, offers: 9, arpSuppressed: 3, naks: -1, dnsQueries: 1.5, echoReplies: "4", unknownField: 5 });
    expect(woken.counters).toMatchObject({ acks: 7, offers: 9, arpSuppressed: 3, naks: 0, dnsQueries: 0, echoReplies: 0 });
    const total = (): number => Object.values(woken.counters).reduce((sum, value) => sum + value, 0);
    expect(total()).toBe(19);
    expect("unknownField" in woken.counters).toBe(false);
    woken.restoreCounters(null);
    woken.restoreCounters("garbage");
    expect(total()).toBe(19);
  });
});
