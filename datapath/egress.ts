/**
 * Egress: one frame to one port, through what the port negotiated and posted.
 * A port whose limits are narrower than the segment's (no LargeFrames, no Vlan)
 * does not get frames it could not have sent either, counted as it would be on
 * ingress (`oversize`, `malformed`). A descriptor port takes the frame with a
 * credit, queues it, or drops it with a counted reason; a raw port gets it as one
 * message; a service gets a call. `tx` counts frames actually handed over.
 */
import { joinBytes } from "./bytes.ts";
import { countDrop, DropReason } from "./counters.ts";
import { ETH_TYPE, maxFrameSizeFor, TPID_8021Q } from "./ethernet.ts";
import type { SwitchPort } from "./switch-port.ts";
import { RxFlag, VNET_HEADER_BYTES } from "./tunnel/constants.ts";

/**
 * Delivers `frame` to `port` with RX `flags`; `exempt`: a super-frame passed as is (not bound by frame limits).
 * `prefix`: bytes the port gets before `frame` (a super-frame's virtio-net header), written into the RX
 * record beside it, so a frame that is dropped, or sent at once, is never joined into a new buffer.
 */
export function deliverFrame(port: SwitchPort, frame: Uint8Array, flags: number, segmentMax: number, exempt: boolean, services: ServiceCall, prefix?: Uint8Array): void {
  if (port.restricted && !exempt) {
    const refused = refusal(port, frame, segmentMax);
    if (refused !== 0) {
      countDrop(port.state.counters, refused);
      port.touch("counters");
      return;
    }
  }
  if (port.mode === "descriptor") {
    deliverDescriptor(port, frame, flags, prefix);
    return;
  }
  const whole = prefix === undefined ? frame : joinBytes(prefix, frame);
  if (port.mode === "raw") deliverRaw(port, whole, services);
  else if (port.mode === "trunk") services.trunk(port, whole, flags);
  else services.deliver(port, whole);
}

/** What egress needs from the switch: calls into a service port (the switch bounds what it emits) and the raw egress bound. */
export interface ServiceCall {
  deliver(port: SwitchPort, frame: Uint8Array): void;
  /** A frame (RX flags: Flooded, Mirrored = mirror only, VnetHeader) for a trunk to another cell (docs/cells.md §4.4). */
  trunk(port: SwitchPort, frame: Uint8Array, flags: number): void;
  /** Whether a raw port may be sent `bytes` more now (raw-egress.ts); takes them when it may. */
  admitRaw(port: SwitchPort, bytes: number): boolean;
}

/**
 * Why a port that lacks LargeFrames or Vlan cannot take `frame`, or 0: a frame above the port's
 * largest is `rx-buffer-too-small` (an egress reason: the receiver cannot hold it; `oversize` is the
 * sender's), a tagged frame to a port without Vlan is `malformed` for that port (protocol.md §10).
 */
function refusal(port: SwitchPort, frame: Uint8Array, segmentMax: number): DropReason | 0 {
  const tagged = frame.length >= ETH_TYPE + 2 && frame[ETH_TYPE] === TPID_8021Q >> 8 && frame[ETH_TYPE + 1] === (TPID_8021Q & 0xff);
  if (tagged && !port.vlan) return DropReason.Malformed;
  return frame.length > maxFrameSizeFor(port.maxFrameSize(segmentMax), tagged) ? DropReason.RxBufferTooSmall : 0;
}

/** Counts one frame handed to the port (its Ethernet bytes: a virtio-net header is never counted). */
export function countTx(port: SwitchPort, frame: Uint8Array, flags: number): void {
  countTxBytes(port, frame.length, flags);
}

/** countTx for a frame of `length` bytes (its virtio-net header included when `flags` says so). */
function countTxBytes(port: SwitchPort, length: number, flags: number): void {
  const counters = port.state.counters;
  counters.txFrames++;
  counters.txBytes += (flags & RxFlag.VnetHeader) === 0 ? length : length - VNET_HEADER_BYTES;
}

/** A credit takes it now (an RX record), or it waits in the bounded queue, or it is dropped and counted. */
function deliverDescriptor(port: SwitchPort, frame: Uint8Array, flags: number, prefix: Uint8Array | undefined): void {
  const ledger = port.ledger;
  if (ledger === null) return;
  const verdict = ledger.offer(frame, flags, prefix);
  if (verdict === "delivered-now") {
    (port.output as NonNullable<SwitchPort["output"]>).addRx(flags, frame, prefix);
    countTxBytes(port, frame.length + (prefix?.length ?? 0), flags);
  } else if (verdict !== "queued") {
    // A drop leaves credits and queue as they were: only counters changed, which the platform may write
    // later. (Marking it a state change made a broadcast storm rewrite every full port's state per message.)
    countDrop(port.state.counters, verdict);
    port.touch("counters");
    return;
  }
  port.touch("state");
}

/**
 * One frame per message, sent at once (the runtime's socket buffer is the queue) within the raw egress
 * bound (else rx-queue-full); a refused send counts as flushed.
 */
function deliverRaw(port: SwitchPort, frame: Uint8Array, services: ServiceCall): void {
  if (!services.admitRaw(port, frame.length)) countDrop(port.state.counters, DropReason.RxQueueFull);
  else if (port.sink.send(frame)) countTx(port, frame, 0);
  else countDrop(port.state.counters, DropReason.Flushed);
  port.touch("counters");
}
