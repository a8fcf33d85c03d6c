// The fast local path: a connect URL on 127.0.0.1 that `wrangler dev` (or `npm start`)
// serves through its proxy is opened on workerd's own port instead, skipping the proxy's
// two loopback crossings each way (bench:netns: shorter pings, more TCP; bench:floor:
// 70–100 µs per round trip). workerd moves to a new port whenever wrangler reloads the
// worker, and that closes every socket. So the port is trusted only until something goes
// wrong on it: a direct connection that cannot be made (client/fast-path-socket.ts makes the
// same attempt through the proxy at once) or that the far end closes makes the path forget
// the port and look it up again, and until a look-up finds workerd again connections go
// through the proxy. While no port is known, a new connection starts a look-up at most
// every LOOKUP_INTERVAL_MS.
//
// Only workerd's own process tree can name the port: the finder takes the proxy (the
// workerd whose entry socket was given the URL's port) and another workerd of the same
// process group answering /healthz (scripts/workerd-port.mjs), so no other local user can
// redirect a client. What remains is the window between a look-up and the connection it
// serves (milliseconds), in which a reload could free the port for another process.

/** Finds workerd's own port behind the proxy on `proxyPort`, or null. */
export type DirectPortFinder = (proxyPort: number) => Promise<number | null>;

/** `EDGELAN_FAST_PATH=off` keeps every connection on the URL as given. */
export const FAST_PATH_ENV = "EDGELAN_FAST_PATH";

/** While no direct port is known, the shortest time between two look-ups started by new connections. */
export const LOOKUP_INTERVAL_MS = 5_000;

export class LocalFastPath {
  private direct: number | null = null;
  private lookup: Promise<void> | null = null;
  private lastLookupAt = Number.NEGATIVE_INFINITY;
  /** Bumped by forget(): a look-up that began earlier may not set the port. */
  private generation = 0;
  private lookAgain = false;

  private constructor(
    private readonly proxyPort: number,
    private readonly find: DirectPortFinder,
    private readonly now: () => number,
  ) {}

  /**
   * The fast path for `url`, with its first look-up done, or null when the URL cannot have one: not
   * `ws:` to 127.0.0.1 or localhost with an explicit port, or `EDGELAN_FAST_PATH=off`.
   */
  static async forUrl(
    url: string,
    find: DirectPortFinder,
    env: Record<string, string | undefined> = process.env,
    now: () => number = () => performance.now(),
  ): Promise<LocalFastPath | null> {
    if (env[FAST_PATH_ENV] === "off") return null;
    const proxyPort = localProxyPort(url);
    if (proxyPort === null) return null;
    const path = new LocalFastPath(proxyPort, find, now);
    await path.refresh();
    return path;
  }

  /** workerd's own port as last found, or null (connections then go through the proxy). */
  get directPort(): number | null {
    return this.direct;
  }

  /**
   * `url` with the proxy's port replaced by workerd's own, or `url` itself when there is none (or it
   * names another host or port). Without a known port this starts a look-up, at most one every
   * LOOKUP_INTERVAL_MS, for the connections after this one.
   */
  rewrite(url: string): string {
    if (localProxyPort(url) !== this.proxyPort) return url;
    if (this.direct === null) {
      if (this.now() - this.lastLookupAt >= LOOKUP_INTERVAL_MS) void this.refresh();
      return url;
    }
    const parsed = new URL(url);
    // workerd listens on 127.0.0.1 only (localhost may resolve to ::1 first).
    parsed.hostname = "127.0.0.1";
    parsed.port = String(this.direct);
    return parsed.href;
  }

  /**
   * Something went wrong on the direct port (a connection could not be made, or the far end closed
   * one): forget it, so the next connections use the proxy, and look again. A look-up already under
   * way began before this and cannot bring the port back; another one follows it.
   */
  forget(): void {
    this.direct = null;
    this.generation++;
    if (this.lookup === null) void this.refresh();
    else this.lookAgain = true;
  }

  /** Looks the port up again (one look-up at a time). */
  refresh(): Promise<void> {
    if (this.lookup !== null) return this.lookup;
    const generation = this.generation;
    const settle = (port: number | null): void => {
      if (generation === this.generation) this.direct = port === this.proxyPort ? null : port;
    };
    this.lastLookupAt = this.now();
    this.lookup = this.find(this.proxyPort)
      .then(settle, () => settle(null))
      .finally(() => {
        this.lookup = null;
        if (this.lookAgain) {
          this.lookAgain = false;
          void this.refresh();
        }
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
