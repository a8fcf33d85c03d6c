import type { PortChange, PortSink } from "../datapath/switch-port.ts";
import type { PortAttachment, PortRuntime } from "./port.ts";

/**
 * How long a change the switch reports may wait for its attachment write. Only hibernation reads these
 * writes back, and it needs 10 s without events and no pending timer, so a second loses nothing.
 * Writing at once cost a structured clone per delivered frame (a credit used) — about a sixth of
 * the worker's time in a ping — and in a storm one per listener per message.
 */
export const ATTACHMENT_WRITE_DELAY_MS = 1000;

/**
 * The platform side of each port: the switch's PortSink on a hibernatable WebSocket.
 * Sends owned bytes, and writes the port's attachment within ATTACHMENT_WRITE_DELAY_MS of
 * any change the switch reports (credits, queue, MACs, filter, counters, held completions),
 * so a busy port costs one structured clone per interval instead of one per message.
 * Joins, handshakes and token facts are written at once (`persist`).
 *
 * State stays exact across hibernation: the runtime hibernates an object only
 * after 10 s without events and only while no setTimeout callback is pending
 * (Cloudflare's Durable Object lifecycle), so a pending write is always done
 * first. Any other eviction (deploy, crash, reset) closes the sockets, and their
 * attachments die with them.
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

  /** Writes the port's attachment within the delay, whatever changed. */
  changed(runtime: PortRuntime, _change: PortChange): void {
    if (this.pending.has(runtime)) return;
    this.pending.add(runtime);
    this.timer ??= setTimeout(() => this.writeDeferred(), ATTACHMENT_WRITE_DELAY_MS);
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
