// The bystanders run in their own process, so the attack traffic the benchmark process
// handles (floods arriving at victim ports) does not delay their round trips.
import { Bystanders } from "./bystanders.ts";

export type BystanderCommand =
  | { cmd: "join"; wsBase: string; segment: string }
  | { cmd: "start"; intervalMs: number }
  | { cmd: "window"; drainMs: number }
  | { cmd: "close" };

let bystanders: Bystanders | null = null;

process.on("message", (message: BystanderCommand) => {
  void handle(message).then(
    (reply) => process.send?.({ ok: true, reply }),
    (error: unknown) => process.send?.({ ok: false, error: error instanceof Error ? error.message : String(error) }),
  );
});
// The benchmark went away without saying close: so do we.
process.on("disconnect", () => process.exit(0));

async function handle(message: BystanderCommand): Promise<unknown> {
  switch (message.cmd) {
    case "join":
      bystanders = await Bystanders.join(message.wsBase, message.segment);
      return null;
    case "start":
      bystanders?.start(message.intervalMs);
      return null;
    case "window":
      return bystanders?.window(message.drainMs) ?? null;
    case "close":
      bystanders?.close();
      bystanders = null;
      setTimeout(() => process.exit(0), 100);
      return null;
  }
}
