/**
 * The ARP proxy's rule (docs/ipam.md "ARP proxy"), shared by the segment's
 * IPAM service and, on a segment of several cells, by each cell that does not
 * host the service (docs/cells.md §0 item 12): a broadcast ARP request for an
 * address bound to a lease or reserved is answered on its owner's behalf, and
 * not flooded. Never answered: duplicate-address probes (sender IP 0.0.0.0,
 * RFC 5227), gratuitous ARP (sender IP = target IP), an owner asking about its
 * own address, tagged frames.
 */
import { checkEthernetFrame, ETH_HEADER_LEN } from "../ethernet.ts";
import { ArpOperation, buildArpFrame, checkArpPacket, ETHERTYPE_ARP, type ArpRepr, type Ipv4Address } from "../inet.ts";
import { macKeyAt, type MacKey } from "../mac.ts";

/** The ARP request in an untagged frame, or undefined. */
export function arpRequestIn(frame: Uint8Array): ArpRepr | undefined {
  const ethernet = checkEthernetFrame(frame);
  if (!ethernet.ok || ethernet.value.isTagged() || ethernet.value.etherType() !== ETHERTYPE_ARP) return undefined;
  const arp = checkArpPacket(frame.subarray(ETH_HEADER_LEN));
  if (!arp.ok || arp.value.operation() !== ArpOperation.Request) return undefined;
  return arp.value.repr();
}

/**
 * The reply to a broadcast ARP request on the owner's behalf (Ethernet source `serviceMac`, sender
 * hardware address the owner's), or null when the rule above says the request must be flooded.
 */
export function proxyArpReply(frame: Uint8Array, ownerOf: (ip: Ipv4Address) => MacKey | undefined, serviceMac: MacKey): Uint8Array | null {
  const request = arpRequestIn(frame);
  if (request === undefined) return null;
  const { senderMac, senderIp, targetIp } = request;
  if (senderIp === 0 || senderIp === targetIp) return null;
  const owner = ownerOf(targetIp);
  if (owner === undefined || owner === senderMac) return null;
  return buildArpFrame(
    { destination: macKeyAt(frame, 6), source: serviceMac },
    { operation: ArpOperation.Reply, senderMac: owner, senderIp: targetIp, targetMac: senderMac, targetIp: senderIp },
  );
}

/**
 * The addresses the service answers for, as it hands them to the other cells of a segment:
 * `[ip, owner MAC]` for every reservation and bound lease, at most the pool (1024) plus the
 * reservations (256). No expiry: the home withdraws a lease when it ends (its sweep), as its own
 * proxy stops answering then, so a renewal changes nothing here.
 */
export interface ArpBindings {
  readonly serviceMac: MacKey;
  readonly addresses: ReadonlyArray<readonly [Ipv4Address, MacKey]>;
}

/** Whether two binding lists say the same (in the same order: both come from one lease table). */
export function sameArpBindings(a: ArpBindings | null, b: ArpBindings | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.serviceMac !== b.serviceMac || a.addresses.length !== b.addresses.length) return false;
  return a.addresses.every(([ip, mac], i) => b.addresses[i]?.[0] === ip && b.addresses[i]?.[1] === mac);
}

/** The proxy of a cell without the IPAM service, answering from the bindings the home announced. */
export class ArpAnswerer {
  /** ARP requests answered here instead of being flooded (per cell: `GET …` cells[].arpSuppressed). */
  suppressed = 0;
  private owners = new Map<Ipv4Address, MacKey>();
  private serviceMac: MacKey = 0;

  /** Whether there is anything to answer from. */
  get active(): boolean {
    return this.owners.size > 0;
  }

  /** Replaces the bindings (null: the home has no service, or its ARP proxy is off). */
  set(bindings: ArpBindings | null): void {
    this.owners = new Map();
    if (bindings === null) return;
    this.serviceMac = bindings.serviceMac;
    for (const [ip, mac] of bindings.addresses) this.owners.set(ip, mac);
  }

  /** The reply to a broadcast from a local port, or null (flood it). */
  answer(frame: Uint8Array): Uint8Array | null {
    const reply = proxyArpReply(frame, (ip) => this.owners.get(ip), this.serviceMac);
    if (reply !== null) this.suppressed++;
    return reply;
  }
}
