// Real guests across cells (docs/cells.md §11): a segment of 3 cells under the real `wrangler dev`,
// dnsmasq in a namespace on cell 0, and two `edgelan join --dhcp` namespaces forced onto cells 1 and 2
// with ?cell=. Every DHCP exchange crosses a trunk each way; ping and iperf3 between the two clients
// cross the trunk 1 ↔ 2. Needs root and /dev/net/tun (CI runs as root).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRelay, type RunningRelay } from "./relay-harness.ts";
import { waitFor } from "./poll.ts";
import { commandExists, guestSkipReason, Namespaces, ping, type Background, type IperfReport } from "./guests.ts";

const skip = guestSkipReason();
const missingTools = ["dnsmasq", "ping", "iperf3", "tshark"].filter((tool) => !commandExists(tool));
const ADMIN = "e2e-admin-token";
const SEGMENT = "cells-netns";
const SERVER_MAC = "02:00:00:00:e5:00";
const CLIENT_MACS = ["02:00:00:00:e5:01", "02:00:00:00:e5:02"];

/** The address in 10.`net`.0.0/24 that `edgelan join --dhcp` put on elt0 in `ns`, or undefined while it has none. */
function leasedAddress(namespaces: Namespaces, ns: string, net = 238): string | undefined {
  try {
    return new RegExp(`inet (10\\.${net}\\.0\\.\\d+)/24`).exec(namespaces.exec(ns, "ip", ["-4", "addr", "show", "dev", "elt0"]))?.[1];
  } catch {
    return undefined;
  }
}

interface Described {
  ports: Array<{ portId: number; cell?: number }>;
  cells?: Array<{ index: number; epoch: number; trunks: Array<{ peer: number; rxFrames: number; txFrames: number }> }>;
}

describe.skipIf(skip !== null || missingTools.length > 0)(
  `guests on different cells${skip !== null ? ` (skipped: ${skip})` : missingTools.length > 0 ? ` (skipped: missing ${missingTools.join(", ")})` : ""}`,
  () => {
    const namespaces = new Namespaces();
    let relay: RunningRelay;
    let work: string;
    let nsServer: string;
    const nsClients: string[] = [];
    let dnsmasq: Background;
    const leased: string[] = [];

    const admin = async (method: string, path: string, body?: unknown): Promise<Response> =>
      fetch(`${relay.baseUrl}${path}`, {
        method, headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body),
      });

    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), "edgelan-cells-netns-"));
      relay = await startRelay({ adminToken: ADMIN });
      expect((await admin("PUT", `/v1/segments/${SEGMENT}`, { openJoin: true, cells: 3 })).status).toBe(201);
      const url = (cell: number): string => `${relay.wsUrl}/v1/segments/${SEGMENT}/connect?cell=${cell}`;
      nsServer = namespaces.create("c0dhcps");
      namespaces.join(nsServer, url(0), { mac: SERVER_MAC });
      await namespaces.address(nsServer, "elt0", "10.238.0.1/24");
      dnsmasq = namespaces.spawn(nsServer, "dnsmasq", [
        "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=elt0", "--bind-interfaces", "--user=root", "--log-dhcp", "--log-facility=-",
        "--dhcp-range=10.238.0.50,10.238.0.60,255.255.255.0,2m", `--dhcp-leasefile=${join(work, "leases")}`, `--pid-file=${join(work, "dnsmasq.pid")}`,
      ]);
      for (const [i, mac] of CLIENT_MACS.entries()) {
        const ns = namespaces.create(`c${i + 1}dhcpc`);
        nsClients.push(ns);
        namespaces.join(ns, url(i + 1), { mac, extra: ["--dhcp"] });
      }
    });

    afterAll(async () => {
      await namespaces.cleanup();
      await relay?.stop();
      if (work !== undefined) rmSync(work, { recursive: true, force: true });
    });

    it("places the three guests on cells 0, 1 and 2", async () => {
      let described: Described = { ports: [] };
      for (let attempt = 0; attempt < 150 && described.ports.length < 3; attempt++) {
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 200));
        described = (await (await admin("GET", `/v1/segments/${SEGMENT}`)).json()) as Described;
      }
      expect(described.ports.map((port) => port.cell).sort()).toEqual([0, 1, 2]);
    });

    it("both clients lease an address from dnsmasq on cell 0 (DHCP across a trunk each way)", async () => {
      for (const [i, ns] of nsClients.entries()) {
        const address = await waitFor(`a lease on cell ${i + 1}`, () => leasedAddress(namespaces, ns), 60_000);
        // dnsmasq's log reaches us through a pipe, possibly after the client already configured the address.
        const ack = new RegExp(`DHCPACK\\(elt0\\) ${address.replace(/\./g, "\\.")} ${CLIENT_MACS[i] as string}`);
        await waitFor(`dnsmasq's DHCPACK for ${address}`, () => (ack.test(dnsmasq.output()) ? true : undefined), 10_000, 50);
        expect(dnsmasq.output()).toMatch(ack);
        leased.push(address);
      }
      expect(new Set(leased).size).toBe(2);
    });

    it("ping between the clients on cells 1 and 2, and to the server on cell 0", async () => {
      const [one, two] = nsClients as [string, string];
      expect(await namespaces.reachable(one, leased[1] as string, 20_000)).toBe(true);
      expect(ping(namespaces, one, leased[1] as string, 5).received).toBe(5);
      expect(ping(namespaces, two, leased[0] as string, 5).received).toBe(5);
      expect(ping(namespaces, two, "10.238.0.1", 3).received).toBe(3);
    });

    it("iperf3 from cell 1 to cell 2 moves bytes, and the trunk 1 → 2 counts them", async () => {
      const [one, two] = nsClients as [string, string];
      const report = await namespaces.iperf(two, leased[1] as string, one, 2);
      expect(report.error).toBeUndefined();
      expect(report.end?.sum_received?.bytes ?? 0).toBeGreaterThan(0);
      const described = (await (await admin("GET", `/v1/segments/${SEGMENT}`)).json()) as Described;
      const trunk = described.cells?.find((cell) => cell.index === 1)?.trunks.find((t) => t.peer === 2);
      // iperf3's TCP segments are at least its byte count / 1500 frames; the trunk saw at least those.
      expect(trunk?.txFrames ?? 0).toBeGreaterThan((report.end?.sum_received?.bytes ?? 0) / 65_536);
    });
  },
);

describe.skipIf(skip !== null || missingTools.length > 0)(
  `the segment's own DHCP server across cells${skip !== null ? ` (skipped: ${skip})` : missingTools.length > 0 ? ` (skipped: missing ${missingTools.join(", ")})` : ""}`,
  () => {
    // A segment with a `dhcp` setting runs its IPAM service on the home (cell 0) only: hosts on cells 1 and 2
    // get distinct addresses from the one lease table, and reach each other through its ARP proxy or plain ARP.
    const namespaces = new Namespaces();
    let relay: RunningRelay;
    const nsClients: string[] = [];
    const macs = ["02:00:00:00:e7:01", "02:00:00:00:e7:02"];

    beforeAll(async () => {
      relay = await startRelay({ adminToken: ADMIN });
      const created = await fetch(`${relay.baseUrl}/v1/segments/cells-ipam`, {
        method: "PUT", headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
        body: JSON.stringify({ openJoin: true, cells: 3, dhcp: { subnet: "10.241.0.0/24" } }),
      });
      expect(created.status).toBe(201);
      for (const [i, mac] of macs.entries()) {
        const ns = namespaces.create(`c${i + 1}ipam`);
        nsClients.push(ns);
        namespaces.join(ns, `${relay.wsUrl}/v1/segments/cells-ipam/connect?cell=${i + 1}`, { mac, extra: ["--dhcp"] });
      }
    });

    afterAll(async () => {
      await namespaces.cleanup();
      await relay?.stop();
    });

    it("hosts on cells 1 and 2 lease distinct addresses from the home's lease table and ping each other", async () => {
      const addresses: string[] = [];
      for (const [i, ns] of nsClients.entries()) addresses.push(await waitFor(`a lease on cell ${i + 1}`, () => leasedAddress(namespaces, ns, 241), 60_000));
      expect(new Set(addresses).size).toBe(2);
      const report = (await (await fetch(`${relay.baseUrl}/v1/segments/cells-ipam/leases`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as {
        leases: Array<{ ip: string; mac: string; state: string }>;
      };
      for (const [i, mac] of macs.entries()) expect(report.leases).toContainEqual(expect.objectContaining({ ip: addresses[i], mac, state: "bound" }));
      expect(await namespaces.reachable(nsClients[0] as string, addresses[1] as string, 20_000)).toBe(true);
      expect(ping(namespaces, nsClients[1] as string, addresses[0] as string, 3).received).toBe(3);
    });

    it("ARP between them is answered by each host's own cell (ARP suppression per cell): no request reaches the other host", async () => {
      const [one, two] = nsClients as [string, string];
      const leases = new Map<string, string>();
      for (const ns of [one, two]) leases.set(ns, await waitFor(`a lease in ${ns}`, () => leasedAddress(namespaces, ns, 241), 60_000));
      const addressOf = (ns: string): string => leases.get(ns) as string;
      const suppressed = async (): Promise<number[]> => {
        const described = (await (await fetch(`${relay.baseUrl}/v1/segments/cells-ipam`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as {
          cells?: Array<{ index: number; arpSuppressed: number }>;
        };
        return [1, 2].map((index) => described.cells?.find((cell) => cell.index === index)?.arpSuppressed ?? -1);
      };
      const work = mkdtempSync(join(tmpdir(), "edgelan-cells-arp-"));
      const packets = (capture: string, filter: string): string =>
        execFileSync("tshark", ["-r", capture, "-Y", filter, "-T", "fields", "-e", "frame.number"], { encoding: "utf8" }).trim();
      // One attempt: a capture on host 2 around fresh ARP (caches flushed) and a ping from host 1. A capture
      // that missed host 1's echo requests (tshark starting or stopping late under load) proves nothing
      // either way, so it is repeated, at most three times.
      const attempt = async (n: number): Promise<{ capture: string; before: number[]; after: number[] }> => {
        const capture = join(work, `two-${n}.pcap`);
        const tshark = namespaces.spawn(two, "tshark", ["-i", "elt0", "-f", "arp or icmp", "-w", capture]);
        await waitFor("tshark to capture on elt0", () => (tshark.output().includes("Capturing on") ? true : undefined), 20_000);
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        const before = await suppressed();
        for (const ns of [one, two]) namespaces.exec(ns, "ip", ["neigh", "flush", "dev", "elt0"]);
        expect(ping(namespaces, one, addressOf(two), 2).received).toBe(2);
        const after = await suppressed();
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        await tshark.stop("SIGINT");
        return { capture, before, after };
      };
      let result = await attempt(1);
      for (let n = 2; n <= 3 && packets(result.capture, `icmp.type == 8 && ip.src == ${addressOf(one)}`) === ""; n++) result = await attempt(n);
      const { capture, before, after } = result;
      // Host 1 asked for host 2 (answered by cell 1), host 2 for host 1 to reply (answered by cell 2).
      expect(after[0]).toBeGreaterThan(before[0] as number);
      expect(after[1]).toBeGreaterThan(before[1] as number);
      // The capture works: it holds host 1's echo requests. But host 2 saw no ARP request for its
      // address: host 1's request never left cell 1.
      expect(packets(capture, `icmp.type == 8 && ip.src == ${addressOf(one)}`)).not.toBe("");
      expect(packets(capture, `arp.opcode == 1 && arp.dst.proto_ipv4 == ${addressOf(two)}`)).toBe("");
      rmSync(work, { recursive: true, force: true });
    });
  },
);

describe.skipIf(skip !== null || missingTools.length > 0)(
  `a cell killed under iperf3${skip !== null ? ` (skipped: ${skip})` : missingTools.length > 0 ? ` (skipped: missing ${missingTools.join(", ")})` : ""}`,
  () => {
    // Open development mode: its reset route kills cell 2 while iperf3 runs from cell 1 to cell 2.
    const namespaces = new Namespaces();
    let relay: RunningRelay;
    let one: string;
    let two: string;

    const described = async (): Promise<Described> => (await (await fetch(`${relay.baseUrl}/v1/segments/cells-kill`)).json()) as Described;

    beforeAll(async () => {
      relay = await startRelay();
      expect((await fetch(`${relay.baseUrl}/v1/segments/cells-kill`, { method: "PUT", body: JSON.stringify({ openJoin: true, cells: 3 }) })).status).toBe(201);
      one = namespaces.create("c1kill");
      two = namespaces.create("c2kill");
      namespaces.join(one, `${relay.wsUrl}/v1/segments/cells-kill/connect?cell=1`, { mac: "02:00:00:00:e8:01" });
      namespaces.join(two, `${relay.wsUrl}/v1/segments/cells-kill/connect?cell=2`, { mac: "02:00:00:00:e8:02" });
      await namespaces.address(one, "elt0", "10.242.0.1/24");
      await namespaces.address(two, "elt0", "10.242.0.2/24");
    });

    afterAll(async () => {
      await namespaces.cleanup();
      await relay?.stop();
    });

    it("iperf3's connection survives the reset (the guest on cell 2 resumes with its port id), and ping works after", async () => {
      expect(await namespaces.reachable(one, "10.242.0.2", 20_000)).toBe(true);
      const before = (await described()).ports.find((port) => port.cell === 2)?.portId;
      expect(before).toBeDefined();
      namespaces.spawn(two, "iperf3", ["-s", "-1", "-B", "10.242.0.2"]);
      await waitFor("the iperf3 server", () => (namespaces.exec(two, "ss", ["-ltn"]).includes("10.242.0.2:5201") ? true : undefined), 10_000, 100);
      const client = namespaces.spawn(one, "iperf3", ["-c", "10.242.0.2", "-t", "8", "-J"]);
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const reset = await fetch(`${relay.baseUrl}/v1/segments/cells-kill/cells/2/reset`, { method: "POST" });
      expect(reset.status).toBe(200);
      // iperf3 runs 8 s; TCP retransmits what was lost while cell 2 came back. Bounded wait for its report.
      const code = await Promise.race([client.exited, new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 60_000))]);
      const report = JSON.parse(client.output().slice(client.output().indexOf("{"))) as IperfReport;
      expect(code, client.output().slice(-2000)).toBe(0);
      expect(report.error).toBeUndefined();
      expect(report.end?.sum_received?.bytes ?? 0).toBeGreaterThan(0);
      let after: number | undefined;
      for (let attempt = 0; attempt < 150 && after === undefined; attempt++) {
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 200));
        after = (await described()).ports.find((port) => port.cell === 2)?.portId;
      }
      expect(after).toBe(before);
      // Cell 2 did restart: its epoch moved on (each start of a cell is a new epoch).
      expect((await described()).cells?.find((cell) => cell.index === 2)?.epoch).toBeGreaterThan(1);
      expect(ping(namespaces, one, "10.242.0.2", 3).received).toBe(3);
    });
  },
);
