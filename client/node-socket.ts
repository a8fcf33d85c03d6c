// A SocketFactory for Node built on `ws`: it can send the Authorization header,
// and it turns a refused upgrade (401, 403, 404, …) into a close that carries
// the HTTP status and the server's message, so the user sees why.
import WebSocket from "ws";
import type { SocketFactory, SocketLike } from "./session.ts";

/** Opens edgelan tunnels from Node. */
export const nodeSocketFactory: SocketFactory = (url, protocols, headers) => {
  // Frames are mostly incompressible and zlib runs on the thread pool: compression only adds latency.
  // `ws` sets TCP_NODELAY on the upgraded socket itself (WebSocket#setSocket), so no frame waits for Nagle.
  const ws = new WebSocket(url, protocols, { headers, handshakeTimeout: 10_000, perMessageDeflate: false });
  // With the default random mask `ws` masks each message into a buffer of its own before send() returns,
  // so the session may hand it a view of its encoder's buffer (a zero mask would send that view as is).
  Object.defineProperty(ws, "copiesOnSend", { value: true });
  // Binary messages as Buffers (the default): views of the socket's read chunks, which Node never reuses; the
  // session keeps this type, so no message is copied into an ArrayBuffer of its own.
  ws.binaryType = "nodebuffer";
  const socket = ws as unknown as SocketLike;
  ws.on("unexpected-response", (_request, response) => {
    let body = "";
    response.on("data", (chunk: Buffer) => (body += chunk.toString()));
    response.on("end", () => {
      const status = response.statusCode ?? 0;
      socket.onclose?.({ code: 1006, reason: `HTTP ${status}: ${serverMessage(body)}`, httpStatus: status });
      socket.onclose = null;
      ws.terminate();
    });
  });
  return socket;
};

/** The `message` of an edgelan JSON error body, or the body itself. */
function serverMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === "string") return parsed.message;
  } catch {
    // Not JSON: show it as it came.
  }
  return body.slice(0, 200) || "(empty body)";
}
