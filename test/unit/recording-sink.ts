// A PortSink for tests of the switch in Node: a descriptor port's messages decoded, a raw port's frames copied.
import type { PortSink } from "../../datapath/switch-port.ts";
import { decodeMessage } from "../../datapath/tunnel/codec.ts";
import type { TunnelRecord } from "../../datapath/tunnel/records.ts";

export class RecordingSink implements PortSink {
  /** Decoded messages (descriptor ports). */
  readonly messages: TunnelRecord[][] = [];
  /** Frames, one per message (raw ports). */
  readonly frames: Uint8Array[] = [];

  constructor(private readonly descriptor = false) {}

  send(bytes: Uint8Array): boolean {
    if (!this.descriptor) {
      this.frames.push(bytes.slice());
      return true;
    }
    const decoded = decodeMessage(bytes);
    if (!decoded.ok) throw new Error(decoded.error.message);
    this.messages.push(decoded.value);
    return true;
  }

  changed(): void {}
  evicted(): void {}
}
