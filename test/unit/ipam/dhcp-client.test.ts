import { describe, expect, it } from "vitest";
import { DhcpClient, prefixLengthOf, type DhcpClientEvent } from "../../../client/dhcp-client.ts";
import { checkDhcpConfig, ipamSettings } from "../../../datapath/ipam/config.ts";
import { IpamService } from "../../../datapath/ipam/ipam-service.ts";

// The join agent's DHCP client against the segment's DHCP service, frame by frame, on a fake
// clock: DISCOVER → OFFER → REQUEST → ACK, renewal at T1, rebinding at T2, expiry, NAK, release.

const MAC = 0x020000000a01;
const LEASE = 100;

interface Setup {
  client: DhcpClient;
  service: IpamService;
  events: DhcpClientEvent[];
  sent: Uint8Array[];
  /** Whether frames reach the service at all, and unicast ones in particular. */
  link: { up: boolean; unicastUp: boolean };
  /** Hands the frames the client sent to the service and its replies back to the client. */
  pump: (now: number) => void;
}

function setup(): Setup {
  const config = checkDhcpConfig({ subnet: "10.44.0.0/24", router: "10.44.0.1", domain: "lab.lan", leaseSeconds: LEASE });
  if (!config.ok) throw new Error(config.error.message);
  const service = new IpamService(ipamSettings(config.value));
  const events: DhcpClientEvent[] = [];
  const sent: Uint8Array[] = [];
  const link = { up: true, unicastUp: true };
  const held: Uint8Array[] = [];
  const client = new DhcpClient({
    mac: MAC, hostname: "agent", random: () => 0.5, onEvent: (event) => events.push(event),
    send: (frame) => {
      sent.push(frame);
      const unicast = ((frame[0] as number) & 1) === 0;
      if (link.up && (link.unicastUp || !unicast)) held.push(frame);
    },
  });
  const pump = (now: number): void => {
    while (held.length > 0) service.deliver(held.shift() as Uint8Array, now, (reply) => client.receive(reply.slice(), now));
  };
  return { client, service, events, sent, link, pump };
}

describe("DhcpClient", () => {
  it("binds with the server's options in one exchange", () => {
    const { client, service, events, pump } = setup();
    client.start(0);
    pump(0);
    expect(client.state).toBe("bound");
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      kind: "bound", previous: null,
      lease: { prefixLength: 24, routers: [0x0a2c0001], dnsServers: [0x0a2c00fe], domain: "lab.lan", server: 0x0a2c00fe, serverMac: service.mac, leaseSeconds: LEASE, renewalSeconds: 50, rebindingSeconds: 87 },
    });
    const address = client.currentLease?.address as number;
    expect(service.leases.leaseOf(address)).toMatchObject({ state: "bound", mac: MAC, hostname: "agent", client: "id:01020000000a01" });
  });

  it("retransmits DISCOVER with backoff until a server answers", () => {
    const { client, sent, link, pump } = setup();
    link.up = false;
    expect(client.start(0)).toBe(4000);
    expect(client.tick(3999)).toBe(4000);
    expect(sent).toHaveLength(1);
    expect(client.tick(4000)).toBe(12_000);
    expect(sent).toHaveLength(2);
    link.up = true;
    client.tick(12_000);
    pump(12_000);
    expect(client.state).toBe("bound");
  });

  it("renews at T1 by unicast and keeps its address", () => {
    const { client, events, sent, pump } = setup();
    client.start(0);
    pump(0);
    const address = client.currentLease?.address;
    const before = sent.length;
    expect(client.tick(49_999)).toBe(50_000);
    expect(sent.length).toBe(before);
    client.tick(50_000);
    expect(client.state).toBe("renewing");
    expect(sent[before]?.subarray(0, 6)).toEqual(Uint8Array.of(0x02, 0xed, 0x1a, 0x2c, 0x00, 0xfe));
    pump(50_000);
    expect(client.state).toBe("bound");
    expect(events.at(-1)).toMatchObject({ kind: "bound", lease: { address, acquiredAtMs: 50_000 }, previous: { address } });
  });

  it("rebinds by broadcast at T2 when the server does not answer unicast, and starts over at expiry", () => {
    const { client, events, link, pump } = setup();
    client.start(0);
    pump(0);
    link.unicastUp = false;
    let now = 50_000;
    let next = client.tick(now);
    while (next !== undefined && next < 87_000) {
      now = next;
      next = client.tick(now);
      pump(now);
    }
    expect(client.state).toBe("renewing");
    client.tick(87_000);
    expect(client.state).toBe("rebinding");
    pump(87_000);
    expect(client.state).toBe("bound");
    // Now no answer at all: at the end of the lease the address is lost and DISCOVER starts again.
    link.up = false;
    now = 87_000 + 100_000;
    client.tick(now - 1);
    client.tick(now);
    expect(events.at(-1)).toMatchObject({ kind: "lost", reason: "expired" });
    expect(client.state).toBe("selecting");
  });

  it("starts over on a NAK (its address went to another client) and binds another address", () => {
    const { client, service, events, pump } = setup();
    client.start(0);
    pump(0);
    const address = client.currentLease?.address as number;
    // The segment's table lost the lease and another host took the address.
    service.leases.release("id:01020000000a01", address);
    expect(service.leases.bind({ key: "mac:other", mac: 0x020000000b01, hostname: null }, address, LEASE, 1).ok).toBe(true);
    client.tick(50_000);
    pump(50_000);
    expect(service.counters.naks).toBe(1);
    expect(events.find((e) => e.kind === "lost")).toMatchObject({ kind: "lost", reason: "nak", lease: { address } });
    expect(client.state).toBe("bound");
    expect(client.currentLease?.address).not.toBe(address);
  });

  it("gives the lease back on release: the service frees the address", () => {
    const { client, service, events, pump } = setup();
    client.start(0);
    pump(0);
    const address = client.currentLease?.address as number;
    client.release();
    pump(1000);
    expect(client.state).toBe("stopped");
    expect(events.at(-1)).toMatchObject({ kind: "lost", reason: "released" });
    expect(service.leases.leaseOf(address)).toBeUndefined();
    expect(service.counters.releases).toBe(1);
    expect(client.tick(10_000)).toBeUndefined();
  });

  it("reads prefix lengths from masks", () => {
    expect(prefixLengthOf(0xffffff00)).toBe(24);
    expect(prefixLengthOf(0xfffffffc)).toBe(30);
    expect(prefixLengthOf(0)).toBe(0);
    expect(prefixLengthOf(0xffffffff)).toBe(32);
  });
});
