// A real QEMU VM on a segment (issue #5): a small Linux (distribution kernel +
// busybox initramfs built at test time, TCG, no KVM needed) joins through
// `edgelan qemu`, and a TAP in a network namespace joins through `edgelan join`.
// The VM pings the namespace, the namespace pings the VM back, and a TCP
// message from the namespace tells the VM to power off.
//
// Needs root, /dev/net/tun, iproute2, the TAP addon, qemu-system-x86_64, a
// static busybox and a kernel (/boot/vmlinuz-*: Debian linux-image-cloud-amd64,
// or EDGELAN_QEMU_KERNEL); skipped with the reason otherwise. Addresses are in
// 10.233.0.0/24 inside the namespace; nothing is routed anywhere else.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { background, commandExists, guestSkipReason, Namespaces, ping, type Background } from "./guests.ts";
import { startRelay, type RunningRelay } from "./relay-harness.ts";
import { buildImage, vmSkipReason, type BuiltImage } from "./vm-image.ts";

const CLI = join(import.meta.dirname, "..", "..", "bin", "edgelan.mjs");
const SEGMENT = `qemu-e2e-${process.pid}`;
const VM_MAC = "52:54:00:12:34:56";
const VM_IP = "10.233.0.10";
const HOST_IP = "10.233.0.1";
const HOST_MAC = "02:e1:7e:33:00:01";
const MESSAGE_PORT = 5000;
const VM_TIMEOUT_MS = 90_000;

const reason = guestSkipReason() ?? vmSkipReason() ?? (commandExists("ping") ? null : "needs ping (iputils-ping) in the namespace");
if (reason !== null) console.warn(`qemu-guest e2e skipped: ${reason}`);

// The VM's /init after the shared prelude (busybox applets installed, /proc, /sys, /dev mounted).
// Every line the test waits for starts with "EDGELAN-VM".
const INIT = `
boot_eth0
ip addr add ${VM_IP}/24 dev eth0
echo "EDGELAN-VM: eth0 $(cat /sys/class/net/eth0/address) ${VM_IP}/24"
ping -c 3 -W 5 ${HOST_IP} > /tmp/ping 2>&1
echo "EDGELAN-VM-PING: rc=$? $(grep 'packets transmitted' /tmp/ping)"
timeout 60 nc -l -p ${MESSAGE_PORT} > /tmp/message &
listener=$!
echo "EDGELAN-VM-LISTENING: tcp ${MESSAGE_PORT}"
wait $listener
echo "EDGELAN-VM-MESSAGE: $(cat /tmp/message)"
poweroff -f
`;

/** Resolves with the first match of `pattern` in a process's output; rejects when it exits first or after `timeoutMs`. */
async function waitForOutput(process: Background, pattern: RegExp, what: string, timeoutMs: number): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void process.exited.then(() => { exited = true; });
  for (;;) {
    const match = pattern.exec(process.output());
    if (match !== null) return match;
    if (exited) throw new Error(`exited before ${what}; output:\n${process.output()}`);
    if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms; output:\n${process.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.skipIf(reason !== null)(`a QEMU VM on a segment through edgelan qemu${reason === null ? "" : ` (skipped: ${reason})`}`, () => {
  const namespaces = new Namespaces();
  const tempDirs: string[] = [];
  let relay: RunningRelay | undefined;
  let url = "";
  let ns = "";
  let cli: Background;
  let vm: Background;
  let image: BuiltImage;
  let netdevArgs: string[] = [];
  const started = Date.now();

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgelan-qemu-"));
    tempDirs.push(dir);
    image = buildImage(dir, INIT);

    relay = await startRelay();
    const created = await fetch(`${relay.baseUrl}/v1/segments/${SEGMENT}`, { method: "PUT", body: JSON.stringify({ openJoin: true }) });
    expect(created.status, await created.text()).toBeLessThan(300);
    url = `${relay.wsUrl}/v1/segments/${SEGMENT}/connect`;

    ns = namespaces.create("qemu");
    namespaces.join(ns, url, { tap: "elq0", mac: HOST_MAC });
    await namespaces.address(ns, "elq0", `${HOST_IP}/24`);

    // Port 0: the CLI binds a free port and prints the real address in the QEMU arguments.
    cli = namespaces.track(background(process.execPath, [CLI, "qemu", url, "--listen", "127.0.0.1:0"]));
    const printed = await waitForOutput(cli, /start each VM with: (.+)\n/, "the CLI's QEMU arguments", 30_000);
    netdevArgs = (printed[1] as string).trim().split(/\s+/);
  });

  afterAll(async () => {
    // Stops QEMU, both CLIs and the ping/exec helpers (each by its own process group), then the namespaces.
    await namespaces.cleanup();
    await relay?.stop();
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
    console.log(`qemu-guest e2e: ${((Date.now() - started) / 1000).toFixed(1)} s including relay start and VM boot`);
  }, 60_000);

  it("the CLI prints -netdev stream arguments for its bound address", () => {
    expect(netdevArgs).toHaveLength(4);
    expect(netdevArgs[0]).toBe("-netdev");
    expect(netdevArgs[1]).toMatch(/^stream,id=n0,server=off,addr\.type=inet,addr\.host=127\.0\.0\.1,addr\.port=[1-9]\d*$/);
    expect(netdevArgs[2]).toBe("-device");
    expect(netdevArgs[3]).toMatch(/^virtio-net-pci,netdev=n0,mac=([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  });

  it("boots, pings the TAP namespace, is pinged back, and is listed by the admin API", async () => {
    // The printed arguments as they are, with this test's MAC for the guest NIC.
    const nic = (netdevArgs[3] as string).replace(/mac=[0-9a-f:]+$/, `mac=${VM_MAC}`);
    vm = namespaces.track(background("qemu-system-x86_64", [
      "-machine", "q35", "-accel", "tcg", "-m", "256", "-smp", "1", "-nodefaults", "-no-reboot",
      "-display", "none", "-serial", "stdio",
      "-kernel", image.kernel, "-initrd", image.initrd, "-append", "console=ttyS0 quiet panic=-1",
      netdevArgs[0] as string, netdevArgs[1] as string, netdevArgs[2] as string, nic,
    ]));
    const timer = setTimeout(() => void vm.stop("SIGKILL"), VM_TIMEOUT_MS);
    try {
      await waitForOutput(vm, /EDGELAN-VM: booted/, "the VM's boot marker", 60_000);
      const vmPing = await waitForOutput(vm, /EDGELAN-VM-PING: rc=(\d+) (.*)/, "the VM's ping result", 45_000);
      expect(vmPing[2], vm.output()).toMatch(/^3 packets transmitted, 3 packets received/);
      expect(vmPing[1]).toBe("0");
      expect(cli.output()).toMatch(/guest connected \(qemu:127\.0\.0\.1:\d+#1\)/);

      await waitForOutput(vm, /EDGELAN-VM-LISTENING/, "the VM's listener", 10_000);
      const back = ping(namespaces, ns, VM_IP, 3);
      expect(back.received, vm.output()).toBe(3);
      expect(namespaces.exec(ns, "ip", ["neigh", "show", VM_IP])).toContain(VM_MAC);

      // While the VM is up, the segment shows its port with the MAC it learned from the first frame.
      const described = (await (await fetch(`${relay?.baseUrl}/v1/segments/${SEGMENT}`)).json()) as { ports: Array<{ macs: string[]; phase: string }> };
      expect(described.ports.map((port) => port.macs).sort()).toEqual([[HOST_MAC], [VM_MAC]].sort());
      expect(described.ports.every((port) => port.phase === "open")).toBe(true);

      // TCP across the segment: the VM prints what it gets and powers off.
      const sender = `const net=require("node:net");let tries=0;const go=()=>{const s=net.connect(${MESSAGE_PORT},"${VM_IP}",()=>s.end("edgelan-bye\\n"));` +
        `s.on("error",()=>{if(++tries<20)setTimeout(go,250);else process.exit(1);});s.on("close",(e)=>{if(!e)process.exit(0);});};go();`;
      namespaces.exec(ns, process.execPath, ["-e", sender], 15_000);
      await waitForOutput(vm, /EDGELAN-VM-MESSAGE: edgelan-bye/, "the VM's received message", 15_000);
      expect(await vm.exited).toBe(0); // poweroff -f: QEMU exits cleanly
    } finally {
      clearTimeout(timer);
      await vm.stop("SIGKILL"); // a no-op after a clean poweroff; ends a VM left waiting when an assertion failed
    }
  }, VM_TIMEOUT_MS + 30_000);

  it("the guest's port leaves the segment when QEMU exits", async () => {
    const deadline = Date.now() + 10_000;
    let macs: string[][] = [];
    while (Date.now() < deadline) {
      const described = (await (await fetch(`${relay?.baseUrl}/v1/segments/${SEGMENT}`)).json()) as { ports: Array<{ macs: string[] }> };
      macs = described.ports.map((port) => port.macs);
      if (macs.length === 1) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(macs).toEqual([[HOST_MAC]]);
  });
});
