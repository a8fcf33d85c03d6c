// End-to-end: seeing the LAN. Two diagnostic hosts on a real relay ping each
// other while `edgelan capture` (child processes) records the segment; tshark
// reads the files back. The Prometheus metrics of the same traffic are parsed
// with a real exposition-format parser and checked against what was sent.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatMac } from "../../datapath/mac.ts";
import { CLI, killCli as kill, runningCli, startCli, waitFor } from "./cli-process.ts";
import { joinDiagHost, type JoinedHost } from "./diag-hosts.ts";
import { startRelay, type RunningRelay } from "./relay-harness.ts";

const ADMIN = "observe-e2e-admin-token";
const METRICS_TOKEN = "observe-e2e-metrics-token";
const SEGMENT = "seen";
let relay: RunningRelay;
let workDir: string;

let hostA: JoinedHost;
let hostB: JoinedHost;

const connectUrl = (): string => `${relay.wsUrl}/v1/segments/${SEGMENT}/connect`;

async function admin(method: string, path: string, body?: unknown, token = ADMIN): Promise<Response> {
  return fetch(`${relay.baseUrl}${path}`, {
    method, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** Whether a program is installed (tshark, tmux: .ci/run installs them); `versionFlag` only prints a version. */
function hasTool(name: string, versionFlag: string): boolean {
  try {
    execFileSync(name, [versionFlag], { stdio: "ignore", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** tshark's fields for every packet of a file, one array per packet. */
function tsharkFields(path: string, fields: string[]): string[][] {
  const args = ["-r", path, "-T", "fields", "-E", "separator=|", ...fields.flatMap((field) => ["-e", field])];
  const out = execFileSync("tshark", args, { encoding: "utf8" }).trim();
  return out === "" ? [] : out.split("\n").map((line) => line.split("|"));
}

/** ARP once (so exactly one request goes out), then `count` echo requests from A to B. */
async function pingAToB(count: number): Promise<void> {
  await hostA.host.resolve("10.9.0.2", { attempts: 1, intervalMs: 20_000 });
  const summary = await hostA.host.ping("10.9.0.2", { count, intervalMs: 50, timeoutMs: 20_000, resolve: { attempts: 1, intervalMs: 20_000 } });
  expect(summary.received).toBe(count);
}

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), "edgelan-observe-"));
  relay = await startRelay({ adminToken: ADMIN, vars: { EDGELAN_METRICS_TOKEN: METRICS_TOKEN } });
  expect((await admin("PUT", `/v1/segments/${SEGMENT}`, { openJoin: true })).status).toBe(201);
  hostA = await joinDiagHost(connectUrl(), 0x02_00_00_00_0a_01, "10.9.0.1");
  hostB = await joinDiagHost(connectUrl(), 0x02_00_00_00_0a_02, "10.9.0.2");
});

afterAll(async () => {
  for (const child of runningCli) kill(child);
  hostA?.close();
  hostB?.close();
  await relay?.stop();
  rmSync(workDir, { recursive: true, force: true });
});

describe.skipIf(!hasTool("tshark", "--version"))("edgelan capture", () => {
  it("records a ping between two ports: the ICMP frames in order, each with its ingress port, read back by tshark", async () => {
    const all = join(workDir, "all.pcapng");
    const onlyB = join(workDir, "port-b.pcapng");
    // 1 ARP request + 1 ARP reply + 3 echo requests + 3 echo replies = 8 frames; the port filter drops the broadcast from A.
    const whole = startCli(["capture", connectUrl(), "-w", all, "--count", "8"], { EDGELAN_ADMIN_TOKEN: ADMIN });
    const filtered = startCli(["capture", connectUrl(), "-w", onlyB, "--count", "7", "--port", String(hostB.portId)], { EDGELAN_ADMIN_TOKEN: ADMIN });
    await waitFor(() => whole.output().includes("capturing") && filtered.output().includes("capturing"), "both captures to join");

    await pingAToB(3);
    expect(await whole.exited).toBe(0);
    expect(await filtered.exited).toBe(0);
    expect(whole.output()).toMatch(/packet count reached: 8 packets written/);

    const fields = ["eth.src", "arp.opcode", "icmp.type", "icmp.seq", "frame.comment"];
    const packets = tsharkFields(all, fields);
    const a = `ingress port ${hostA.portId}`;
    const b = `ingress port ${hostB.portId}`;
    const macA = formatMac(hostA.mac);
    const macB = formatMac(hostB.mac);
    expect(packets.slice(0, 2)).toEqual([
      [macA, "1", "", "", expect.stringMatching(new RegExp(`^${a}(,|$)`))],
      [macB, "2", "", "", expect.stringMatching(new RegExp(`^${b}(,|$)`))],
    ]);
    const icmp = packets.slice(2).map(([source, , type, seq, comment]) => ({ source, type, seq: Number(seq), comment: comment?.split(",")[0] }));
    const requests = icmp.filter((packet) => packet.type === "8");
    const replies = icmp.filter((packet) => packet.type === "0");
    expect(requests.map(({ source, seq, comment }) => ({ source, seq, comment }))).toEqual([0, 1, 2].map(() => ({ source: macA, seq: expect.any(Number), comment: a })));
    expect(replies.map(({ source, comment }) => ({ source, comment }))).toEqual([0, 1, 2].map(() => ({ source: macB, comment: b })));
    // Order: sequence numbers rise, and every reply comes after its request.
    const seqs = requests.map((packet) => packet.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    for (const reply of replies) expect(icmp.findIndex((p) => p.type === "8" && p.seq === reply.seq)).toBeLessThan(icmp.indexOf(reply));

    const portB = tsharkFields(onlyB, ["eth.src", "eth.dst", "frame.comment"]);
    expect(portB).toHaveLength(7);
    for (const [source, destination] of portB) expect([source, destination]).toContain(macB);

    // The closing statistics block (capinfos counts it) and the Ethernet interface.
    const info = execFileSync("capinfos", [all], { encoding: "utf8" });
    expect(info).toMatch(/Number of packets:\s+8\b/);
    expect(info).toMatch(/Encapsulation = Ethernet/);
    expect(info).toMatch(/Number of stat entries = 1/);
  });

  it("stops on SIGINT with a complete file, and writes to stdout with -w -", async () => {
    const capture = startCli(["capture", connectUrl(), "-w", "-"], { EDGELAN_ADMIN_TOKEN: ADMIN });
    const chunks: Buffer[] = [];
    capture.child.stdout?.on("data", (chunk: Buffer) => chunks.push(chunk));
    await waitFor(() => capture.output().includes("capturing"), "the capture to join");
    await pingAToB(1);
    // A resolved B before: one echo request and one reply. Wait until the segment has delivered both to the monitor port.
    await waitFor(() => Buffer.concat(chunks).length > 0, "the header");
    let delivered = 0;
    await waitFor(() => {
      void admin("GET", `/v1/segments/${SEGMENT}/ports`).then(async (response) => {
        const { ports } = (await response.json()) as { ports: Array<{ kind: string; counters: { txFrames: number } }> };
        delivered = ports.find((port) => port.kind === "monitor")?.counters.txFrames ?? 0;
      });
      return delivered >= 2;
    }, "the monitor port's copies");
    kill(capture.child, "SIGINT");
    expect(await capture.exited).toBe(0);
    expect(capture.output()).toMatch(/stopped by SIGINT/);
    const path = join(workDir, "stdout.pcapng");
    execFileSync("sh", ["-c", `cat > ${path}`], { input: Buffer.concat(chunks) });
    const info = execFileSync("capinfos", [path], { encoding: "utf8" });
    expect(info).toMatch(/Number of stat entries = 1/);
    // Complete: the stats reply that ends the capture comes after every frame the segment sent before it.
    expect(tsharkFields(path, ["icmp.type"])).toEqual([["8"], ["0"]]);
  });

  it("feeds a live reader (-w - | tshark -i -) and ends cleanly when the reader goes away", async () => {
    const err = join(workDir, "pipe.err");
    const code = join(workDir, "pipe.code");
    const out = join(workDir, "pipe.out");
    const pipeline = `(EDGELAN_ADMIN_TOKEN=${ADMIN} ${process.execPath} ${CLI} capture ${connectUrl()} -w - 2>${err}; echo $? >${code}) | tshark -i - -c 2 -l -T fields -e icmp.type >${out} 2>/dev/null`;
    const shell = spawn("sh", ["-c", pipeline], { detached: true, stdio: "ignore" });
    runningCli.add(shell);
    const shellExited = new Promise<void>((resolve) => shell.once("exit", () => resolve()));
    const read = (path: string): string => (existsSync(path) ? readFileSync(path, "utf8") : "");
    await waitFor(() => read(err).includes("capturing"), "the capture to join");
    // tshark stops after two packets (one echo request and its reply); the capture ends at its next write (EPIPE).
    let exited = false;
    void shellExited.then(() => (exited = true));
    const deadline = Date.now() + 30_000;
    while (!exited && Date.now() < deadline) await hostA.host.ping("10.9.0.2", { count: 1, intervalMs: 50, timeoutMs: 5_000 });
    await shellExited;
    runningCli.delete(shell);
    expect(read(out).trim().split("\n")).toEqual(["8", "0"]);
    expect(read(code).trim()).toBe("0");
    expect(read(err)).toMatch(/the reader closed the output/);
  });

  it("ends with exit 1 and a complete file when the segment closes the monitor port (segment deleted)", async () => {
    expect((await admin("PUT", "/v1/segments/doomed", {})).status).toBe(201);
    const path = join(workDir, "doomed.pcapng");
    const capture = startCli(["capture", `${relay.wsUrl}/v1/segments/doomed/connect`, "-w", path], { EDGELAN_ADMIN_TOKEN: ADMIN });
    await waitFor(() => capture.output().includes("capturing"), "the capture to join");
    expect((await admin("DELETE", "/v1/segments/doomed")).status).toBe(200);
    expect(await capture.exited).toBe(1);
    expect(capture.output()).toMatch(/monitor port ended: segment closed the monitor port: .*segment deleted/);
    const info = execFileSync("capinfos", [path], { encoding: "utf8" });
    expect(info).toMatch(/Number of packets:\s+0\b/);
    expect(info).toMatch(/Number of stat entries = 1/);
  });

  it("ends after --duration with exit 0 and a file tshark reads", async () => {
    const path = join(workDir, "duration.pcapng");
    const capture = startCli(["capture", connectUrl(), "-w", path, "--duration", "1", "--mac", formatMac(hostB.mac)], { EDGELAN_ADMIN_TOKEN: ADMIN });
    expect(await capture.exited).toBe(0);
    expect(capture.output()).toMatch(/filter: mac 02:00:00:00:0a:02\)/);
    expect(capture.output()).toMatch(/captured for 1 s: \d+ packets written/);
    expect(execFileSync("capinfos", [path], { encoding: "utf8" })).toMatch(/Number of stat entries = 1/);
  });

  it("refuses bad options with exit 2 and says which", async () => {
    const noFile = startCli(["capture", connectUrl()], { EDGELAN_ADMIN_TOKEN: ADMIN });
    expect(await noFile.exited).toBe(2);
    expect(noFile.output()).toMatch(/-w FILE \(or -w - for stdout\) is required/);
    const badVlan = startCli(["capture", connectUrl(), "-w", "-", "--vlan", "5000"], { EDGELAN_ADMIN_TOKEN: ADMIN });
    expect(await badVlan.exited).toBe(2);
    expect(badVlan.output()).toMatch(/--vlan must be an integer from 1 to 4094/);
  });

  it("refuses a capture without a usable token: none, forged, or of another role (exit 3)", async () => {
    const capture = startCli(["capture", connectUrl(), "-w", join(workDir, "refused.pcapng")], {});
    expect(await capture.exited).toBe(3);
    expect(capture.output()).toMatch(/admin-token-required/);
    const forged = startCli(["capture", connectUrl(), "-w", join(workDir, "forged.pcapng"), "--token", "elt1.forged.token"], {});
    expect(await forged.exited).toBe(3);
    expect(forged.output()).toMatch(/refused the monitor port: HTTP 401/);
    const member = await (await admin("POST", `/v1/segments/${SEGMENT}/tokens`, { role: "member" })).json() as { token: string };
    const wrongRole = startCli(["capture", connectUrl(), "-w", join(workDir, "member.pcapng"), "--token", member.token], {});
    expect(await wrongRole.exited).toBe(3);
    expect(wrongRole.output()).toMatch(/HTTP 403/);
  });
});

interface ParsedFamily {
  name: string;
  type: string;
  help: string;
  metrics: Array<{ labels?: Record<string, string>; value?: string }>;
}

function sample(families: ParsedFamily[], name: string, labels: Record<string, string>): number {
  const family = families.find((candidate) => candidate.name === name);
  if (family === undefined) throw new Error(`no metric family ${name}`);
  const found = family.metrics.find((metric) => Object.entries(labels).every(([key, value]) => metric.labels?.[key] === value));
  if (found?.value === undefined) throw new Error(`no sample of ${name} with ${JSON.stringify(labels)}`);
  return Number(found.value);
}

describe("GET /v1/segments/:name/metrics", () => {
  it("exposes per-port counters that match the traffic sent, parsed by a Prometheus text-format parser", async () => {
    const before = (await (await admin("GET", `/v1/segments/${SEGMENT}/ports`)).json()) as { ports: Array<{ portId: number; counters: { rxFrames: number; txFrames: number; rxBytes: number } }> };
    const countersOf = (portId: number) => before.ports.find((port) => port.portId === portId)?.counters ?? { rxFrames: 0, txFrames: 0, rxBytes: 0 };
    await pingAToB(5);

    const response = await admin("GET", `/v1/segments/${SEGMENT}/metrics`, undefined, METRICS_TOKEN);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const text = await response.text();
    const families = parsePrometheusTextFormat(text) as ParsedFamily[];
    for (const family of families) {
      expect(family.help.length, family.name).toBeGreaterThan(0);
      expect(["COUNTER", "GAUGE"]).toContain(family.type);
      if (family.type === "COUNTER") expect(family.name).toMatch(/_total$/);
    }
    const a = { segment: SEGMENT, port: String(hostA.portId), kind: "member", mode: "descriptor" };
    const b = { segment: SEGMENT, port: String(hostB.portId), kind: "member", mode: "descriptor" };
    // The neighbour is cached: 5 echo requests from A, 5 replies from B, each 98 bytes (14 + 20 + 8 + 56).
    expect(sample(families, "edgelan_port_rx_frames_total", a)).toBe(countersOf(hostA.portId).rxFrames + 5);
    expect(sample(families, "edgelan_port_tx_frames_total", a)).toBe(countersOf(hostA.portId).txFrames + 5);
    expect(sample(families, "edgelan_port_rx_frames_total", b)).toBe(countersOf(hostB.portId).rxFrames + 5);
    expect(sample(families, "edgelan_port_rx_bytes_total", b)).toBe(countersOf(hostB.portId).rxBytes + 5 * 98);
    expect(sample(families, "edgelan_port_drops_total", { ...a, reason: "rx-queue-full" })).toBe(0);
    expect(sample(families, "edgelan_port_queued_frames", a)).toBe(0);
    expect(sample(families, "edgelan_port_rx_credits", a)).toBeGreaterThan(0);
    expect(sample(families, "edgelan_ports", { segment: SEGMENT, kind: "member", mode: "descriptor" })).toBe(2);
    expect(sample(families, "edgelan_ports", { segment: SEGMENT, kind: "monitor", mode: "descriptor" })).toBe(0);
    expect(sample(families, "edgelan_fdb_entries", { segment: SEGMENT, type: "static" })).toBe(2);
    // Exposed as the admin API reports it (the instance that created the segment is not counted there today).
    expect(sample(families, "edgelan_segment_instance_starts_total", { segment: SEGMENT })).toBeGreaterThanOrEqual(0);
    // Four captures joined and left in the tests above; the two hosts joined once each.
    expect(sample(families, "edgelan_segment_ports_accepted_total", { segment: SEGMENT })).toBeGreaterThanOrEqual(5);
  });

  it("admits the admin token and the metrics token, refuses anything else; the metrics token reads nothing else", async () => {
    expect((await admin("GET", `/v1/segments/${SEGMENT}/metrics`)).status).toBe(200);
    const wrong = await admin("GET", `/v1/segments/${SEGMENT}/metrics`, undefined, "not-a-token");
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: string }).error).toBe("metrics-token-invalid");
    const none = await fetch(`${relay.baseUrl}/v1/segments/${SEGMENT}/metrics`);
    expect(none.status).toBe(401);
    expect((await admin("GET", `/v1/segments/${SEGMENT}`, undefined, METRICS_TOKEN)).status).toBe(401);
    expect((await admin("GET", "/v1/segments/nowhere/metrics", undefined, METRICS_TOKEN)).status).toBe(404);
  });
});

describe("edgelan top", () => {
  /** A tmux server of this test's own (its socket name is unique per process), removed at the end. */
  const tmuxSocket = `edgelan-observe-${process.pid}`;
  const tmux = (...args: string[]): string => execFileSync("tmux", ["-L", tmuxSocket, ...args], { encoding: "utf8" });

  afterAll(() => {
    try {
      tmux("kill-server");
    } catch {
      // Not started or already gone.
    }
  });

  it.skipIf(!hasTool("tmux", "-V"))("shows live rates per port on a terminal (tmux), quits on q and restores the terminal", async () => {
    const command = `echo before-top; EDGELAN_ADMIN_TOKEN=${ADMIN} ${process.execPath} ${CLI} top ${SEGMENT} --relay ${relay.baseUrl}; echo exit=$?; sleep 120`;
    tmux("new-session", "-d", "-s", "top", "-x", "200", "-y", "30", "sh", "-c", command);
    const screen = (): string => tmux("capture-pane", "-p", "-t", "top");
    const rowOf = (portId: number): string[] | undefined => screen().split("\n").map((line) => line.trim().split(/\s+/)).find((cells) => cells[0] === String(portId));
    await waitFor(() => rowOf(hostA.portId) !== undefined && rowOf(hostB.portId) !== undefined, "both ports on the screen");
    expect(screen()).toMatch(/PORT\s+KIND\s+MODE\s+MACS\s+REMOTE\s+RX\/s\s+TX\/s/);
    expect(rowOf(hostA.portId)?.slice(1, 4)).toEqual(["member", "desc", formatMac(hostA.mac)]);

    // Keep pinging until a refresh shows A sending (a bounded loop: at most 30 s of pings).
    let moving = false;
    const deadline = Date.now() + 30_000;
    while (!moving && Date.now() < deadline) {
      await hostA.host.ping("10.9.0.2", { count: 10, intervalMs: 50, timeoutMs: 5_000 });
      const rxPerSecond = Number(rowOf(hostA.portId)?.[5]);
      moving = Number.isFinite(rxPerSecond) && rxPerSecond > 0;
    }
    expect(moving).toBe(true);
    expect(screen()).toMatch(/^TOTAL\s+\d+/m);

    tmux("send-keys", "-t", "top", "q");
    await waitFor(() => screen().includes("exit=0"), "top to quit");
    // Back on the normal screen: what was there before is visible, the table is gone.
    expect(screen()).toContain("before-top");
    expect(screen()).not.toContain("PORT");
  });

  it("prints plain tables without escape codes when stdout is not a terminal", async () => {
    const top = startCli(["top", SEGMENT, "--relay", relay.baseUrl, "--count", "2", "--interval", "200"], { EDGELAN_ADMIN_TOKEN: ADMIN });
    expect(await top.exited).toBe(0);
    const output = top.output();
    expect(output).not.toContain("\x1b");
    expect(output.match(/^edgelan top — segment seen/gm)).toHaveLength(2);
    expect(output).toMatch(new RegExp(`^${hostA.portId}\\s+member\\s+desc\\s+${formatMac(hostA.mac)}`, "m"));
    expect(output).toMatch(/^TOTAL/m);
  });

  it("says why when the admin token is wrong (exit 3)", async () => {
    const top = startCli(["top", SEGMENT, "--relay", relay.baseUrl, "--count", "1"], { EDGELAN_ADMIN_TOKEN: "wrong" });
    expect(await top.exited).toBe(3);
    expect(top.output()).toMatch(/admin-token-invalid/);
  });
});
