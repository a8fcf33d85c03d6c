// A host keeps its MAC: without --mac, `join` derives a locally administered
// unicast MAC from the machine id, the segment, the TAP name and the namespace,
// so a rejoin (after a restart, a crash, a reboot) comes back with the same
// address and the peers' ARP caches stay right.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { MacKey } from "../../datapath/mac.ts";

/** Where the machine id lives (systemd, then D-Bus); the host name when neither exists. */
const MACHINE_ID_FILES = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

export function machineId(): string {
  for (const path of MACHINE_ID_FILES) {
    try {
      const id = readFileSync(path, "utf8").trim();
      if (id !== "") return id;
    } catch {
      // Try the next one.
    }
  }
  return `host:${hostname()}`;
}

/** The MAC for (machine, segment, TAP, namespace): 02:xx:xx:xx:xx:xx style (locally administered, unicast). */
export function stableMac(parts: { machineId: string; segment: string; tap: string; netns?: string }): MacKey {
  const digest = createHash("sha256").update(["edgelan-mac-v1", parts.machineId, parts.segment, parts.tap, parts.netns ?? ""].join("\0")).digest();
  const bytes = digest.subarray(0, 6);
  bytes[0] = ((bytes[0] as number) & 0xfc) | 0x02;
  return bytes.reduce((key, byte) => key * 256 + byte, 0);
}
