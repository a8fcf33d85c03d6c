// The IPAM service against real DHCP and DNS clients, without the relay: each client namespace
// has a TAP opened by this process (the repo's TAP addon), and a small learning hub in this test
// joins the TAPs and the service exactly as the segment switch will: broadcasts are offered to
// intercept() first (ARP proxy), then flooded to the other TAPs and delivered to the service;
// frames the service emits go to the TAP(s) their destination MAC names.
// Needs root and /dev/net/tun (CI runs as root), busybox, ISC dhclient and dig.
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TapBackend } from "../../client/backends/tap.ts";
import { formatIpv4, parseIpv4 } from "../../datapath/inet.ts";
import { checkDhcpConfig, ipamSettings } from "../../datapath/ipam/config.ts";
import { IpamService } from "../../datapath/ipam/ipam-service.ts";
import { formatMac, isMulticastMac, macKeyAt, parseMac, type MacKey } from "../../datapath/mac.ts";
import { waitFor } from "./poll.ts";
import { commandExists, guestSkipReason, Namespaces } from "./guests.ts";

const skip = guestSkipReason();
const missingTools = ["busybox", "dhclient", "dig", "ping"].filter((tool) => !commandExists(tool));
const SERVER = "10.44.0.254";
const LEASE_SECONDS = 20;

/** The switch's part, reduced to what the service needs: learn, flood, intercept, deliver. */
class TestHub {
  private readonly taps: TapBackend[] = [];
  private readonly learned = new Map<MacKey, number>();
  /** ARP requests that reached a TAP other than the sender's (not suppressed). */
  floodedArpRequests = 0;

  constructor(readonly service: IpamService) {}

  attach(tap: TapBackend): void {
    const index = this.taps.push(tap) - 1;
    tap.onFrames((frames) => {
      for (const frame of frames) this.fromTap(index, frame.slice());
    });
  }

  private fromTap(index: number, frame: Uint8Array): void {
    if (frame.length < 14) return;
    this.learned.set(macKeyAt(frame, 6), index);
    const destination = macKeyAt(frame, 0);
    const emitted: Uint8Array[] = [];
    const emit = (f: Uint8Array): void => void emitted.push(f.slice());
    if (isMulticastMac(destination)) {
      if (!this.service.intercept(frame, index, Date.now(), emit)) {
        if (frame[12] === 0x08 && frame[13] === 0x06) this.floodedArpRequests++;
        this.taps.forEach((tap, i) => i !== index && tap.send([frame]));
        this.service.deliver(frame, Date.now(), emit);
      }
    } else if (destination === this.service.mac) {
      this.service.deliver(frame, Date.now(), emit);
    } else {
      const port = this.learned.get(destination);
      if (port !== undefined) this.taps[port]?.send([frame]);
      else this.taps.forEach((tap, i) => i !== index && tap.send([frame]));
    }
    for (const out of emitted) this.toTaps(out);
  }

  private toTaps(frame: Uint8Array): void {
    const destination = macKeyAt(frame, 0);
    const port = isMulticastMac(destination) ? undefined : this.learned.get(destination);
    if (port !== undefined) this.taps[port]?.send([frame]);
    else for (const tap of this.taps) tap.send([frame]);
  }

  async close(): Promise<void> {
    await Promise.all(this.taps.map((tap) => tap.close()));
  }
}

function mac(text: string): MacKey {
  const parsed = parseMac(text);
  if (!parsed.ok) throw new Error(parsed.error.message);
  return parsed.value;
}

function address(text: string): number {
  const parsed = parseIpv4(text);
  if (!parsed.ok) throw new Error(parsed.error.message);
  return parsed.value;
}

/**
 * Runs a command in a namespace without blocking this process (which hosts the hub: a
 * synchronous exec would stop every frame); resolves with its exit code and output.
 */
async function execAsync(namespaces: Namespaces, ns: string, command: string, args: string[], timeoutMs = 30_000): Promise<{ code: number | null; output: string }> {
  const child = namespaces.spawn(ns, command, args);
  const timer = setTimeout(() => void child.stop(), timeoutMs);
  const code = await child.exited;
  clearTimeout(timer);
  return { code, output: child.output() };
}

function readOr(path: string): string {
  return existsSync(path) ? readFileSync(path, "utf8") : "";
}

describe.skipIf(skip !== null || missingTools.length > 0)(
  `IPAM service with real DHCP/DNS clients${skip !== null ? ` (skipped: ${skip})` : missingTools.length > 0 ? ` (skipped: missing ${missingTools.join(", ")})` : ""}`,
  () => {
    const namespaces = new Namespaces();
    let work: string;
    let hub: TestHub;
    let service: IpamService;
    const ns: Record<string, string> = {};

    /** A namespace with TAP elt0 (MAC `macText`) attached to the hub. */
    function client(label: string, macText: string): string {
      const name = namespaces.create(label);
      hub.attach(TapBackend.open("elt0", { netns: name, mac: macText }));
      ns[label] = name;
      return name;
    }

    /** A udhcpc/dhclient hook script: logs events, configures elt0 inside the namespace, writes a resolv.conf into the work dir. */
    function script(label: string, body: string): { path: string; events: string; resolv: string } {
      const events = join(work, `${label}.events`);
      const resolv = join(work, `${label}.resolv.conf`);
      const path = join(work, `${label}.sh`);
      writeFileSync(path, `#!/bin/sh\nEVENTS=${events}\nRESOLV=${resolv}\n${body}\nexit 0\n`);
      chmodSync(path, 0o755);
      return { path, events, resolv };
    }

    const udhcpcScript = (label: string): ReturnType<typeof script> => script(label, [
      'echo "$1 $ip $hostname" >> "$EVENTS"',
      'case "$1" in bound|renew)',
      '  ip addr replace "$ip/$mask" dev "$interface"',
      '  { [ -n "$domain" ] && echo "search $domain"; for s in $dns; do echo "nameserver $s"; done; } > "$RESOLV";;',
      "deconfig) ip -4 addr flush dev \"$interface\";;",
      "esac",
    ].join("\n"));

    const dhclientScript = (label: string): ReturnType<typeof script> => script(label, [
      'echo "$reason $new_ip_address $old_ip_address" >> "$EVENTS"',
      'case "$reason" in BOUND|RENEW|REBIND|REBOOT)',
      '  ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface"',
      '  { echo "search $new_domain_name"; for s in $new_domain_name_servers; do echo "nameserver $s"; done; } > "$RESOLV";;',
      "RELEASE|EXPIRE|STOP) ip -4 addr flush dev \"$interface\";;",
      "esac",
    ].join("\n"));

    const leasedTo = (macText: string): string | undefined => {
      const owner = mac(macText);
      for (const lease of service.leases.entries()) if (lease.mac === owner && lease.state === "bound") return formatIpv4(lease.ip);
      return undefined;
    };

    beforeAll(() => {
      work = mkdtempSync(join(tmpdir(), "edgelan-ipam-"));
      const config = checkDhcpConfig({
        subnet: "10.44.0.0/24", range: ["10.44.0.100", "10.44.0.199"], router: "10.44.0.1", server: SERVER, domain: "lab.lan",
        leaseSeconds: LEASE_SECONDS, reservations: [{ mac: "02:00:00:00:44:d0", ip: "10.44.0.10", hostname: "db" }],
      });
      if (!config.ok) throw new Error(config.error.message);
      service = new IpamService(ipamSettings(config.value));
      hub = new TestHub(service);
      client("udhcpc", "02:00:00:00:44:01");
      client("dhclient", "02:00:00:00:44:02");
      client("reserved", "02:00:00:00:44:d0");
    });

    afterAll(async () => {
      await namespaces.cleanup();
      await hub?.close();
      if (work !== undefined) rmSync(work, { recursive: true, force: true });
    });

    it("busybox udhcpc: a lease in the range, address and DNS options applied, renewed at T1", async () => {
      const hook = udhcpcScript("udhcpc");
      namespaces.spawn(ns.udhcpc as string, "busybox", ["udhcpc", "-f", "-R", "-i", "elt0", "-s", hook.path, "-x", "hostname:web", "-t", "20", "-T", "1", "-A", "1"]);
      const bound = await waitFor("udhcpc bound", () => /^bound (\S+) /m.exec(readOr(hook.events))?.[1]);
      expect(address(bound)).toBeGreaterThanOrEqual(address("10.44.0.100"));
      expect(address(bound)).toBeLessThanOrEqual(address("10.44.0.199"));
      expect(leasedTo("02:00:00:00:44:01")).toBe(bound);
      expect(namespaces.exec(ns.udhcpc as string, "ip", ["-4", "addr", "show", "dev", "elt0"])).toContain(`inet ${bound}/24`);
      expect(readFileSync(hook.resolv, "utf8")).toBe(`search lab.lan\nnameserver ${SERVER}\n`);
      // T1 is half the 20 s lease: udhcpc renews (unicast to the server) and keeps its address.
      await waitFor("udhcpc renew", () => (/^renew /m.test(readOr(hook.events)) ? true : undefined), 40_000);
      expect(readOr(hook.events)).toMatch(new RegExp(`^renew ${bound.replace(/\./g, "\\.")} `, "m"));
      expect(service.counters.acks).toBeGreaterThanOrEqual(2);
    });

    it("ISC dhclient: a distinct lease with the options applied", async () => {
      const hook = dhclientScript("dhclient");
      const conf = join(work, "dhclient.conf");
      writeFileSync(conf, 'send host-name "vm2";\nrequest subnet-mask, routers, domain-name, domain-name-servers;\n');
      namespaces.spawn(ns.dhclient as string, "dhclient", [
        "-d", "-4", "-1", "-v", "-cf", conf, "-sf", hook.path, "-pf", join(work, "dhclient.pid"), "-lf", join(work, "dhclient.leases"), "elt0",
      ]);
      const bound = await waitFor("dhclient bound", () => /^(?:BOUND|REBOOT) (\S+)/m.exec(readOr(hook.events))?.[1]);
      expect(leasedTo("02:00:00:00:44:02")).toBe(bound);
      expect(bound).not.toBe(leasedTo("02:00:00:00:44:01"));
      expect(namespaces.exec(ns.dhclient as string, "ip", ["-4", "addr", "show", "dev", "elt0"])).toContain(`inet ${bound}/24`);
      expect(readFileSync(hook.resolv, "utf8")).toBe(`search lab.lan\nnameserver ${SERVER}\n`);
      expect(readFileSync(join(work, "dhclient.leases"), "utf8")).toMatch(/option routers 10\.44\.0\.1;/);
    });

    it("a reserved MAC gets its fixed address", async () => {
      const hook = udhcpcScript("reserved");
      const run = await execAsync(namespaces, ns.reserved as string, "busybox", ["udhcpc", "-f", "-q", "-n", "-i", "elt0", "-s", hook.path, "-t", "10", "-T", "1"]);
      expect(run.code, run.output).toBe(0);
      expect(readOr(hook.events)).toMatch(/^bound 10\.44\.0\.10 db$/m);
      expect(namespaces.exec(ns.reserved as string, "ip", ["-4", "addr", "show", "dev", "elt0"])).toContain("inet 10.44.0.10/24");
    });

    it("dig resolves the names of leases and reservations (A and PTR) and is refused outside the zone", async () => {
      const web = leasedTo("02:00:00:00:44:01") as string;
      const dig = async (...args: string[]): Promise<string> => (await execAsync(namespaces, ns.dhclient as string, "dig", [`@${SERVER}`, "+time=2", "+tries=3", ...args])).output;
      expect((await dig("+short", "web.lab.lan", "A")).trim()).toBe(web);
      expect((await dig("+short", "vm2.lab.lan", "A")).trim()).toBe(leasedTo("02:00:00:00:44:02"));
      expect((await dig("+short", "db.lab.lan", "A")).trim()).toBe("10.44.0.10");
      expect((await dig("+short", "-x", web)).trim()).toBe("web.lab.lan.");
      const nx = await dig("nobody.lab.lan", "A");
      expect(nx).toMatch(/status: NXDOMAIN/);
      expect(nx).toMatch(/flags: qr aa rd;/); // authoritative, no "ra": no recursion
      expect(await dig("example.com", "A")).toMatch(/status: REFUSED/);
    });

    it("the ARP proxy answers for a leased address: the request is not flooded, ping works", async () => {
      const web = leasedTo("02:00:00:00:44:01") as string;
      const before = service.counters.arpSuppressed;
      const flooded = hub.floodedArpRequests;
      const pinged = await execAsync(namespaces, ns.reserved as string, "ping", ["-n", "-c", "3", "-i", "0.2", "-W", "2", web]);
      expect(pinged.output).toMatch(/3 packets transmitted, 3 received/);
      expect(service.counters.arpSuppressed).toBeGreaterThan(before);
      expect(hub.floodedArpRequests).toBe(flooded);
      expect(namespaces.exec(ns.reserved as string, "ip", ["neigh", "show", web])).toContain("lladdr 02:00:00:00:44:01");
    });

    it("release returns the address to the pool (dhclient -r, udhcpc -R on exit)", async () => {
      const hook = join(work, "dhclient.sh");
      const leased = leasedTo("02:00:00:00:44:02");
      expect(leased).toBeDefined();
      await execAsync(namespaces, ns.dhclient as string, "dhclient", ["-r", "-v", "-sf", hook, "-pf", join(work, "dhclient.pid"), "-lf", join(work, "dhclient.leases"), "elt0"]);
      await waitFor("the dhclient lease to end", () => (leasedTo("02:00:00:00:44:02") === undefined ? true : undefined), 10_000);
      expect(service.leases.leaseOf(address(leased as string))).toBeUndefined();
      const releases = service.counters.releases;
      await namespaces.cleanup(); // SIGTERM: udhcpc -R releases on its way out
      await waitFor("the udhcpc lease to end", () => (leasedTo("02:00:00:00:44:01") === undefined ? true : undefined), 10_000);
      expect(service.counters.releases).toBe(releases + 1);
      expect(formatMac(service.mac)).toBe("02:ed:1a:2c:00:fe");
    });
  },
);
