/**
 * Length-prefixed Ethernet frames on a byte stream, the one implementation for
 * every stream backend: QEMU `-netdev stream`/`socket` (4-byte big-endian
 * length) and VDE stream cables on stdio (2-byte big-endian length).
 *
 * `LengthPrefixDecoder` is a push parser: partial headers and bodies across
 * chunks, many frames per chunk; frames wholly inside a chunk are views into it
 * (no copy), a frame split across chunks is assembled once. A zero length or a
 * length above the limit is a FramingError, after which the stream is unusable.
 *
 * `FramedStreamBackend` turns a readable + writable pair into a NetBackend:
 * one onFrames call per 'data' chunk, one write of one concatenated buffer per
 * send() batch, bounded write queue (beyond it batches are dropped and counted).
 */
import type { Readable, Writable } from "node:stream";
import {
  BackendError, type BackendCapabilities, type BackendStats, type NetBackend, type StreamOptions,
} from "../backend.ts";

export type HeaderBytes = 2 | 4;

export const DEFAULT_MAX_FRAME_SIZE = 65535;
export const DEFAULT_MAX_QUEUED_BYTES = 4 * 1024 * 1024;

export class FramingError extends BackendError {
  /** The offending length prefix. */
  readonly length: number;

  constructor(length: number, maxFrameSize: number) {
    super(
      "framing-error",
      length === 0
        ? "the peer sent a zero-length frame: the stream is not length-prefixed Ethernet (wrong protocol or lost sync)"
        : `the peer sent a ${length}-byte length prefix, above the ${maxFrameSize}-byte limit: the stream is not length-prefixed Ethernet (wrong protocol or lost sync)`,
    );
    this.length = length;
  }
}

export class LengthPrefixDecoder {
  readonly headerBytes: HeaderBytes;
  readonly maxFrameSize: number;
  private readonly header = new Uint8Array(4);
  private headerFill = 0;
  private body: Uint8Array | undefined;
  private bodyFill = 0;
  private failed: FramingError | undefined;

  constructor(headerBytes: HeaderBytes, maxFrameSize = DEFAULT_MAX_FRAME_SIZE) {
    const limit = headerBytes === 2 ? 0xffff : 0xffff_ffff;
    if (!Number.isInteger(maxFrameSize) || maxFrameSize < 1 || maxFrameSize > limit) {
      throw new RangeError(`maxFrameSize must be 1..${limit} for a ${headerBytes}-byte header (got ${maxFrameSize})`);
    }
    this.headerBytes = headerBytes;
    this.maxFrameSize = maxFrameSize;
  }

  /** Bytes of an unfinished frame (header or body) held between chunks. */
  get pendingBytes(): number {
    return this.headerFill + this.bodyFill;
  }

  /**
   * Parses one chunk, appending every completed frame to `out`. Returns the
   * FramingError that stopped parsing, if any (frames completed before the bad
   * prefix are still in `out`); once failed, every later call returns it again.
   */
  push(chunk: Uint8Array, out: Uint8Array[]): FramingError | undefined {
    if (this.failed !== undefined) return this.failed;
    let offset = 0;
    const end = chunk.length;
    while (offset < end) {
      if (this.body !== undefined) {
        const take = Math.min(this.body.length - this.bodyFill, end - offset);
        this.body.set(chunk.subarray(offset, offset + take), this.bodyFill);
        this.bodyFill += take;
        offset += take;
        if (this.bodyFill === this.body.length) {
          out.push(this.body);
          this.body = undefined;
          this.bodyFill = 0;
        }
        continue;
      }
      let length: number;
      if (this.headerFill === 0 && end - offset >= this.headerBytes) {
        length = this.readLength(chunk, offset);
        offset += this.headerBytes;
      } else {
        const take = Math.min(this.headerBytes - this.headerFill, end - offset);
        this.header.set(chunk.subarray(offset, offset + take), this.headerFill);
        this.headerFill += take;
        offset += take;
        if (this.headerFill < this.headerBytes) break;
        this.headerFill = 0;
        length = this.readLength(this.header, 0);
      }
      if (length === 0 || length > this.maxFrameSize) {
        this.failed = new FramingError(length, this.maxFrameSize);
        return this.failed;
      }
      if (end - offset >= length) {
        // Whole frame in this chunk: a plain Uint8Array view (even over a Buffer), no copy.
        out.push(new Uint8Array(chunk.buffer, chunk.byteOffset + offset, length));
        offset += length;
      } else {
        this.body = new Uint8Array(length);
        this.bodyFill = 0;
      }
    }
    return undefined;
  }

  private readLength(bytes: Uint8Array, at: number): number {
    const b0 = bytes[at] ?? 0;
    const b1 = bytes[at + 1] ?? 0;
    if (this.headerBytes === 2) return (b0 << 8) | b1;
    return (b0 * 0x100_0000) + (((bytes[at + 1] ?? 0) << 16) | ((bytes[at + 2] ?? 0) << 8) | (bytes[at + 3] ?? 0));
  }
}

/**
 * Encodes a batch into one buffer: header + frame, back to back. Frames that
 * are empty or longer than `maxFrameSize` are skipped and counted in `skipped`.
 */
export function encodeFrames(
  frames: readonly Uint8Array[], headerBytes: HeaderBytes, maxFrameSize = DEFAULT_MAX_FRAME_SIZE,
): { bytes: Uint8Array; encoded: number; skipped: number; frameBytes: number } {
  let total = 0;
  let encoded = 0;
  for (const frame of frames) {
    if (frame.length > 0 && frame.length <= maxFrameSize) {
      total += headerBytes + frame.length;
      encoded++;
    }
  }
  const bytes = Buffer.allocUnsafe(total);
  let offset = 0;
  for (const frame of frames) {
    const length = frame.length;
    if (length === 0 || length > maxFrameSize) continue;
    if (headerBytes === 2) {
      bytes[offset] = length >>> 8;
      bytes[offset + 1] = length & 0xff;
    } else {
      bytes.writeUInt32BE(length, offset);
    }
    bytes.set(frame, offset + headerBytes);
    offset += headerBytes + length;
  }
  return { bytes, encoded, skipped: frames.length - encoded, frameBytes: total - encoded * headerBytes };
}

export interface FramedStreamOptions extends StreamOptions {
  headerBytes: HeaderBytes;
  capabilities?: Partial<BackendCapabilities>;
  /** Called once after the backend closed (servers use it to forget the port). */
  onFinished?: () => void;
}

function newStats(): BackendStats {
  return { rxFrames: 0, rxBytes: 0, rxBatches: 0, rxErrors: 0, txFrames: 0, txBytes: 0, txDropped: 0, txErrors: 0 };
}

/** A NetBackend over a readable and a writable byte stream (the same object for a socket). */
export class FramedStreamBackend implements NetBackend {
  readonly name: string;
  readonly capabilities: BackendCapabilities;
  private readonly input: Readable;
  private readonly output: Writable;
  private readonly decoder: LengthPrefixDecoder;
  private readonly headerBytes: HeaderBytes;
  private readonly maxQueuedBytes: number;
  private readonly onFinished: (() => void) | undefined;
  /** True when input and output are one object (a socket). */
  private readonly duplex: boolean;
  private readonly counters = newStats();
  private frameHandler: ((frames: Uint8Array[]) => void) | undefined;
  private readonly closeHandlers: ((error?: Error) => void)[] = [];
  private reading = false;
  private closed = false;
  private closeError: Error | undefined;
  private closing: Promise<void> | undefined;

  constructor(name: string, input: Readable, output: Writable, options: FramedStreamOptions) {
    this.name = name;
    this.input = input;
    this.output = output;
    this.headerBytes = options.headerBytes;
    const maxFrameSize = options.maxFrameSize ?? (options.headerBytes === 2 ? 0xffff : DEFAULT_MAX_FRAME_SIZE);
    this.decoder = new LengthPrefixDecoder(options.headerBytes, maxFrameSize);
    this.maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.onFinished = options.onFinished;
    this.capabilities = Object.freeze({ maxFrameSize, multiPort: false, vnetHeader: false, ...options.capabilities });
    input.on("end", this.onEnd);
    input.on("error", this.onError);
    input.on("close", this.onStreamClose);
    this.duplex = (output as unknown) === (input as unknown);
    if (!this.duplex) output.on("error", this.onError);
  }

  send(frames: readonly Uint8Array[]): void {
    if (frames.length === 0) return;
    if (this.closed || this.output.destroyed || this.output.writableEnded) {
      this.counters.txDropped += frames.length;
      return;
    }
    if (this.output.writableLength > this.maxQueuedBytes) {
      // The guest is not reading: drop and count rather than buffer without bound.
      this.counters.txDropped += frames.length;
      return;
    }
    const { bytes, encoded, skipped, frameBytes } = encodeFrames(frames, this.headerBytes, this.capabilities.maxFrameSize);
    this.counters.txDropped += skipped;
    if (encoded === 0) return;
    this.output.write(bytes);
    this.counters.txFrames += encoded;
    this.counters.txBytes += frameBytes;
  }

  onFrames(handler: (frames: Uint8Array[]) => void): void {
    this.frameHandler = handler;
    if (this.reading || this.closed) return;
    this.reading = true;
    this.input.on("data", this.onData);
    this.input.resume();
  }

  onClose(handler: (error?: Error) => void): void {
    if (this.closed) {
      queueMicrotask(() => handler(this.closeError));
      return;
    }
    this.closeHandlers.push(handler);
  }

  close(): Promise<void> {
    return this.shutdown(undefined);
  }

  stats(): BackendStats {
    return { ...this.counters };
  }

  private readonly onData = (chunk: Buffer | string): void => {
    if (this.closed) return;
    const bytes = typeof chunk === "string" ? Buffer.from(chunk, "latin1") : chunk;
    const frames: Uint8Array[] = [];
    const error = this.decoder.push(bytes, frames);
    if (frames.length > 0) {
      this.counters.rxFrames += frames.length;
      for (const frame of frames) this.counters.rxBytes += frame.length;
      this.counters.rxBatches++;
      this.frameHandler?.(frames);
    }
    if (error !== undefined) {
      this.counters.rxErrors++;
      void this.shutdown(error, true);
    }
  };

  private readonly onEnd = (): void => {
    void this.shutdown(undefined);
  };

  private readonly onError = (error: Error): void => {
    const code = (error as Error & { code?: unknown }).code;
    // A peer that hangs up while we write is an ordinary end of the cable.
    if (code === "EPIPE" || code === "ECONNRESET") {
      void this.shutdown(undefined, true);
      return;
    }
    void this.shutdown(new BackendError("io-error", `${this.name}: ${error.message}`, { cause: error }), true);
  };

  private readonly onStreamClose = (): void => {
    void this.shutdown(undefined);
  };

  private shutdown(error: Error | undefined, abort = false): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.closed = true;
    this.closeError = error;
    this.frameHandler = undefined;
    this.input.off("data", this.onData);
    this.closing = this.release(abort).then(() => {
      for (const handler of this.closeHandlers.splice(0)) handler(error);
      this.onFinished?.();
    });
    return this.closing;
  }

  /** Ends the output (flushing what was written, bounded in time) and destroys the input. */
  private async release(abort: boolean): Promise<void> {
    const output = this.output;
    if (abort) {
      output.destroy();
    } else if (!output.destroyed && !output.writableFinished) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          output.destroy();
          resolve();
        }, 2_000);
        const done = (): void => {
          clearTimeout(timer);
          resolve();
        };
        output.once("finish", done);
        output.once("close", done);
        output.once("error", done);
        if (!output.writableEnded) output.end();
      });
    }
    if (!this.input.destroyed) this.input.destroy();
    if (!this.duplex && output !== process.stdout && output !== process.stderr && !output.destroyed) {
      output.destroy();
    }
  }
}
