// Tells `cloudflare:workers` (env, exports) the shape of this project's bindings and main module.
type EdgelanEnv = import("./env.ts").Env;

declare namespace Cloudflare {
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type -- declaration merging needs an interface
  interface Env extends EdgelanEnv {}
  interface GlobalProps {
    mainModule: typeof import("./index.ts");
    durableNamespaces: "Segment";
  }
}
