/** A context's in-flight fault table must behave exactly like the Map it replaces (model-based, fast-check). */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FaultTable } from "../src/fault-table.ts";

const PAGE = 4096;
/** Keys as the read loop makes them: a page address (a few clustered regions, some above 2^32) plus a kind index 0..2. */
const key = fc
  .tuple(fc.constantFrom(0x10000, 0x7f00_0000_0000, 0x1_0000_0000), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 2 }))
  .map(([base, page, kind]) => base + page * PAGE + kind);
const op = fc.oneof(
  { weight: 10, arbitrary: fc.record({ kind: fc.constant("set" as const), key, value: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 10, arbitrary: fc.record({ kind: fc.constant("delete" as const), key }) },
  { weight: 10, arbitrary: fc.record({ kind: fc.constant("get" as const), key }) },
  // Values from a small set, so that deleteValue() meets both a matching and a different value.
  { weight: 10, arbitrary: fc.record({ kind: fc.constant("deleteValue" as const), key, value: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 10, arbitrary: fc.record({ kind: fc.constant("addIfAbsent" as const), key, value: fc.integer({ min: 0, max: 2 }) }) },
  // Rare, so that tables also grow before they are emptied.
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("clear" as const) }) },
);

describe("FaultTable", () => {
  it("agrees with a Map on set/get/has/delete/deleteValue/addIfAbsent/clear/size and iterates in insertion order", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 600 }), (ops) => {
        const t = new FaultTable<number>(16);
        const m = new Map<number, number>();
        for (const o of ops) {
          if (o.kind === "set") {
            t.set(o.key, o.value);
            m.set(o.key, o.value);
          } else if (o.kind === "delete") {
            expect(t.delete(o.key)).toBe(m.delete(o.key));
          } else if (o.kind === "clear") {
            t.clear();
            m.clear();
          } else if (o.kind === "addIfAbsent") {
            // The value already there, unchanged; or undefined, and the new value is in.
            const had = m.get(o.key);
            if (had === undefined) m.set(o.key, o.value);
            expect(t.addIfAbsent(o.key, o.value)).toBe(had);
          } else if (o.kind === "deleteValue") {
            // Deletes only an entry holding that value.
            expect(t.deleteValue(o.key, o.value)).toBe(m.get(o.key) === o.value && m.delete(o.key));
          } else {
            expect(t.get(o.key)).toBe(m.get(o.key));
            expect(t.has(o.key)).toBe(m.has(o.key));
          }
          expect(t.size).toBe(m.size);
        }
        expect(t.values()).toEqual([...m.values()]);
        for (const k of m.keys()) expect(t.get(k)).toBe(m.get(k));
      }),
      { numRuns: 300, seed: 7 },
    );
  });
});
