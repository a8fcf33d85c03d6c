// Wires a guest backend to a segment session: frames read from the guest in one
// event-loop turn go out as one batch; frames from the segment are written back.
import type { NetBackend } from "./backend.ts";
import { Session, type SessionOptions } from "./session.ts";
import { macKeyAt, isUsableUnicastMac, type MacKey } from "../datapath/mac.ts";
import { VNET_HDR_LEN } from "../datapath/offload.ts";

/** A backend joined to a segment: the session and the backend, and how to end both. */
export interface Attachment {
  readonly session: Session;
  readonly backend: NetBackend;
  close(): Promise<void>;
}

/**
 * Joins a backend to a segment. With `macs` given the session opens at once;
 * otherwise it opens on the guest's first frame and registers that frame's
 * source MAC (a QEMU VM or a VDE cable announces itself within a second).
 *
 * `onError` is called once per failure that ends the attachment: a fatal
 * session error (refused, 401/403, protocol error; the backend is then closed
 * too) or a backend that failed. Transient disconnects are not errors: the
 * session reconnects by itself. `onSession` sees the session as soon as it
 * exists (to watch its open and close events).
 */
export function attachBackend(
  backend: NetBackend, options: SessionOptions, onError: (error: Error) => void, onSession?: (session: Session) => void,
): Attachment {
  let session: Session | null = null;
  const held: Uint8Array[] = [];
  const open = (macs: MacKey[]): Session => {
    // A backend is a whole network stack: IPv6 neighbour discovery needs multicast delivered.
    const created = new Session({ filter: { promiscuous: false, allMulticast: true, multicast: [] }, ...options, macs, vnetHeader: backend.capabilities.vnetHeader });
    deliverToBackend(created, backend, onError);
    onSession?.(created);
    // A failed start() is the same error the "error" event reported; a close() before the WELCOME is no error.
    created.start().catch(() => undefined);
    return created;
  };
  if (options.macs !== undefined && options.macs.length > 0) session = open(options.macs);
  // With a virtio-net header the Ethernet frame (and its source MAC) starts 10 bytes in.
  const skip = backend.capabilities.vnetHeader ? VNET_HDR_LEN : 0;
  backend.onFrames((frames) => {
    if (session === null) {
      const first = frames.find((frame) => frame.length >= skip + 14 && isUsableUnicastMac(macKeyAt(frame, skip + 6)));
      if (first === undefined) return;
      session = open(options.kind === "bridge" || options.kind === "monitor" ? [] : [macKeyAt(first, skip + 6)]);
      for (const frame of frames) held.push(frame.slice());
      session.send(held.splice(0));
      return;
    }
    session.send(frames);
  });
  const attachment: Attachment = {
    get session(): Session {
      if (session === null) throw new Error("the guest has not sent a frame yet");
      return session;
    },
    backend,
    async close() {
      session?.close();
      await backend.close();
    },
  };
  backend.onClose((error) => {
    session?.close();
    if (error !== undefined) onError(error);
  });
  return attachment;
}

/** Frames from the segment go to the guest; a fatal session error ends the guest too. */
function deliverToBackend(session: Session, backend: NetBackend, onError: (error: Error) => void): void {
  session.on("frames", (frames) => backend.send(frames));
  session.on("error", (error) => {
    // The session will not reconnect: nothing would carry this guest's frames any more.
    onError(error);
    void backend.close();
  });
}

/**
 * Joins a backend to a session that is already open (the CLI's `join` opens the
 * session first, to size the TAP's MTU from the segment's WELCOME). Errors as in
 * attachBackend.
 */
export function attachSession(backend: NetBackend, session: Session, onError: (error: Error) => void): Attachment {
  deliverToBackend(session, backend, onError);
  backend.onFrames((frames) => session.send(frames));
  backend.onClose((error) => {
    session.close();
    if (error !== undefined) onError(error);
  });
  return {
    session,
    backend,
    async close() {
      session.close();
      await backend.close();
    },
  };
}
