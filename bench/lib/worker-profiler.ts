// A CPU profile of the Worker (and its Durable Objects) under `wrangler dev`, through wrangler's
// inspector port (the DevTools protocol's Profiler domain): start, run something, stop, and the
// functions with the most self time. The full profile is written as a .cpuprofile file that Chrome
// DevTools or speedscope opens.
import { writeFileSync } from "node:fs";
import WebSocket from "ws";

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
}
export interface HotFunction {
  name: string;
  /** Share of all samples (idle and GC included) spent in the function itself. */
  selfShare: number;
}

/** Sampling interval: fine enough for sub-millisecond handlers, coarse enough not to slow the worker much. */
const SAMPLING_INTERVAL_US = 200;

export class WorkerProfiler {
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (result: unknown) => void; reject: (error: Error) => void }>();

  private constructor(private readonly ws: WebSocket) {
    ws.on("message", (data: Buffer) => {
      const message = JSON.parse(data.toString()) as { id?: number; result?: unknown; error?: { message: string } };
      if (message.id === undefined) return;
      const waiter = this.waiting.get(message.id);
      this.waiting.delete(message.id);
      if (message.error !== undefined) waiter?.reject(new Error(message.error.message));
      else waiter?.resolve(message.result);
    });
  }

  /** Connects to the first target wrangler's inspector lists on `inspectorPort`. */
  static async connect(inspectorPort: number): Promise<WorkerProfiler> {
    const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
    const url = targets[0]?.webSocketDebuggerUrl;
    if (url === undefined) throw new Error(`wrangler's inspector on port ${inspectorPort} lists no target`);
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    ws.on("error", () => undefined);
    return new WorkerProfiler(ws);
  }

  private call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  async start(intervalUs = SAMPLING_INTERVAL_US): Promise<void> {
    await this.call("Profiler.enable");
    await this.call("Profiler.setSamplingInterval", { interval: intervalUs });
    await this.call("Profiler.start");
  }

  /** Stops, writes the profile to `file` (unless null), and returns the `top` functions by self time. */
  async stop(file: string | null, top = 10): Promise<HotFunction[]> {
    const { profile } = (await this.call("Profiler.stop")) as { profile: Profile };
    if (file !== null) writeFileSync(file, JSON.stringify(profile));
    return hottest(profile, top);
  }

  close(): void {
    this.ws.terminate();
  }
}

/** Self time per function (summed over its call sites), largest first. */
function hottest(profile: Profile, top: number): HotFunction[] {
  const self = new Map<string, number>();
  let total = 0;
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    total += hits;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = `${functionName === "" ? "(anonymous)" : functionName}${url === "" ? "" : ` ${url.split("/").pop()}:${lineNumber + 1}`}`;
    self.set(name, (self.get(name) ?? 0) + hits);
  }
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, hits]) => ({ name, selfShare: Number((hits / Math.max(1, total)).toFixed(3)) }));
}
