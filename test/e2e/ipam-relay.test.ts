// The IPAM service inside a real segment (wrangler dev), with real clients: a TAP host by
// `edgelan join --dhcp`, busybox udhcpc on a plain joined TAP, dig, the leases route, and the
// leases surviving a relay restart. Needs root and /dev/net/tun (CI runs as root). Each test
// skips itself, saying why, while the relay does not host the service yet (GET …/leases is 404):
// the service becomes a port of the segment switch when the coordinator wires it in.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, type TestContext } from "vitest";
import { WebSocket } from "ws";
import { DhcpClient, type DhcpClientEvent } from "../../client/dhcp-client.ts";
import type { LeaseReport } from "../../datapath/ipam/lease-list.ts";
import { startRelay, type RunningRelay } from "./relay-harness.ts";
import { waitFor } from "./poll.ts";
import { commandExists, guestSkipReason, Namespaces, ping } from "./guests.ts";

const skip = guestSkipReason();
const missingTools = ["busybox", "dig", "ping"].filter((tool) => !commandExists(tool));
const SEGMENT = "ipam-relay";
const SERVER = "10.238.0.254";
const MAC_A = "02:00:00:00:e4:01";
const MAC_B = "02:00:00:00:e4:02";

describe.skipIf(skip !== null || missingTools.length > 0)(
  `IPAM in a real segment${skip !== null ? ` (skipped: ${skip})` : missingTools.length > 0 ? ` (skipped: missing ${missingTools.join(", ")})` : ""}`,
  () => {
    const namespaces = new Namespaces();
    let relay: RunningRelay;
    let work: string;
    let nsA: string;
    let nsB: string;
    let wired = false;
    const url = (): string => `${relay.wsUrl}/v1/segments/${SEGMENT}/connect`;

    async function leases(): Promise<LeaseReport> {
      const response = await fetch(`${relay.baseUrl}/v1/segments/${SEGMENT}/leases`);
      expect(response.status).toBe(200);
      return (await response.json()) as LeaseReport;
    }

    function requireWired(ctx: TestContext): void {
      if (!wired) ctx.skip("the relay does not host the IPAM service yet (GET /v1/segments/:name/leases is 404)");
    }

    /** Runs busybox udhcpc once in nsB; returns the address it bound. */
    function udhcpc(): string {
      const events = join(work, "udhcpc.events");
      const script = join(work, "udhcpc.sh");
      writeFileSync(script, `#!/bin/sh\necho "$1 $ip" >> ${events}\n[ "$1" = bound ] && ip addr replace "$ip/$mask" dev "$interface"\nexit 0\n`);
      chmodSync(script, 0o755);
      writeFileSync(events, "");
      namespaces.exec(nsB, "busybox", ["udhcpc", "-f", "-q", "-n", "-i", "elt0", "-s", script, "-x", "hostname:vmb", "-t", "10", "-T", "2"], 60_000);
      const bound = /^bound (\S+)/m.exec(readFileSync(events, "utf8"))?.[1];
      if (bound === undefined) throw new Error(`udhcpc did not bind:\n${readFileSync(events, "utf8")}`);
      return bound;
    }

    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), "edgelan-ipam-relay-"));
      relay = await startRelay();
      const created = await fetch(`${relay.baseUrl}/v1/segments/${SEGMENT}`, {
        method: "PUT", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ openJoin: true, dhcp: { subnet: "10.238.0.0/24", router: "10.238.0.1", domain: "lab.lan", leaseSeconds: 600 } }),
      });
      expect(created.status).toBe(201);
      wired = (await fetch(`${relay.baseUrl}/v1/segments/${SEGMENT}/leases`)).status === 200;
      if (!wired) return;
      nsA = namespaces.create("ipa");
      nsB = namespaces.create("ipb");
      namespaces.join(nsA, url(), { mac: MAC_A, extra: ["--dhcp"] });
      namespaces.join(nsB, url(), { mac: MAC_B });
      await namespaces.address(nsB, "elt0", "127.1.2.3/32"); // the link must be up; udhcpc adds the real address
    });

    afterAll(async () => {
      await namespaces.cleanup();
      await relay?.stop();
      if (work !== undefined) rmSync(work, { recursive: true, force: true });
    });

    it("a raw-mode guest (as v86: nothing but the URL) gets an address on a segment whose only dhcp setting is its subnet", async (ctx) => {
      requireWired(ctx);
      const created = await fetch(`${relay.baseUrl}/v1/segments/ipam-raw`, {
        method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ openJoin: true, dhcp: { subnet: "10.239.0.0/24" } }),
      });
      expect(created.status).toBe(201);
      const events: DhcpClientEvent[] = [];
      const ws = new WebSocket(`${relay.wsUrl}/v1/segments/ipam-raw/connect`);
      const client = new DhcpClient({ mac: 0x020000000e05, send: (frame) => ws.send(frame), onEvent: (event) => events.push(event) });
      ws.on("open", () => client.start(Date.now()));
      ws.on("message", (data: Buffer) => client.receive(new Uint8Array(data), Date.now()));
      try {
        const bound = await waitFor("a lease over raw mode", () => events.find((event) => event.kind === "bound"), 20_000);
        expect(bound.lease).toMatchObject({ prefixLength: 24, dnsServers: [0x0aef00fe], server: 0x0aef00fe, domain: "lan", leaseSeconds: 3600 });
        expect(bound.lease.address).toBeGreaterThanOrEqual(0x0aef0064);
        expect(bound.lease.address).toBeLessThanOrEqual(0x0aef00fd);
      } finally {
        ws.close();
      }
    });

    it("a TAP host gets its address from the segment with join --dhcp", async (ctx) => {
      requireWired(ctx);
      const address = await waitFor("an address on nsA's elt0", () => {
        try {
          return /inet (10\.238\.0\.\d+)\/24/.exec(namespaces.exec(nsA, "ip", ["-4", "addr", "show", "dev", "elt0"]))?.[1];
        } catch {
          return undefined;
        }
      }, 45_000);
      expect((await leases()).leases).toContainEqual(expect.objectContaining({ ip: address, mac: MAC_A, state: "bound" }));
    });

    it("udhcpc on another TAP gets a distinct address; the two ping each other; dig finds the names", async (ctx) => {
      requireWired(ctx);
      const b = udhcpc();
      const a = (await leases()).leases.find((lease) => lease.mac === MAC_A)?.ip;
      expect(a).toBeDefined();
      expect(b).not.toBe(a);
      expect(await namespaces.reachable(nsB, a as string, 20_000)).toBe(true);
      expect(ping(namespaces, nsA, b, 2).received).toBe(2);
      expect(namespaces.exec(nsA, "dig", [`@${SERVER}`, "+short", "vmb.lab.lan", "A"]).trim()).toBe(b);
      expect(namespaces.exec(nsA, "dig", [`@${SERVER}`, "+short", "-x", b]).trim()).toBe("vmb.lab.lan.");
      expect(namespaces.exec(nsA, "dig", [`@${SERVER}`, "example.com", "A"])).toMatch(/status: REFUSED/);
      // The ARP requests between the two were answered by the service, not flooded.
      expect((await leases()).counters.arpSuppressed).toBeGreaterThan(0);
    });

    it("leases survive a relay restart: listed before any new DHCP traffic, and the same client gets the same address", async (ctx) => {
      requireWired(ctx);
      const before = (await leases()).leases.find((lease) => lease.mac === MAC_B)?.ip;
      expect(before).toBeDefined();
      const { port, stateDir } = relay;
      await relay.stop({ keepState: true });
      relay = await startRelay({ port, stateDir });
      expect((await leases()).leases).toContainEqual(expect.objectContaining({ ip: before, mac: MAC_B, state: "bound" }));
      await waitFor("nsB's agent to reconnect", () => (ping(namespaces, nsB, SERVER, 1).received === 1 ? true : undefined), 45_000, 500);
      expect(udhcpc()).toBe(before);
    });

    it("leases survive a hibernation: the woken segment still lists them and renews the same address", { timeout: 150_000 }, async (ctx) => {
      requireWired(ctx);
      const report = await leases();
      const before = report.leases.find((lease) => lease.mac === MAC_B)?.ip;
      const acksBefore = report.counters.acks;
      expect(acksBefore).toBeGreaterThan(0);
      const starts = async (): Promise<number> => ((await (await fetch(`${relay.baseUrl}/v1/segments/${SEGMENT}`)).json()) as { counters: { instanceStarts: number } }).counters.instanceStarts;
      const initial = await starts();
      // Local workerd evicts an object idle for 10 s, checked periodically: wait without touching it (any request wakes it).
      let woken = initial;
      for (let round = 0; round < 4 && woken === initial; round++) {
        await new Promise((resolve) => setTimeout(resolve, 25_000));
        woken = await starts();
      }
      expect(woken).toBeGreaterThan(initial);
      const wokenReport = await leases();
      expect(wokenReport.leases).toContainEqual(expect.objectContaining({ ip: before, mac: MAC_B, state: "bound" }));
      // The service's counters went on from where they were (stored within 5 s; the idle wait is longer).
      expect(wokenReport.counters.acks).toBeGreaterThanOrEqual(acksBefore);
      expect(udhcpc()).toBe(before);
    });
  },
);
