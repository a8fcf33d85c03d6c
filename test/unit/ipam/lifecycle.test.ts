import { describe, expect, it } from "vitest";
import { checkDhcpConfig, type DhcpConfig } from "../../../datapath/ipam/config.ts";
import { ipamServiceFor, reconfigureIpam } from "../../../datapath/ipam/lifecycle.ts";

// How the segment builds, restores and reconfigures its IPAM service.

function config(value: unknown): DhcpConfig {
  const checked = checkDhcpConfig(value);
  if (!checked.ok) throw new Error(checked.error.message);
  return checked.value;
}

const CLIENT = (n: number): { key: string; mac: number; hostname: null } => ({ key: `mac:${n}`, mac: 0x020000000000 + n, hostname: null });

describe("IPAM lifecycle", () => {
  it("has no service without dhcp", () => {
    expect(ipamServiceFor(null, undefined, 0)).toBeNull();
    expect(ipamServiceFor(undefined, undefined, 0)).toBeNull();
  });

  it("restores stored leases (a restart or a hibernation)", () => {
    const first = ipamServiceFor(config({ subnet: "10.44.0.0/24" }), undefined, 0);
    expect(first?.leases.bind(CLIENT(1), 0x0a2c0070, 3600, 0).ok).toBe(true);
    const stored = JSON.parse(JSON.stringify(first?.exportState())) as unknown;
    const restored = ipamServiceFor(config({ subnet: "10.44.0.0/24" }), stored, 1000);
    expect(restored?.leases.leaseOf(0x0a2c0070)).toMatchObject({ state: "bound", client: "mac:1" });
    expect(restored?.takeDirty()).toBe(false);
  });

  it("keeps the leases a new configuration allows, marks the table dirty when some were dropped, and turns off with null", () => {
    const service = ipamServiceFor(config({ subnet: "10.44.0.0/24" }), undefined, 0);
    service?.leases.bind(CLIENT(1), 0x0a2c0070, 3600, 0);
    service?.leases.bind(CLIENT(2), 0x0a2c00c8, 3600, 0);
    const same = reconfigureIpam(service, config({ subnet: "10.44.0.0/24", domain: "lab.lan" }), 1);
    expect(same?.exportState().leases).toHaveLength(2);
    expect(same?.takeDirty()).toBe(false);
    const smaller = reconfigureIpam(same, config({ subnet: "10.44.0.0/24", range: ["10.44.0.100", "10.44.0.150"] }), 2);
    expect(smaller?.exportState().leases.map((l) => l.ip)).toEqual(["10.44.0.112"]);
    expect(smaller?.takeDirty()).toBe(true);
    expect(reconfigureIpam(smaller, null, 3)).toBeNull();
  });
});
