// The WebSocket surface the session needs, and the browser's own socket as the default factory.

/** The subset of the WebSocket API the session needs; both `ws` and browsers provide it. */
export interface SocketLike {
  binaryType: string;
  readonly protocol: string;
  readyState: number;
  send(data: Uint8Array | string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string; httpStatus?: number }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  /**
   * True when `send()` has copied the bytes before it returns (Node's `ws` with a non-zero mask
   * masks into a fresh buffer). The session then hands over a view of its encoder's buffer
   * instead of a copy of its own; anything else gets an owned copy.
   */
  readonly copiesOnSend?: boolean;
}

/** Opens a socket; Node callers pass one that can also set headers. */
export type SocketFactory = (url: string, protocols: string[], headers: Record<string, string>) => SocketLike;

/** WebSocket.OPEN. */
export const SOCKET_OPEN = 1;

/** The browser's (or Node 22's) global WebSocket. */
export function browserSocket(url: string, protocols: string[]): SocketLike {
  const Global = (globalThis as unknown as { WebSocket?: new (url: string, protocols: string[]) => SocketLike }).WebSocket;
  if (Global === undefined) throw new Error("no global WebSocket here: pass socketFactory (for example one built on the `ws` package)");
  return new Global(url, protocols);
}
