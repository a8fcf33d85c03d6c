// docs/api.md, the parts a port meets: segment counters, open development mode, open joins.
import { describe, expect, it } from "vitest";
import { createSegment, describeSegment, devEnv, Peer } from "./peer.ts";

describe("api.md GET /v1/segments/:name", () => {
  it("api.md instanceStarts is 1 for a segment just created", async () => {
    await createSegment("api-fresh");
    expect((await describeSegment("api-fresh")).counters.instanceStarts).toBe(1);
  });
});

describe("api.md GET /v1/segments/:name/connect", () => {
  it("api.md an open segment admits a member without a token, but not a bridge or monitor port (403 token-required-for-kind)", async () => {
    await createSegment("api-open", { openJoin: true });
    const member = await Peer.open("api-open");
    member.close();
    for (const kind of ["bridge", "monitor"]) {
      const response = await Peer.upgrade("api-open", { query: `?kind=${kind}` });
      expect(response.status).toBe(403);
      expect(((await response.json()) as { error: string }).error).toBe("token-required-for-kind");
    }
  });

  it("api.md open development mode admits a tokenless bridge or monitor port only where EDGELAN_DEV_OPEN_PORTS opens its kind", async () => {
    for (const kind of ["bridge", "monitor"] as const) {
      const refused = await Peer.upgrade("api-dev", { query: `?kind=${kind}`, workerEnv: devEnv() });
      expect(refused.status).toBe(403);
      expect(((await refused.json()) as { error: string }).error).toBe("dev-port-kind-closed");
      const opened = { ...devEnv(), EDGELAN_DEV_OPEN_PORTS: "bridge,monitor" };
      const { peer, welcome } = await Peer.join("api-dev", { portKind: kind }, { query: `?kind=${kind}`, workerEnv: opened });
      expect(welcome.portId).toBeGreaterThan(0);
      peer.close();
    }
  });
});
