/**
 * stdio — a VDE stream cable: each Ethernet frame is a 2-byte big-endian length
 * followed by the frame, on stdin (from the guest side) and stdout (towards it).
 * That is the format `vde_plug` speaks on its standard streams, so `dpipe` can
 * cable a VDE switch (or anything vde_plug reaches: tap://, vxvde://, …) into a
 * segment:
 *
 *   dpipe vde_plug /tmp/vde.ctl = edgelan pipe wss://relay.example/s/lab
 *
 * Everything else the process prints must go to stderr. The end of stdin is
 * the cable being unplugged: the backend closes without an error.
 */
import type { StdioOptions, StreamOptions } from "../backend.ts";
import { FramedStreamBackend } from "./framing.ts";

/** Largest frame a 2-byte length can carry. */
export const STDIO_MAX_FRAME_SIZE = 0xffff;

export class StdioBackend extends FramedStreamBackend {
  constructor(options: StdioOptions & StreamOptions = {}) {
    super("stdio", options.input ?? process.stdin, options.output ?? process.stdout, {
      headerBytes: 2,
      maxFrameSize: Math.min(options.maxFrameSize ?? STDIO_MAX_FRAME_SIZE, STDIO_MAX_FRAME_SIZE),
      maxQueuedBytes: options.maxQueuedBytes,
    });
  }
}

/** The registry's opener for "stdio". */
export async function openStdio(options: StdioOptions & StreamOptions = {}): Promise<StdioBackend> {
  return new StdioBackend(options);
}
