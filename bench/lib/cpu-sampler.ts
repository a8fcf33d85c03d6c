// CPU accounting for benchmarks: this process, the whole machine, and every
// process of the relay's process group (wrangler dev and its two workerd), read
// from /proc, so a figure can be given per frame rather than per second.
import { readFileSync } from "node:fs";
import { listProcesses } from "./procfs.ts";

export interface CpuSample { wall: number; client: number; machine: number; procs: Map<number, number> }

const CLOCK_TICKS = 100;

export function groupOf(relayPort: number): { pgid: number; pids: Array<{ pid: number; name: string }> } | null {
  let pgid = -1;
  const all: Array<{ pid: number; pgid: number; name: string }> = [];
  for (const { pid, name, pgid: procPgid, cmdline } of listProcesses()) {
    // wrangler dev runs two workerd: the worker itself (with an inspector) and the proxy in front of it.
    const role = name !== "workerd" ? name : cmdline.some((arg) => arg.startsWith("--inspector-addr")) ? "workerd-worker" : "workerd-proxy";
    all.push({ pid, pgid: procPgid, name: role });
    const portAt = cmdline.indexOf("--port");
    if (cmdline.some((arg) => arg.endsWith("wrangler.js")) && portAt >= 0 && cmdline[portAt + 1] === String(relayPort)) pgid = procPgid;
  }
  if (pgid < 0) return null;
  return { pgid, pids: all.filter((p) => p.pgid === pgid).map(({ pid, name }) => ({ pid, name })) };
}

export function procCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** Busy CPU time of the whole machine (all processes, ours and everyone else's), in ms. */
function machineBusyMs(): number {
  try {
    const fields = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").trim().split(/\s+/).slice(1).map(Number);
    const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
    return ((total - (fields[3] ?? 0) - (fields[4] ?? 0)) * 1000) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

export function cpuSample(pids: readonly number[]): CpuSample {
  const usage = process.cpuUsage();
  return {
    wall: performance.now(), client: (usage.user + usage.system) / 1000, machine: machineBusyMs(),
    procs: new Map(pids.map((pid) => [pid, procCpuMs(pid)])),
  };
}

/** CPU share (1.0 = one core) of the client and each relay process between two samples. */
export function cpuShares(a: CpuSample, b: CpuSample, names: ReadonlyMap<number, string>): Record<string, number> {
  const wall = b.wall - a.wall;
  const shares: Record<string, number> = { machine: round((b.machine - a.machine) / wall, 2), client: round((b.client - a.client) / wall, 2) };
  for (const [pid, ms] of b.procs) shares[`${names.get(pid) ?? "?"}:${pid}`] = round((ms - (a.procs.get(pid) ?? ms)) / wall, 2);
  return shares;
}

/** `value` rounded to `digits` decimals. */
export function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
