/**
 * Type-level checks of the SDK's public shape (compiled by `tsc -b`, asserted by vitest's
 * expectTypeOf): only the subscribe side of the emitter, typed listeners, read-only faults.
 */
// typed-emitter ships CommonJS-style typings whose `export default` an ESM import sees as `.default`.
import type TypedEmitterModule from "typed-emitter";
import { describe, expectTypeOf, it } from "vitest";
import type { Fault, FaultKind, RangeEvent, RemapEvent, Resolution, UffdEvents, UffdEventSubscriber, UffdTypedEmitter, Userfaultfd } from "@uffd/sdk";

describe("public types", () => {
  it("Userfaultfd offers the subscribe side of a typed emitter, and no emit", () => {
    expectTypeOf<Userfaultfd>().toExtend<UffdEventSubscriber>();
    // The subscriber is a strict subset of typed-emitter's interface over the same event map.
    expectTypeOf<UffdTypedEmitter>().toExtend<UffdEventSubscriber>();
    expectTypeOf<Userfaultfd>().not.toHaveProperty("emit");
    expectTypeOf<Userfaultfd>().not.toHaveProperty("prependListener");
    expectTypeOf<Userfaultfd["on"]>().toBeFunction();
  });

  it("UffdTypedEmitter is typed-emitter's interface over the event map, declared without depending on typed-emitter", () => {
    expectTypeOf<UffdTypedEmitter>().toEqualTypeOf<TypedEmitterModule.default<UffdEvents>>();
  });

  it("listeners are typed per event", () => {
    const check = (u: Userfaultfd): void => {
      u.on("fault", (f) => expectTypeOf(f).toEqualTypeOf<Fault>());
      u.on("remap", (e) => expectTypeOf(e).toEqualTypeOf<RemapEvent>());
      u.on("unmap", (e) => expectTypeOf(e).toEqualTypeOf<RangeEvent>());
      u.on("fork", (c) => expectTypeOf(c).toEqualTypeOf<Userfaultfd>());
      // @ts-expect-error: no such event
      u.on("pagefault", () => {});
      // @ts-expect-error: a fault listener receives a Fault, not a number
      u.on("fault", (n: number) => n);
    };
    expectTypeOf(check).toBeFunction();
  });

  it("a Fault is read-only and its resolvers are named after the ioctls", () => {
    const touch = (f: Fault): void => {
      // @ts-expect-error: read-only
      f.kind = "wp";
      // @ts-expect-error: read-only
      f.address = 0;
    };
    expectTypeOf(touch).toBeFunction();
    expectTypeOf<Fault["kind"]>().toEqualTypeOf<FaultKind>();
    expectTypeOf<Fault["copy"]>().returns.toEqualTypeOf<Promise<Resolution>>();
    expectTypeOf<Fault>().toHaveProperty("zeropage");
    expectTypeOf<Fault>().toHaveProperty("continue");
    expectTypeOf<Fault>().toHaveProperty("move");
    expectTypeOf<Fault>().toHaveProperty("unprotect");
    expectTypeOf<Fault>().toHaveProperty("poison");
    expectTypeOf<Fault>().toHaveProperty("wake");
  });
});
