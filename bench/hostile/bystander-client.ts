// The benchmark's handle on the bystander process: one command at a time, each answered once.
import { fork } from "node:child_process";
import type { BystanderCommand } from "./bystander-process.ts";
import type { PingFigures } from "./bystanders.ts";

export class BystanderProcess {
  private readonly child = fork(new URL("./bystander-process.ts", import.meta.url), [], { execArgv: ["--import", "tsx"], stdio: "inherit" });
  private readonly exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
  private queue: Promise<unknown> = Promise.resolve();

  private call(command: BystanderCommand): Promise<unknown> {
    const next = this.queue.then(
      () =>
        new Promise((resolve, reject) => {
          const onExit = (): void => reject(new Error("the bystander process exited"));
          this.child.once("exit", onExit);
          this.child.once("message", (answer: { ok: boolean; reply?: unknown; error?: string }) => {
            this.child.off("exit", onExit);
            if (answer.ok) resolve(answer.reply);
            else reject(new Error(answer.error));
          });
          this.child.send(command);
        }),
    );
    this.queue = next.catch(() => undefined);
    return next;
  }

  async join(wsBase: string, segment: string): Promise<void> {
    await this.call({ cmd: "join", wsBase, segment });
  }

  async start(intervalMs: number): Promise<void> {
    await this.call({ cmd: "start", intervalMs });
  }

  /** Ends a measuring window (after draining outstanding echoes) and returns its figures. */
  async window(drainMs: number): Promise<PingFigures> {
    return (await this.call({ cmd: "window", drainMs })) as PingFigures;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    await Promise.race([this.call({ cmd: "close" }).catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 2000))]);
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
    await this.exited;
  }
}
