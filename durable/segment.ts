import { DurableObject } from "cloudflare:workers";
import type { Env } from "../worker/env.ts";

/** One LAN segment: its forwarding table and the ring state of every attached port. */
export class Segment extends DurableObject<Env> {
  override async fetch(_request: Request): Promise<Response> {
    return Response.json({ error: "not-implemented", message: "segments are not served yet" }, { status: 501 });
  }

  override webSocketMessage(_ws: WebSocket, _message: string | ArrayBuffer): void {}
  override webSocketClose(_ws: WebSocket, _code: number, _reason: string, _wasClean: boolean): void {}
  override webSocketError(_ws: WebSocket, _error: unknown): void {}
}
