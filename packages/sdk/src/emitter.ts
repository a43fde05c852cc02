/**
 * The typed-emitter interface, declared here so that the SDK's published types need nothing
 * installed: typed-emitter is types only, but installing it pulls rxjs through its optional
 * dependency into every consumer. test/types.test.ts checks that this declaration stays
 * identical to typed-emitter's own (a devDependency of this package, used only there).
 */

/** An event map: event name to listener signature. */
export type EventMap = { [event: string]: (...args: any[]) => void };

/** A strictly typed event emitter over an event map (the shape of Node's EventEmitter). */
export interface TypedEventEmitter<Events extends EventMap> {
  addListener<E extends keyof Events>(event: E, listener: Events[E]): this;
  on<E extends keyof Events>(event: E, listener: Events[E]): this;
  once<E extends keyof Events>(event: E, listener: Events[E]): this;
  prependListener<E extends keyof Events>(event: E, listener: Events[E]): this;
  prependOnceListener<E extends keyof Events>(event: E, listener: Events[E]): this;
  off<E extends keyof Events>(event: E, listener: Events[E]): this;
  removeAllListeners<E extends keyof Events>(event?: E): this;
  removeListener<E extends keyof Events>(event: E, listener: Events[E]): this;
  emit<E extends keyof Events>(event: E, ...args: Parameters<Events[E]>): boolean;
  /** Loosely typed on purpose, as in typed-emitter: emitters also report symbol and string names. */
  eventNames(): (keyof Events | string | symbol)[];
  rawListeners<E extends keyof Events>(event: E): Events[E][];
  listeners<E extends keyof Events>(event: E): Events[E][];
  listenerCount<E extends keyof Events>(event: E): number;
  getMaxListeners(): number;
  setMaxListeners(maxListeners: number): this;
}
