// Real guests for end-to-end tests and benchmarks: network namespaces this
// process creates (and deletes), TAP devices attached by the real `edgelan join`
// CLI, and commands run inside the namespaces. Everything started is tracked
// and stopped by PID; traffic stays inside the namespaces.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..", "..");
const CLI = join(ROOT, "bin", "edgelan.mjs");

/** Why real-guest tests cannot run here, or null when they can (root, /dev/net/tun, iproute2, the TAP addon). */
export function guestSkipReason(): string | null {
  if (process.getuid?.() !== 0) return "needs root (network namespaces and TAP devices); CI runs as root";
  if (!existsSync("/dev/net/tun")) return "needs /dev/net/tun";
  if (!commandExists("ip")) return "needs iproute2 (`ip`)";
  if (!existsSync(join(ROOT, "client", "native", "build", "Release", "edgelan_tap.node"))) return "the TAP addon is not built (node scripts/build-native.mjs)";
  return null;
}

/** Whether an executable is on PATH. */
export function commandExists(name: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Runs a command and returns its stdout; throws with stderr on failure. */
export function run(command: string, args: string[], timeoutMs = 30_000): string {
  return execFileSync(command, args, { encoding: "utf8", timeout: timeoutMs, stdio: ["ignore", "pipe", "pipe"] });
}

/** A background process with its output kept for diagnostics. */
export interface Background {
  readonly child: ChildProcess;
  output(): string;
  /** Resolves with the exit code once it exits. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts a process in the background (own process group, so its children stop with it; SIGKILL after 5 s). */
export function background(command: string, args: string[], env: NodeJS.ProcessEnv = process.env, cwd?: string): Background {
  const child = spawn(command, args, { detached: true, stdio: ["ignore", "pipe", "pipe"], env, cwd });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child, exited, output: () => output,
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        return;
      }
      const timer = setTimeout(() => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
        } catch {
          // Gone.
        }
      }, 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** What the tests read from an iperf3 JSON report. */
export interface IperfReport {
  error?: string;
  end?: { sum_received?: { bits_per_second: number; bytes: number } };
}

/** Network namespaces created by this process, with a unique prefix so parallel runs never collide. */
export class Namespaces {
  private readonly created: string[] = [];
  private readonly processes: Background[] = [];
  private counter = 0;

  constructor(private readonly prefix = `el${process.pid % 100000}`) {}

  /** Creates a namespace with loopback up; returns its name. */
  create(label: string): string {
    const name = `${this.prefix}-${label}-${this.counter++}`;
    run("ip", ["netns", "add", name]);
    this.created.push(name);
    run("ip", ["-n", name, "link", "set", "lo", "up"]);
    return name;
  }

  /** Runs a command inside a namespace. */
  exec(ns: string, command: string, args: string[], timeoutMs = 30_000): string {
    return run("ip", ["netns", "exec", ns, command, ...args], timeoutMs);
  }

  /** Starts a background process inside a namespace; it is stopped by cleanup(). */
  spawn(ns: string, command: string, args: string[]): Background {
    return this.track(background("ip", ["netns", "exec", ns, command, ...args]));
  }

  /** Starts `edgelan join` for a TAP named `tap` inside `ns`; it is stopped by cleanup(). */
  join(ns: string, url: string, options: { tap?: string; mac: string; mtu?: number; extra?: string[] }): Background {
    const args = [CLI, "join", url, "--tap", options.tap ?? "elt0", "--netns", ns, "--mac", options.mac, "--quiet"];
    if (options.mtu !== undefined) args.push("--mtu", String(options.mtu));
    return this.track(background(process.execPath, [...args, ...(options.extra ?? [])]));
  }

  /** Waits until `dev` exists in `ns` and is up, then gives it an address. */
  async address(ns: string, dev: string, cidr: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try {
        if (run("ip", ["-n", ns, "link", "show", dev]).includes("UP")) {
          run("ip", ["-n", ns, "addr", "add", cidr, "dev", dev]);
          return;
        }
      } catch {
        // Not there yet.
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`${dev} did not appear in ${ns} within ${timeoutMs} ms`);
  }

  /** Pings from `ns` until one reply arrives or `timeoutMs` passes; returns whether it did. */
  async reachable(ns: string, target: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (ping(this, ns, target, 1).received === 1) return true;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    return false;
  }

  /**
   * An iperf3 TCP run of `seconds` from `client` to a one-shot server at `address` in `server`;
   * returns iperf3's JSON report (or `error`). Bounded retries: the server may not listen yet.
   */
  async iperf(server: string, address: string, client: string, seconds: number): Promise<IperfReport> {
    const listener = this.spawn(server, "iperf3", ["-s", "-1", "-B", address]);
    let report: IperfReport | undefined;
    for (let attempt = 0; attempt < 20 && report?.end?.sum_received === undefined; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 250));
      try {
        report = JSON.parse(this.exec(client, "iperf3", ["-c", address, "-t", String(seconds), "-J"], 30_000)) as IperfReport;
      } catch (error) {
        report = { error: String((error as { stdout?: string }).stdout ?? error) };
      }
    }
    await listener.stop();
    return report ?? { error: "no report" };
  }

  /** Tracks a background process for cleanup. */
  track(process: Background): Background {
    this.processes.push(process);
    return process;
  }

  /** Stops every tracked process and deletes every namespace (and the devices in them). */
  async cleanup(): Promise<void> {
    await Promise.allSettled(this.processes.splice(0).map((p) => p.stop()));
    for (const name of this.created.splice(0)) {
      try {
        run("ip", ["netns", "del", name]);
      } catch {
        // Already gone.
      }
    }
  }
}

/** Pings from a namespace; returns the summary line's numbers. */
export function ping(namespaces: Namespaces, ns: string, target: string, count: number, intervalS = 0.2): { transmitted: number; received: number; rttsMs: number[] } {
  let output: string;
  try {
    output = namespaces.exec(ns, "ping", ["-n", "-c", String(count), "-i", String(intervalS), "-W", "2", target], (count * intervalS + 10) * 1000);
  } catch (error) {
    output = String((error as { stdout?: string }).stdout ?? "");
  }
  const summary = /(\d+) packets transmitted, (\d+) received/.exec(output);
  const rttsMs = [...output.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  return { transmitted: Number(summary?.[1] ?? 0), received: Number(summary?.[2] ?? 0), rttsMs };
}
