import type { Env } from "./env.ts";

export { Segment } from "../durable/segment.ts";

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (request.method === "GET" && url.pathname === "/healthz") {
      return Response.json({ ok: true, version: env.EDGELAN_VERSION });
    }
    return Response.json({ error: "not-found", message: `no route for ${request.method} ${url.pathname}` }, { status: 404 });
  },
} satisfies ExportedHandler<Env>;
