// `edgelan join --dhcp [--default-route]` through the real relay, against dnsmasq as "any DHCP
// server on the segment" in another namespace: the agent leases an address for its TAP, installs
// the default route, renews at T1 and releases on exit. Needs root and /dev/net/tun (CI runs as root).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRelay, type RunningRelay } from "./relay-harness.ts";
import { waitFor } from "./poll.ts";
import { background, commandExists, guestSkipReason, Namespaces, ping, type Background } from "./guests.ts";

const skip = guestSkipReason();
const missingTools = ["dnsmasq", "ping"].filter((tool) => !commandExists(tool));
const CLIENT_MAC = "02:00:00:00:e3:02";
const CLI = join(import.meta.dirname, "..", "..", "bin", "edgelan.mjs");

/** `ip -4 addr show dev elt0` in `ns`, or "" while the TAP does not exist yet. */
function addressesOf(namespaces: Namespaces, ns: string): string {
  try {
    return namespaces.exec(ns, "ip", ["-4", "addr", "show", "dev", "elt0"]);
  } catch {
    return "";
  }
}

describe.skipIf(skip !== null || missingTools.length > 0)(
  `edgelan join --dhcp${skip !== null ? ` (skipped: ${skip})` : missingTools.length > 0 ? ` (skipped: missing ${missingTools.join(", ")})` : ""}`,
  () => {
    const namespaces = new Namespaces();
    let relay: RunningRelay;
    let work: string;
    let nsServer: string;
    let nsClient: string;
    let dnsmasq: Background;
    let agent: Background;

    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), "edgelan-join-dhcp-"));
      relay = await startRelay();
      const url = `${relay.wsUrl}/v1/segments/join-dhcp/connect`;
      nsServer = namespaces.create("dhcps");
      nsClient = namespaces.create("dhcpc");
      namespaces.join(nsServer, url, { mac: "02:00:00:00:e3:01" });
      await namespaces.address(nsServer, "elt0", "10.237.0.1/24");
      // dnsmasq's shortest lease is 2 minutes; T1 = 5 s makes the agent renew within the test.
      dnsmasq = namespaces.spawn(nsServer, "dnsmasq", [
        "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=elt0", "--bind-interfaces", "--user=root", "--log-dhcp", "--log-facility=-",
        "--dhcp-range=10.237.0.50,10.237.0.60,255.255.255.0,2m", "--dhcp-option=option:router,10.237.0.1", "--dhcp-option=option:T1,5",
        `--dhcp-leasefile=${join(work, "leases")}`, `--pid-file=${join(work, "dnsmasq.pid")}`,
      ]);
      agent = namespaces.join(nsClient, url, { mac: CLIENT_MAC, extra: ["--dhcp", "--default-route"] });
    });

    afterAll(async () => {
      await namespaces.cleanup();
      await relay?.stop();
      if (work !== undefined) rmSync(work, { recursive: true, force: true });
    });

    it("segments create --dhcp SUBNET stores the service's configuration; a bad subnet is refused with the relay's message", async () => {
      const run = async (...args: string[]): Promise<{ code: number | null; output: string }> => {
        const cli = background(process.execPath, [CLI, "segments", "create", ...args, "--relay", relay.baseUrl]);
        return { code: await cli.exited, output: cli.output() };
      };
      const created = await run("dhcp-cli", "--dhcp", "10.44.0.0/24", "--open-join");
      expect(created.code, created.output).toBe(0);
      // stderr says "created"; stdout is the JSON of the settings.
      expect(JSON.parse(created.output.slice(created.output.indexOf("{")))).toMatchObject({ openJoin: true, dhcp: { subnet: "10.44.0.0/24", range: ["10.44.0.100", "10.44.0.253"], server: "10.44.0.254" } });
      const refused = await run("dhcp-cli-bad", "--dhcp", "10.44.0.5/24");
      expect(refused.code).toBe(1);
      expect(refused.output).toMatch(/400 invalid-config-field: dhcp: subnet 10\.44\.0\.5\/24 has host bits set; did you mean 10\.44\.0\.0\/24\?/);
    });

    it("configures the leased address and the default route on the TAP", async () => {
      const leased = await waitFor("an address on elt0", () => /inet (10\.237\.0\.(?:5\d|60))\/24/.exec(addressesOf(namespaces, nsClient))?.[1], 45_000);
      expect(namespaces.exec(nsClient, "ip", ["route", "show", "default"])).toMatch(/default via 10\.237\.0\.1 dev elt0/);
      expect(ping(namespaces, nsClient, "10.237.0.1", 2).received).toBe(2);
      expect(dnsmasq.output()).toMatch(new RegExp(`DHCPACK\\(elt0\\) ${leased.replace(/\./g, "\\.")} ${CLIENT_MAC}`));
    });

    it("renews at T1 and keeps the address", async () => {
      const acks = (): number => [...dnsmasq.output().matchAll(new RegExp(`DHCPACK\\(elt0\\) \\S+ ${CLIENT_MAC}`, "g"))].length;
      await waitFor("a renewal", () => (acks() >= 2 ? true : undefined), 30_000);
      expect(dnsmasq.output()).toMatch(new RegExp(`DHCPREQUEST\\(elt0\\) 10\\.237\\.0\\.\\d+ ${CLIENT_MAC}`));
      expect(namespaces.exec(nsClient, "ip", ["-4", "addr", "show", "dev", "elt0"])).toMatch(/inet 10\.237\.0\.(?:5\d|60)\/24/);
    });

    it("releases the lease when the agent exits", async () => {
      await agent.stop("SIGTERM");
      await waitFor("DHCPRELEASE", () => (new RegExp(`DHCPRELEASE\\(elt0\\) 10\\.237\\.0\\.\\d+ ${CLIENT_MAC}`).test(dnsmasq.output()) ? true : undefined), 10_000);
    });
  },
);
