// Sockets on the fast local path (client/local-fast-path.ts). Each connection is tried on
// workerd's own port; when nothing listens there any more (wrangler reloaded the worker, so
// workerd moved), the same attempt is made through wrangler dev's proxy before the session
// hears anything, so even a command's first connection, which may not be retried, succeeds.
// Whatever else goes wrong on the direct port makes the path forget it until a new look-up.
import type WebSocket from "ws";
import type { LocalFastPath } from "./local-fast-path.ts";
import { nodeSocketFactory } from "./node-socket.ts";
import type { SocketFactory, SocketLike } from "./session.ts";

/** Connection errors that mean nothing serves the direct port any more, while the proxy may. */
const MOVED_ERRORS: ReadonlySet<string> = new Set(["ECONNREFUSED", "ECONNRESET"]);

/** Opens edgelan tunnels from Node on the fast local path where there is one (see the module comment). */
export function fastPathSocketFactory(path: LocalFastPath): SocketFactory {
  return (url, protocols, headers) => {
    const direct = path.rewrite(url);
    if (direct === url) return nodeSocketFactory(url, protocols, headers);
    return new FastPathSocket(path, direct, url, protocols, headers);
  };
}

/**
 * One tunnel that starts on the direct port and may move to the proxy before it opens. The session
 * sees one socket: its handlers hear the socket in use, never the abandoned direct attempt.
 */
class FastPathSocket implements SocketLike {
  onopen: SocketLike["onopen"] = null;
  onmessage: SocketLike["onmessage"] = null;
  onclose: SocketLike["onclose"] = null;
  onerror: SocketLike["onerror"] = null;
  /** Both sockets come from nodeSocketFactory, whose send() copies. */
  readonly copiesOnSend = true;
  private inner: WebSocket;
  private opened = false;
  private closedByUs = false;

  constructor(
    private readonly path: LocalFastPath,
    directUrl: string,
    private readonly proxyUrl: string,
    private readonly protocols: string[],
    private readonly headers: Record<string, string>,
  ) {
    this.inner = this.open(directUrl, true);
  }

  /** The URL of the socket in use (the direct port, or the proxy after a fallback). */
  get url(): string {
    return this.inner.url;
  }

  get protocol(): string {
    return this.inner.protocol;
  }

  get readyState(): number {
    return this.inner.readyState;
  }

  get binaryType(): string {
    return this.inner.binaryType;
  }

  set binaryType(type: string) {
    this.inner.binaryType = type as WebSocket["binaryType"];
  }

  send(data: Uint8Array | string): void {
    this.inner.send(data);
  }

  close(code?: number, reason?: string): void {
    this.closedByUs = true;
    this.inner.close(code, reason);
  }

  private open(url: string, direct: boolean): WebSocket {
    const ws = nodeSocketFactory(url, this.protocols, this.headers) as unknown as WebSocket;
    const inUse = (): boolean => ws === this.inner;
    ws.onopen = (event) => {
      if (!inUse()) return;
      this.opened = true;
      this.onopen?.(event);
    };
    ws.onmessage = (event) => {
      if (inUse()) this.onmessage?.(event);
    };
    ws.onerror = (event) => {
      if (!inUse()) return;
      if (direct && !this.opened && !this.closedByUs && MOVED_ERRORS.has(errorCode(event.error))) this.fallBack();
      else this.onerror?.(event);
    };
    // nodeSocketFactory calls this with an httpStatus when the upgrade is refused (then the worker did answer).
    (ws as unknown as SocketLike).onclose = (event) => {
      if (!inUse()) return;
      if (direct && !this.closedByUs && event.httpStatus === undefined) this.path.forget();
      this.onclose?.(event);
    };
    return ws;
  }

  /** Nothing listens on the direct port: the path forgets it, and the proxy gets the same attempt. */
  private fallBack(): void {
    this.path.forget();
    const binaryType = this.inner.binaryType;
    this.inner = this.open(this.proxyUrl, false);
    this.inner.binaryType = binaryType;
  }
}

/** The `code` of a Node system error (ECONNREFUSED, …), or "". */
function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "";
}
