// A byte-for-byte TCP front (bench:floor's seg-front case): each connection is spliced to a port on the
// same host, nothing parsed, TCP_NODELAY on both sockets. It measures whether `npm start` could put its
// own front before workerd instead of wrangler dev's proxy (it cannot: it is slower, bench/README.md).
import { connect, createServer, type Server } from "node:net";

/** Listens on `host`:`port` (0: any free port) and splices each connection to `host`:`to`. */
export async function startTcpFront(host: string, port: number, to: number): Promise<Server> {
  const server = createServer({ noDelay: true }, (client) => {
    client.pause();
    const upstream = connect({ host, port: to, noDelay: true }, () => {
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
    const close = (): void => {
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on("error", close);
      socket.on("close", close);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return server;
}
