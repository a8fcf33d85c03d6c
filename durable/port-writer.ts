import type { PortChange, PortSink } from "../datapath/switch-port.ts";
import type { PortAttachment, PortRuntime } from "./port.ts";

/**
 * How long a counters-only change may wait for its attachment write. Only hibernation reads these
 * writes back, and it needs 10 s without events and no pending timer, so a second loses nothing;
 * a shorter delay made a storm (every port's drop counters changing per message) cost a structured
 * clone per port every few tens of milliseconds.
 */
const COUNTER_WRITE_DELAY_MS = 1000;

/**
 * The platform side of each port: the switch's PortSink on a hibernatable WebSocket.
 * Sends owned bytes, and writes the port's attachment: at the end of the event
 * when credits, queue, MACs, filter or phase changed; within COUNTER_WRITE_DELAY_MS
 * when only counters (or held completions) changed, so a busy port costs one
 * structured clone per interval instead of one per message.
 *
 * Counters stay exact across hibernation: the runtime hibernates an object only
 * after 10 s without events and only while no setTimeout callback is pending, so
 * a pending write is always done first. Any other eviction (deploy, crash, reset)
 * closes the sockets, and their attachments die with them.
 */
export class PortWriter {
  private readonly pending = new Set<PortRuntime>();
  private timer: ReturnType<typeof setTimeout> | null = null;

  /**
   * @param isLive whether the runtime's socket is still a port of the segment
   * @param evict closes a port the switch removed (its MAC's token holder arrived, or it flooded)
   */
  constructor(
    private readonly isLive: (runtime: PortRuntime) => boolean,
    private readonly evict: (runtime: PortRuntime, code: number, reason: string) => void,
  ) {}

  /** The sink for a socket whose runtime `runtime()` returns once it exists. */
  sinkFor(ws: WebSocket, runtime: () => PortRuntime | undefined): PortSink {
    return {
      send: (bytes) => sendQuietly(ws, bytes),
      changed: (change: PortChange) => {
        const target = runtime();
        if (target !== undefined) this.changed(target, change);
      },
      evicted: (code, reason) => {
        const target = runtime();
        if (target !== undefined) this.evict(target, code, reason);
      },
    };
  }

  /** Writes now ("state") or within the delay ("counters"). */
  changed(runtime: PortRuntime, change: PortChange): void {
    if (change === "state") {
      this.persist(runtime);
      return;
    }
    if (this.pending.has(runtime)) return;
    this.pending.add(runtime);
    this.timer ??= setTimeout(() => this.writeDeferred(), COUNTER_WRITE_DELAY_MS);
  }

  /** Writes the port's state into its socket attachment so it survives hibernation. */
  persist(runtime: PortRuntime): void {
    this.pending.delete(runtime);
    runtime.attachment.port = runtime.port.snapshot();
    writeAttachment(runtime.ws, runtime.attachment);
  }

  private writeDeferred(): void {
    this.timer = null;
    for (const runtime of this.pending) {
      if (this.isLive(runtime)) this.persist(runtime);
    }
    this.pending.clear();
  }
}

/** Stores an attachment, ignoring a socket that is gone. */
export function writeAttachment(ws: WebSocket, attachment: PortAttachment): void {
  try {
    ws.serializeAttachment(attachment);
  } catch {
    // The socket is gone; nothing left to keep.
  }
}

/** Sends bytes; false when the socket refuses (it is closing, and its close event removes the port). */
function sendQuietly(ws: WebSocket, bytes: Uint8Array): boolean {
  try {
    ws.send(bytes);
    return true;
  } catch {
    return false;
  }
}

/** Closes a socket, ignoring one that is already closing. */
export function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason.slice(0, 120));
  } catch {
    // Already closing.
  }
}
