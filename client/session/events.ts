// A small typed event emitter: the session reports through events, never the console.

/** Handlers by event name. */
export type EventMap<Events> = { [K in keyof Events]: (...args: never[]) => void };

export class Emitter<Events extends EventMap<Events>> {
  private readonly handlers = new Map<keyof Events, Array<Events[keyof Events]>>();

  on<K extends keyof Events>(event: K, handler: Events[K]): void {
    const list = this.handlers.get(event);
    if (list === undefined) this.handlers.set(event, [handler]);
    else list.push(handler);
  }

  off<K extends keyof Events>(event: K, handler: Events[K]): void {
    const list = this.handlers.get(event);
    const index = list?.indexOf(handler) ?? -1;
    if (list !== undefined && index >= 0) list.splice(index, 1);
  }

  /** Whether anyone listens to `event`. */
  has<K extends keyof Events>(event: K): boolean {
    return (this.handlers.get(event)?.length ?? 0) > 0;
  }

  emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    const list = this.handlers.get(event);
    if (list === undefined) return;
    // A copy: a handler may remove itself (start()'s one-shot handlers do).
    for (const handler of [...list]) (handler as (...a: Parameters<Events[K]>) => void)(...args);
  }
}
