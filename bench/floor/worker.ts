// bench:floor's do-nothing relay: one Durable Object that accepts hibernatable WebSockets the way
// the segment does (ctx.acceptWebSocket, webSocketMessage) and passes each message from port "a"
// to port "b" and back, untouched. What it costs is the floor under every relay hop of a ping
// through edgelan: loopback, wrangler dev's proxy (when in the path), workerd, the DO's event loop.
import { DurableObject } from "cloudflare:workers";

interface Env {
  FLOOR: DurableObjectNamespace<FloorRelay>;
}

export class FloorRelay extends DurableObject<Env> {
  override async fetch(request: Request): Promise<Response> {
    const role = new URL(request.url).searchParams.get("role");
    if (role !== "a" && role !== "b") return new Response("role must be a or b", { status: 400 });
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    this.ctx.acceptWebSocket(server, [role]);
    return new Response(null, { status: 101, webSocket: client });
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const other = this.ctx.getTags(ws)[0] === "a" ? "b" : "a";
    for (const peer of this.ctx.getWebSockets(other)) peer.send(message);
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") return Response.json({ ok: true });
    if (url.pathname !== "/relay") return new Response("not found", { status: 404 });
    // One relay per name, like one segment per name.
    const name = url.searchParams.get("name") ?? "floor";
    return env.FLOOR.get(env.FLOOR.idFromName(name)).fetch(request);
  },
} satisfies ExportedHandler<Env>;
