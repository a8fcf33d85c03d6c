// A QEMU VM gets its address from the segment's IPAM service — no dnsmasq anywhere — and
// reaches a TAP host that got its own address by `edgelan join --dhcp`; the host finds the VM
// by name. The VM is the busybox initramfs of qemu-guest.test.ts (vm-image.ts) running udhcpc.
// Needs root, /dev/net/tun, qemu-system-x86_64, a static busybox, a kernel, dig; skipped with
// the reason otherwise, and each test skips itself while the relay does not host the service yet.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LeaseReport } from "../../datapath/ipam/lease-list.ts";
import { background, commandExists, guestSkipReason, Namespaces, ping, type Background } from "./guests.ts";
import { waitFor } from "./poll.ts";
import { startRelay, type RunningRelay } from "./relay-harness.ts";
import { buildImage, vmSkipReason, type BuiltImage } from "./vm-image.ts";

const CLI = join(import.meta.dirname, "..", "..", "bin", "edgelan.mjs");
const SEGMENT = `qemu-dhcp-${process.pid}`;
const VM_MAC = "52:54:00:12:34:57";
const HOST_MAC = "02:e1:7e:34:00:01";
const SERVER = "10.240.0.254";
const VM_TIMEOUT_MS = 120_000;

const reason = guestSkipReason() ?? vmSkipReason() ?? (["ping", "dig"].every(commandExists) ? null : "needs ping and dig in the namespace");

// The VM's /init after vm-image.ts's prelude: udhcpc with a script that configures eth0, then a
// ping to the host whose address the test passes on the kernel command line (edgelan_host=).
const INIT = `
boot_eth0
cat > /tmp/dhcp.sh <<'SCRIPT'
#!/bin/sh
[ "$1" = bound ] && ip addr add "$ip/$mask" dev "$interface" && echo "EDGELAN-VM-LEASE: $ip dns=$dns domain=$domain"
exit 0
SCRIPT
chmod +x /tmp/dhcp.sh
udhcpc -i eth0 -s /tmp/dhcp.sh -q -n -t 15 -T 2 -x hostname:vm1
echo "EDGELAN-VM-DHCP: rc=$?"
host=$(sed -n 's/.*edgelan_host=\\([0-9.]*\\).*/\\1/p' /proc/cmdline)
ping -c 3 -W 5 $host > /tmp/ping 2>&1
echo "EDGELAN-VM-PING: rc=$? $(grep 'packets transmitted' /tmp/ping)"
sleep 90
poweroff -f
`;

describe.skipIf(reason !== null)(`a QEMU VM leases from the segment${reason === null ? "" : ` (skipped: ${reason})`}`, () => {
  const namespaces = new Namespaces();
  let relay: RunningRelay | undefined;
  let work: string;
  let ns = "";
  let image: BuiltImage;
  let netdevArgs: string[] = [];
  let wired = false;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "edgelan-qemu-dhcp-"));
    relay = await startRelay();
    const created = await fetch(`${relay.baseUrl}/v1/segments/${SEGMENT}`, {
      method: "PUT", body: JSON.stringify({ openJoin: true, dhcp: { subnet: "10.240.0.0/24", domain: "lab.lan" } }),
    });
    expect(created.status, await created.text()).toBe(201);
    wired = (await fetch(`${relay.baseUrl}/v1/segments/${SEGMENT}/leases`)).status === 200;
    if (!wired) return;
    image = buildImage(work, INIT);
    const url = `${relay.wsUrl}/v1/segments/${SEGMENT}/connect`;
    ns = namespaces.create("qdhcp");
    namespaces.join(ns, url, { tap: "elq0", mac: HOST_MAC, extra: ["--dhcp"] });
    const cli = namespaces.track(background(process.execPath, [CLI, "qemu", url, "--listen", "127.0.0.1:0"]));
    const printed = await waitFor("the CLI's QEMU arguments", () => /start each VM with: (.+)\n/.exec(cli.output()) ?? undefined, 30_000);
    netdevArgs = (printed[1] as string).trim().split(/\s+/);
  });

  afterAll(async () => {
    await namespaces.cleanup();
    await relay?.stop();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it("the VM leases, pings the join --dhcp host, is pinged back and found by name", async (ctx) => {
    if (!wired) ctx.skip("the relay does not host the IPAM service yet (GET /v1/segments/:name/leases is 404)");
    const host = await waitFor("the host's leased address", () => {
      try {
        return /inet (10\.240\.0\.\d+)\/24/.exec(namespaces.exec(ns, "ip", ["-4", "addr", "show", "dev", "elq0"]))?.[1];
      } catch {
        return undefined;
      }
    }, 45_000);
    const nic = (netdevArgs[3] as string).replace(/mac=[0-9a-f:]+$/, `mac=${VM_MAC}`);
    const vm: Background = namespaces.track(background("qemu-system-x86_64", [
      "-machine", "q35", "-accel", "tcg", "-m", "256", "-smp", "1", "-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio",
      "-kernel", image.kernel, "-initrd", image.initrd, "-append", `console=ttyS0 quiet panic=-1 edgelan_host=${host}`,
      netdevArgs[0] as string, netdevArgs[1] as string, netdevArgs[2] as string, nic,
    ]));
    const timer = setTimeout(() => void vm.stop("SIGKILL"), VM_TIMEOUT_MS);
    try {
      const lease = await waitFor("the VM's lease", () => /EDGELAN-VM-LEASE: (\S+) dns=(\S*) domain=(\S*)/.exec(vm.output()) ?? undefined, 90_000);
      const address = lease[1] as string;
      expect(address).toMatch(/^10\.240\.0\.(1\d\d|2[0-4]\d|25[0-3])$/);
      expect(lease.slice(2)).toEqual([SERVER, "lab.lan"]);
      const vmPing = await waitFor("the VM's ping result", () => /EDGELAN-VM-PING: rc=(\d+) (.*)/.exec(vm.output()) ?? undefined, 45_000);
      expect(vmPing[2], vm.output()).toMatch(/^3 packets transmitted, 3 packets received/);
      expect(ping(namespaces, ns, address, 3).received, vm.output()).toBe(3);
      expect(namespaces.exec(ns, "dig", [`@${SERVER}`, "+short", "vm1.lab.lan", "A"]).trim()).toBe(address);
      const leases = (await (await fetch(`${relay?.baseUrl}/v1/segments/${SEGMENT}/leases`)).json()) as LeaseReport;
      expect(leases.leases).toContainEqual(expect.objectContaining({ ip: address, mac: VM_MAC, hostname: "vm1", state: "bound" }));
      expect(leases.leases).toContainEqual(expect.objectContaining({ ip: host, mac: HOST_MAC, state: "bound" }));
    } finally {
      clearTimeout(timer);
      await vm.stop("SIGKILL");
    }
  }, VM_TIMEOUT_MS + 60_000);
});
