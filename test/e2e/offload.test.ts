// Real guests with TAP offloads (`edgelan join --offload`): GSO super-frames and partial
// checksums carried end to end between two offload namespaces (Gso on both ports), and
// software segmentation against a real kernel between an offload namespace and a plain one.
// Needs root and /dev/net/tun, like guests.test.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRelay, type RunningRelay } from "./relay-harness.ts";
import { commandExists, guestSkipReason, Namespaces, ping } from "./guests.ts";

const skip = guestSkipReason();
const missingTools = ["iperf3", "ping"].filter((tool) => !commandExists(tool));

let relay: RunningRelay;
const namespaces = new Namespaces();

/** The connect URL of segment `name`. */
function segmentUrl(name: string): string {
  return `${relay.wsUrl}/v1/segments/${name}/connect`;
}

/** Mean bytes per frame the segment received from the port owning `mac` (above 1514 only with super-frames). */
async function meanRxFrame(mac: string): Promise<number> {
  const base = `${relay.baseUrl}/v1/segments/offload`;
  const info = (await (await fetch(base)).json()) as { ports: Array<{ portId: number; macs: string[] }> };
  const stats = (await (await fetch(`${base}/ports`)).json()) as { ports: Array<{ portId: number; counters: { rxFrames: number; rxBytes: number } }> };
  const portId = info.ports.find((p) => p.macs.includes(mac))?.portId;
  const counters = stats.ports.find((p) => p.portId === portId)?.counters;
  return counters === undefined || counters.rxFrames === 0 ? 0 : counters.rxBytes / counters.rxFrames;
}

describe.skipIf(skip !== null || missingTools.length > 0)(
  `TAP offloads through a segment${skip !== null ? ` (skipped: ${skip})` : missingTools.length > 0 ? ` (skipped: missing ${missingTools.join(", ")})` : ""}`,
  () => {
    let nsA: string;
    let nsB: string;
    let nsC: string;

    beforeAll(async () => {
      relay = await startRelay();
      nsA = namespaces.create("oa");
      nsB = namespaces.create("ob");
      nsC = namespaces.create("oc");
      namespaces.join(nsA, segmentUrl("offload"), { mac: "02:00:00:00:e2:01", extra: ["--offload"] });
      namespaces.join(nsB, segmentUrl("offload"), { mac: "02:00:00:00:e2:02", extra: ["--offload"] });
      namespaces.join(nsC, segmentUrl("offload"), { mac: "02:00:00:00:e2:03", extra: ["--no-offload"] });
      await namespaces.address(nsA, "elt0", "10.236.0.1/24");
      await namespaces.address(nsB, "elt0", "10.236.0.2/24");
      await namespaces.address(nsC, "elt0", "10.236.0.3/24");
    });

    afterAll(async () => {
      await namespaces.cleanup();
      await relay?.stop();
    });

    it("pings between two offload namespaces", async () => {
      expect(await namespaces.reachable(nsA, "10.236.0.2", 20_000)).toBe(true);
      expect(ping(namespaces, nsA, "10.236.0.2", 3).received).toBe(3);
      expect(ping(namespaces, nsB, "10.236.0.1", 3).received).toBe(3);
    });

    it("carries iperf3 between two offload namespaces (super-frames end to end)", async () => {
      const report = await namespaces.iperf(nsA, "10.236.0.1", nsB, 3);
      expect(report.error).toBeUndefined();
      expect(report.end?.sum_received?.bytes).toBeGreaterThan(1_000_000);
      // The sender's frames averaged more than one MTU: the kernel handed over GSO super-frames.
      expect(await meanRxFrame("02:00:00:00:e2:02")).toBeGreaterThan(1514);
    });

    it("carries iperf3 both ways between an offload namespace and a plain one (software segmentation)", async () => {
      expect(await namespaces.reachable(nsC, "10.236.0.1", 20_000)).toBe(true);
      const before = await meanRxFrame("02:00:00:00:e2:01");
      const toPlain = await namespaces.iperf(nsC, "10.236.0.3", nsA, 3);
      expect(toPlain.error).toBeUndefined();
      expect(toPlain.end?.sum_received?.bytes).toBeGreaterThan(1_000_000);
      // A sent super-frames and the plain receiver's kernel accepted the segment's software segments.
      expect(await meanRxFrame("02:00:00:00:e2:01")).toBeGreaterThan(Math.max(before, 1514));
      const fromPlain = await namespaces.iperf(nsA, "10.236.0.1", nsC, 3);
      expect(fromPlain.error).toBeUndefined();
      expect(fromPlain.end?.sum_received?.bytes).toBeGreaterThan(1_000_000);
    });
  },
);
