// The processes of this machine as /proc shows them, for benchmarks that watch the relay's
// processes (CPU time, RSS): one scan, shared by the CPU sampler and the hostile bench.
import { readdirSync, readFileSync } from "node:fs";

export interface ProcessInfo {
  pid: number;
  /** The command name from /proc/PID/stat. */
  name: string;
  /** Process group id. */
  pgid: number;
  cmdline: string[];
}

/** Every process readable now; processes that exit during the scan are skipped. */
export function listProcesses(): ProcessInfo[] {
  const found: ProcessInfo[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const name = stat.slice(stat.indexOf("(") + 1, close);
      const fields = stat.slice(close + 2).split(" ");
      found.push({ pid: Number(entry), name, pgid: Number(fields[2]), cmdline: readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0") });
    } catch {
      // The process went away.
    }
  }
  return found;
}
