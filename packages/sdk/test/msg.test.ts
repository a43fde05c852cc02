/** The SDK reads uffd_msg fields in place; they must agree with the uapi codec (include/uapi/linux/userfaultfd.h layout). */
import { describe, expect, it } from "vitest";
import { decodeUffdMsgs, encodeUffdMsg, UFFD_MSG_SIZE, type UffdMsg } from "@uffd/kernel/uapi";
import { u32, u32v, u64, u64v } from "../src/msg.ts";

describe("in-place uffd_msg readers", () => {
  it("read the same fields decodeUffdMsgs decodes, addresses above 2^32 included", () => {
    const msgs: UffdMsg[] = [
      { event: 0x12, arg: { pagefault: { flags: 5, address: 0x7f12_3456_7000, feat: { ptid: 4242 } } } },
      { event: 0x13, arg: { fork: { ufd: 17 } } },
      { event: 0x14, arg: { remap: { from: 0x7f00_0000_0000, to: 0x7e00_0000_1000, len: 0x20_0000 } } },
      { event: 0x15, arg: { remove: { start: 0x1_0000_0000, end: 0x1_0000_3000 } } },
    ];
    const bytes = new Uint8Array(msgs.length * UFFD_MSG_SIZE);
    msgs.forEach((m, i) => encodeUffdMsg(m, bytes, i * UFFD_MSG_SIZE));
    expect(decodeUffdMsgs(bytes)).toEqual(msgs);
    const v = bytes;
    expect([u64(v, 8), u64(v, 16), u32(v, 24)]).toEqual([5, 0x7f12_3456_7000, 4242]);
    expect(u32(v, 32 + 8)).toBe(17);
    expect([u64(v, 64 + 8), u64(v, 64 + 16), u64(v, 64 + 24)]).toEqual([0x7f00_0000_0000, 0x7e00_0000_1000, 0x20_0000]);
    expect([u64(v, 96 + 8), u64(v, 96 + 16)]).toEqual([0x1_0000_0000, 0x1_0000_3000]);
    // Every byte counts, the top bit of each u32 half included (no sign from the shifts).
    const edge = new Uint8Array(16);
    edge.fill(0xff, 0, 4);
    edge.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0], 8);
    expect(u32(edge, 0)).toBe(0xffff_ffff);
    expect(u64(edge, 8)).toBe(Number.MAX_SAFE_INTEGER);
    // The DataView readers agree, field for field.
    const dv = new DataView(bytes.buffer);
    for (const at of [8, 16, 24, 40, 72, 80, 88, 104, 112]) {
      expect(u64v(dv, at)).toBe(u64(bytes, at));
      expect(u32v(dv, at)).toBe(u32(bytes, at));
    }
    expect(u64v(new DataView(edge.buffer), 8)).toBe(Number.MAX_SAFE_INTEGER);
  });
});
