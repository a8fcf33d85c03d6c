/**
 * One port's TX batch as the segment switch takes it: ids, Ethernet frames and,
 * per frame, what the switch must know besides the bytes (a mark for the bridge,
 * the virtio-net header of a GSO super-frame, its software segments once cut).
 * Parallel arrays indexed by position in the batch, reused across batches, so a
 * plain batch costs two pushes per frame and nothing is keyed by object identity.
 */
import { FRAME_SUPER } from "./bridge.ts";
import { DropReason } from "./counters.ts";
import { checkOffload, isTrivialVnetHeader, parseVnetHeader, segmentFrame, VNET_HDR_LEN } from "./offload.ts";
import { TX_FLAGS_KNOWN, TxFlag } from "./tunnel/constants.ts";

const NONE = new Uint8Array(0);
const NOT_CUT: readonly Uint8Array[] = [];

/** Empties an array in place; pop() stays on V8's fast path where `length = 0` calls into the runtime. */
export function emptyArray(array: unknown[]): void {
  while (array.length > 0) array.pop();
}

export class TxBatch {
  /** TX ids (descriptor ports; unused for raw and service batches). */
  readonly ids: number[] = [];
  /** Ethernet frames (views into the received message; the header of a super-frame stripped). */
  readonly frames: Uint8Array[] = [];
  /** Per frame: 0 plain, FRAME_SUPER, or a DropReason decided before switching; read only when `marked` > 0. */
  readonly marks: number[] = [];
  /** Per frame: the 10 virtio-net header bytes of a super-frame, else empty. */
  readonly vnetHeaders: Uint8Array[] = [];
  /** Per frame: the software segments of a super-frame, cut once for every receiver without Gso. */
  private readonly segments: (readonly Uint8Array[])[] = [];
  /** Frames with a non-zero mark: 0 keeps the bridge on its fast path (no marks). */
  marked = 0;
  private gso = false;

  /** Frames in the batch. */
  get length(): number {
    return this.frames.length;
  }

  /** Starts a batch; `gso`: whether the sending port was granted Gso (VnetHeader TX flag). */
  begin(gso: boolean): void {
    emptyArray(this.ids);
    emptyArray(this.frames);
    if (this.marked > 0 || this.marks.length > 0) {
      emptyArray(this.marks);
      emptyArray(this.vnetHeaders);
      emptyArray(this.segments);
    }
    this.marked = 0;
    this.gso = gso;
  }

  /** Adds a frame that needs no descriptor checks (raw ports, services). */
  addFrame(frame: Uint8Array): void {
    this.frames.push(frame);
    if (this.marked > 0) this.mark(0, NONE);
  }

  /** Adds a frame with a mark of the bridge (FRAME_MIRROR_ONLY for a trunk's mirror copy). */
  addMarkedFrame(frame: Uint8Array, mark: number): void {
    this.ids.push(0);
    this.addMarked(frame, mark, NONE);
  }

  /**
   * Adds one TX descriptor. Flags other than a granted VnetHeader mark it Malformed (never switched);
   * a trivial virtio-net header is stripped; a valid offload request becomes a super-frame; an invalid one is Malformed.
   */
  addTx(id: number, flags: number, body: Uint8Array): void {
    this.ids.push(id);
    if ((flags & ~TX_FLAGS_KNOWN) === 0) {
      this.addFrame(body);
      return;
    }
    const header = flags === TxFlag.VnetHeader && this.gso ? parseVnetHeader(body) : null;
    const frame = body.subarray(VNET_HDR_LEN);
    if (header === null || !header.ok || !checkOffload(header.value, frame).ok) {
      this.addMarked(body, DropReason.Malformed, NONE);
    } else if (isTrivialVnetHeader(body)) {
      this.addFrame(frame);
    } else {
      this.addMarked(frame, FRAME_SUPER, body.subarray(0, VNET_HDR_LEN));
    }
  }

  /** The virtio-net header bytes of frame `index` if it is a super-frame, else null. */
  superHeader(index: number): Uint8Array | null {
    if (this.marked === 0) return null;
    const header = this.vnetHeaders[index] as Uint8Array;
    return header.length === 0 ? null : header;
  }

  /**
   * The standard frames super-frame `index` becomes for a receiver without Gso (checksums completed,
   * GSO cut into segments); computed once per batch. Empty if it cannot be (checkOffload accepted it at
   * ingress, so that would be a bug).
   */
  segmentsOf(index: number): readonly Uint8Array[] {
    const cached = this.segments[index] as readonly Uint8Array[];
    if (cached !== NOT_CUT) return cached;
    const header = parseVnetHeader(this.vnetHeaders[index] as Uint8Array);
    const cut = header.ok ? segmentFrame(header.value, this.frames[index] as Uint8Array) : null;
    const segments = cut !== null && cut.ok ? cut.value : [];
    this.segments[index] = segments;
    return segments;
  }

  private addMarked(frame: Uint8Array, mark: number, vnetHeader: Uint8Array): void {
    if (this.marked === 0) {
      // First special frame: back-fill the metadata of the plain frames before it.
      for (let i = this.marks.length; i < this.frames.length; i++) {
        this.marks.push(0);
        this.vnetHeaders.push(NONE);
        this.segments.push(NOT_CUT);
      }
    }
    this.frames.push(frame);
    this.marked++;
    this.mark(mark, vnetHeader);
  }

  private mark(mark: number, vnetHeader: Uint8Array): void {
    this.marks.push(mark);
    this.vnetHeaders.push(vnetHeader);
    this.segments.push(NOT_CUT);
  }
}
