// The fast local path: a connect URL on 127.0.0.1 that `wrangler dev` (or `npm start`)
// serves through its proxy is opened on workerd's own port instead, skipping the proxy's
// two loopback crossings each way (bench:netns: shorter pings, more TCP; bench:floor:
// 70–100 µs per round trip). workerd moves to a new port whenever wrangler reloads the
// worker, and that closes every socket; a connection attempt that fails on the direct
// port goes through the proxy instead, and the port is looked up again for later ones.
//
// The CLI's first connection fails for good when it cannot reach the relay (exit 4), so a reload in
// the milliseconds between the look-up (which checked /healthz on the port) and that first connection
// ends the command; running it again takes the new port.
//
// Only workerd's own process tree can name the port: the finder takes the workerd
// listening on the URL's port and another workerd of the same process group answering
// /healthz (scripts/workerd-port.mjs), so no other local user can redirect a client.

/** Finds workerd's own port behind the proxy on `proxyPort`, or null. */
export type DirectPortFinder = (proxyPort: number) => Promise<number | null>;

/** `EDGELAN_FAST_PATH=off` keeps every connection on the URL as given. */
export const FAST_PATH_ENV = "EDGELAN_FAST_PATH";

export class LocalFastPath {
  private direct: number | null = null;
  private lookup: Promise<void> | null = null;

  private constructor(private readonly proxyPort: number, private readonly find: DirectPortFinder) {}

  /**
   * The fast path for `url`, with its first look-up done, or null when the URL cannot have one: not
   * `ws:` to 127.0.0.1 or localhost with an explicit port, or `EDGELAN_FAST_PATH=off`.
   */
  static async forUrl(url: string, find: DirectPortFinder, env: Record<string, string | undefined> = process.env): Promise<LocalFastPath | null> {
    if (env[FAST_PATH_ENV] === "off") return null;
    const proxyPort = localProxyPort(url);
    if (proxyPort === null) return null;
    const path = new LocalFastPath(proxyPort, find);
    await path.refresh();
    return path;
  }

  /** workerd's own port as last found, or null (connections then go through the proxy). */
  get directPort(): number | null {
    return this.direct;
  }

  /** `url` with the proxy's port replaced by workerd's own, or `url` itself when there is none. */
  rewrite(url: string): string {
    if (this.direct === null) return url;
    const parsed = new URL(url);
    if (Number(parsed.port) !== this.proxyPort) return url;
    // workerd listens on 127.0.0.1 only (localhost may resolve to ::1 first).
    parsed.hostname = "127.0.0.1";
    parsed.port = String(this.direct);
    return parsed.href;
  }

  /** A connection on the direct port closed before it opened: the next ones use the proxy until a new look-up. */
  failed(): void {
    this.direct = null;
    void this.refresh();
  }

  /** Looks the port up again (one look-up at a time). */
  refresh(): Promise<void> {
    this.lookup ??= this.find(this.proxyPort)
      .then((port) => {
        this.direct = port === this.proxyPort ? null : port;
      }, () => {
        this.direct = null;
      })
      .finally(() => {
        this.lookup = null;
      });
    return this.lookup;
  }
}

/** The port of a `ws:` URL on 127.0.0.1 or localhost, or null. */
export function localProxyPort(url: string): number | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (parsed.protocol !== "ws:" || (parsed.hostname !== "127.0.0.1" && parsed.hostname !== "localhost") || parsed.port === "") return null;
  return Number(parsed.port);
}
