import type { Env } from "./env.ts";
import { route } from "./router.ts";
import { ROUTES } from "./routes.ts";

export { Segment } from "../durable/segment.ts";
export { SegmentRegistry } from "../durable/registry.ts";

export default {
  fetch(request: Request, env: Env): Promise<Response> {
    return route(ROUTES, request, env);
  },
} satisfies ExportedHandler<Env>;
